// Alternate exchanges and mandatory publishing, as RabbitMQ's rabbit_exchange:route and
// basic.return define them.

#include <cstddef>
#include <string>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"

namespace {

using warren_test::error_of;

warren::exchange_options with_alternate(const std::string& name) {
    warren::exchange_options options;
    options.arguments.set("alternate-exchange", name);
    return options;
}

template <class Broker>
std::size_t ready(Broker& b, const std::string& queue) {
    return b.message_count(queue);
}

} // namespace

TEMPLATE_TEST_CASE("alternate exchange: takes what the exchange's own bindings do not", "[broker][alternate]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("main", "direct", with_alternate("ae"));
    b.declare_exchange("ae", "fanout");
    b.declare_queue("routed");
    b.declare_queue("unrouted");
    b.bind_queue("routed", "main", "k");
    b.bind_queue("unrouted", "ae");

    SECTION("a routable message does not reach the alternate") {
        CHECK(b.publish("main", {.routing_key = "k", .body = "a"}) == 1);
        CHECK(ready(b, "routed") == 1);
        CHECK(ready(b, "unrouted") == 0);
    }
    SECTION("an unroutable one does, and counts as routed") {
        CHECK(b.publish("main", {.routing_key = "other", .body = "b"}) == 1);
        CHECK(ready(b, "routed") == 0);
        CHECK(b.try_get("unrouted")->body() == "b");
    }
    SECTION("the delivery still names the exchange it was published to") {
        (void)b.publish("main", {.routing_key = "other", .body = "b"});
        auto d = b.try_get("unrouted");
        REQUIRE(d);
        CHECK(d->exchange() == "main");
        CHECK(d->routing_key() == "other");
    }
    SECTION("an alternate declared later is used from then on") {
        b.delete_exchange("ae");
        CHECK(b.publish("main", {.routing_key = "other"}) == 0);
        b.declare_exchange("ae", "fanout");
        b.bind_queue("unrouted", "ae");
        CHECK(b.publish("main", {.routing_key = "other"}) == 1);
    }
}

TEMPLATE_TEST_CASE("alternate exchange: chains are followed until routed, and a repeat ends them",
                   "[broker][alternate]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("a", "direct", with_alternate("b"));
    b.declare_exchange("b", "direct", with_alternate("c"));
    b.declare_exchange("c", "direct", with_alternate("a")); // back to the start: a cycle
    b.declare_queue("qc");

    CHECK(b.publish("a", {.routing_key = "x"}) == 0); // the cycle ends, nothing routed
    b.bind_queue("qc", "c", "x");
    CHECK(b.publish("a", {.routing_key = "x"}) == 1);
    CHECK(b.publish("a", {.routing_key = "y"}) == 0);
    CHECK(ready(b, "qc") == 1);
}

TEMPLATE_TEST_CASE("alternate exchange: a missing alternate is ignored", "[broker][alternate]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("main", "topic", with_alternate("nowhere"));
    b.declare_queue("q");
    b.bind_queue("q", "main", "a.*");
    CHECK(b.publish("main", {.routing_key = "a.b"}) == 1);
    CHECK(b.publish("main", {.routing_key = "z"}) == 0);
}

TEMPLATE_TEST_CASE("alternate exchange: applies to exchanges reached through exchange bindings",
                   "[broker][alternate]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("front", "fanout");
    b.declare_exchange("inner", "direct", with_alternate("ae"));
    b.declare_exchange("ae", "fanout");
    b.declare_queue("q_inner");
    b.declare_queue("q_ae");
    b.bind_exchange("inner", "front");
    b.bind_queue("q_inner", "inner", "k");
    b.bind_queue("q_ae", "ae");

    SECTION("inner routes nothing: its alternate takes it") {
        CHECK(b.publish("front", {.routing_key = "other"}) == 1);
        CHECK(ready(b, "q_ae") == 1);
    }
    SECTION("inner routes it: no alternate") {
        CHECK(b.publish("front", {.routing_key = "k"}) == 1);
        CHECK(ready(b, "q_inner") == 1);
        CHECK(ready(b, "q_ae") == 0);
    }
}

TEMPLATE_TEST_CASE("alternate exchange: only an exchange whose bindings match nothing uses it",
                   "[broker][alternate]", warren::broker, warren::concurrent_broker) {
    // RabbitMQ consults the alternate when the exchange's own route is empty. Here the
    // exchange routes to another exchange that routes nowhere: its own route is not
    // empty, so its alternate is not used and the message is unroutable.
    TestType b;
    b.declare_exchange("main", "fanout", with_alternate("ae"));
    b.declare_exchange("dead_end", "direct");
    b.declare_exchange("ae", "fanout");
    b.declare_queue("q_ae");
    b.bind_exchange("dead_end", "main");
    b.bind_queue("q_ae", "ae");
    CHECK(b.publish("main", {.routing_key = "k"}) == 0);
    CHECK(ready(b, "q_ae") == 0);
}

TEMPLATE_TEST_CASE("alternate exchange: an internal exchange can be an alternate", "[broker][alternate]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::exchange_options internal;
    internal.internal = true;
    b.declare_exchange("ae", "fanout", internal);
    b.declare_exchange("main", "direct", with_alternate("ae"));
    b.declare_queue("q");
    b.bind_queue("q", "ae");
    CHECK(b.publish("main", {.routing_key = "k"}) == 1);
    CHECK(error_of([&] { (void)b.publish("ae", {.routing_key = "k"}); }) ==
          "403 ACCESS_REFUSED - cannot publish to internal exchange 'ae'");
}

TEMPLATE_TEST_CASE("alternate exchange: the argument must be a string and is compared on redeclare",
                   "[broker][alternate]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::exchange_options bad;
    bad.arguments.set("alternate-exchange", 7);
    CHECK(error_of([&] { b.declare_exchange("x", "direct", bad); }) ==
          "406 PRECONDITION_FAILED - invalid arg 'alternate-exchange' for exchange 'x': expected a string");
    CHECK_FALSE(b.has_exchange("x"));

    b.declare_exchange("x", "direct", with_alternate("ae1"));
    REQUIRE_NOTHROW(b.declare_exchange("x", "direct", with_alternate("ae1")));
    CHECK(error_of([&] { b.declare_exchange("x", "direct", with_alternate("ae2")); }) ==
          "406 PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x': received 'ae2' but "
          "current is 'ae1'");
    CHECK(error_of([&] { b.declare_exchange("x", "direct"); }) ==
          "406 PRECONDITION_FAILED - inequivalent arg 'alternate-exchange' for exchange 'x': received none but "
          "current is 'ae1'");
}

TEMPLATE_TEST_CASE("mandatory: an unroutable message goes back to the return handler", "[broker][mandatory]",
                   warren::broker, warren::concurrent_broker) {
    using returned_message = typename TestType::returned_message;
    TestType b;
    b.declare_exchange("logs", "topic");
    b.declare_queue("q");
    b.bind_queue("q", "logs", "kern.*");
    std::vector<std::string> returned;
    b.set_return_handler([&](returned_message& r) {
        returned.push_back(std::to_string(static_cast<int>(r.code)) + " " + r.reply_text + " " + r.exchange + " " +
                           r.message.routing_key + " " + r.message.body);
    });

    SECTION("unroutable and mandatory: returned with 312 NO_ROUTE") {
        CHECK(b.publish("logs", {.routing_key = "app.info", .body = "hi"}, {.mandatory = true}) == 0);
        CHECK(returned == std::vector<std::string>{"312 NO_ROUTE logs app.info hi"});
    }
    SECTION("routable and mandatory: not returned") {
        CHECK(b.publish("logs", {.routing_key = "kern.info", .body = "hi"}, {.mandatory = true}) == 1);
        CHECK(returned.empty());
    }
    SECTION("unroutable, not mandatory: dropped, not returned") {
        CHECK(b.publish("logs", {.routing_key = "app.info", .body = "hi"}) == 0);
        CHECK(returned.empty());
    }
    SECTION("routed by an alternate exchange: not returned") {
        b.declare_exchange("main", "direct", with_alternate("logs"));
        CHECK(b.publish("main", {.routing_key = "kern.x", .body = "hi"}, {.mandatory = true}) == 1);
        CHECK(returned.empty());
    }
    SECTION("through a publisher handle") {
        auto p = b.make_publisher("logs");
        CHECK(p.publish({.routing_key = "none", .body = "x"}, {.mandatory = true}) == 0);
        CHECK(returned == std::vector<std::string>{"312 NO_ROUTE logs none x"});
    }
    SECTION("the default exchange returns a message for a missing queue") {
        CHECK(b.publish("", {.routing_key = "missing", .body = "x"}, {.mandatory = true}) == 0);
        CHECK(returned == std::vector<std::string>{"312 NO_ROUTE  missing x"});
    }
}

TEMPLATE_TEST_CASE("mandatory: the return handler may use the broker", "[broker][mandatory]", warren::broker,
                   warren::concurrent_broker) {
    using returned_message = typename TestType::returned_message;
    TestType b;
    b.declare_exchange("x", "direct");
    // A dead-letter-style fallback: the handler declares a queue and republishes there.
    b.set_return_handler([&](returned_message& r) {
        b.declare_queue("parking");
        (void)b.publish("", {.routing_key = "parking", .body = r.message.body});
    });
    CHECK(b.publish("x", {.routing_key = "k", .body = "lost?"}, {.mandatory = true}) == 0);
    CHECK(b.try_get("parking")->body() == "lost?");
}

TEMPLATE_TEST_CASE("mandatory: without a return handler the message is dropped and publish says 0",
                   "[broker][mandatory]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    CHECK(b.publish("x", {.routing_key = "k"}, {.mandatory = true}) == 0);
}
