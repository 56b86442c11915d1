// basic_publisher: a handle bound to one exchange, not to its name.

#include <string>
#include <utility>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain;
using warren_test::error_of;
using warren_test::msg;
using warren_test::strings;

TEMPLATE_TEST_CASE("publisher: publishes to the exchange it was made for", "[publisher]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "topic");
    (void)b.declare_queue("kern");
    (void)b.declare_queue("all");
    b.bind_queue("kern", "logs", "kern.*");
    b.bind_queue("all", "logs", "#");

    const auto logs = b.make_publisher("logs");
    REQUIRE(static_cast<bool>(logs));
    CHECK(logs.exchange() == "logs");
    CHECK(logs.publish(msg("kern.info", "1")) == 2);
    CHECK(logs.publish(msg("user.info", "2")) == 1);
    // It routes by the bindings of the moment, not those it was made with.
    b.unbind_queue("all", "logs", "#");
    b.bind_queue("all", "logs", "user.*");
    CHECK(logs.publish(msg("kern.warn", "3")) == 1);
    CHECK(logs.publish(msg("user.warn", "4")) == 1);
    CHECK(drain(b, "kern") == strings{"1", "3"});
    CHECK(drain(b, "all") == strings{"1", "2", "4"});

    REQUIRE(logs.publish(msg("kern.x", "5")) == 1);
    auto d = b.try_get("kern");
    REQUIRE(d);
    CHECK(d->exchange() == "logs");
    CHECK(d->routing_key() == "kern.x");
}

TEMPLATE_TEST_CASE("publisher: copies publish to the same exchange", "[publisher]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "fanout");
    (void)b.declare_queue("q");
    b.bind_queue("q", "x");
    const auto first = b.make_publisher("x");
    const auto copy = first;
    auto made = b.make_publisher("x");
    const auto moved = std::move(made);
    CHECK(first.publish(msg("", "1")) == 1);
    CHECK(copy.publish(msg("", "2")) == 1);
    CHECK(moved.publish(msg("", "3")) == 1);
    CHECK(drain(b, "q") == strings{"1", "2", "3"});
    b.delete_exchange("x");
    CHECK(error_of([&] { (void)copy.publish(msg("")); }) == "404 NOT_FOUND - no exchange 'x'");
}

TEMPLATE_TEST_CASE("publisher: after its exchange is deleted it throws not_found", "[publisher]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "fanout");
    (void)b.declare_queue("q");
    b.bind_queue("q", "logs");
    const auto logs = b.make_publisher("logs");
    b.delete_exchange("logs");
    CHECK(error_of([&] { (void)logs.publish(msg("", "lost")); }) == "404 NOT_FOUND - no exchange 'logs'");
    CHECK(logs.exchange() == "logs"); // still names what it was made for

    SECTION("even once an exchange of the same name is declared again") {
        b.declare_exchange("logs", "fanout");
        b.bind_queue("q", "logs");
        // Other exchanges may reuse the deleted one's slot; the handle must not follow it.
        b.declare_exchange("other", "fanout");
        b.bind_queue("q", "other");
        CHECK(error_of([&] { (void)logs.publish(msg("", "lost")); }) == "404 NOT_FOUND - no exchange 'logs'");
        const auto fresh = b.make_publisher("logs");
        CHECK(fresh.publish(msg("", "new")) == 1);
        CHECK(drain(b, "q") == strings{"new"});
    }
    SECTION("also when an auto_delete exchange went with its last binding") {
        warren::exchange_options options;
        options.auto_delete = true;
        b.declare_exchange("auto", "direct", options);
        const auto publisher = b.make_publisher("auto");
        b.bind_queue("q", "auto", "k");
        CHECK(publisher.publish(msg("k", "1")) == 1);
        b.unbind_queue("q", "auto", "k");
        REQUIRE_FALSE(b.has_exchange("auto"));
        CHECK(error_of([&] { (void)publisher.publish(msg("k")); }) == "404 NOT_FOUND - no exchange 'auto'");
        CHECK(drain(b, "q") == strings{"1"});
    }
    CHECK(b.message_count("q") == 0); // nothing published through a dead handle arrived
}

TEMPLATE_TEST_CASE("publisher: make_publisher on an unknown exchange is not_found", "[publisher]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    CHECK(error_of([&] { (void)b.make_publisher("nope"); }) == "404 NOT_FOUND - no exchange 'nope'");
    b.declare_exchange("gone", "fanout");
    b.delete_exchange("gone");
    CHECK(error_of([&] { (void)b.make_publisher("gone"); }) == "404 NOT_FOUND - no exchange 'gone'");
}

TEMPLATE_TEST_CASE("publisher: the default exchange's publisher routes by queue name", "[publisher]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    const auto direct = b.make_publisher("");
    CHECK(direct.exchange().empty());
    (void)b.declare_queue("q"); // declared after the publisher was made
    CHECK(direct.publish(msg("q", "m")) == 1);
    CHECK(direct.publish(msg("nope", "lost")) == 0);
    auto d = b.try_get("q");
    REQUIRE(d);
    CHECK(d->body() == "m");
    CHECK(d->exchange().empty());
    CHECK_FALSE(b.try_get("q"));
}

TEMPLATE_TEST_CASE("publisher: the same checks as broker publish", "[publisher]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    warren::exchange_options internal;
    internal.internal = true;
    b.declare_exchange("inner", "fanout", internal);
    b.declare_exchange("x", "fanout");
    (void)b.declare_queue("q");
    b.bind_queue("q", "inner");
    b.bind_exchange("inner", "x");
    SECTION("an internal exchange is access_refused") {
        const auto inner = b.make_publisher("inner");
        CHECK(error_of([&] { (void)inner.publish(msg("")); }) ==
              "403 ACCESS_REFUSED - cannot publish to internal exchange 'inner'");
        CHECK(b.make_publisher("x").publish(msg("", "via x")) == 1);
        CHECK(drain(b, "q") == strings{"via x"});
    }
    SECTION("a routing key over 255 bytes is precondition_failed") {
        const auto x = b.make_publisher("x");
        CHECK(error_of([&] { (void)x.publish(msg(std::string(256, 'k'))); }) ==
              "406 PRECONDITION_FAILED - routing key of 256 bytes exceeds the limit of 255");
        CHECK(b.message_count("q") == 0);
    }
}

TEST_CASE("publisher: a default-constructed publisher is empty", "[publisher]") {
    const warren::publisher none;
    CHECK_FALSE(static_cast<bool>(none));
    const warren::basic_publisher<warren::concurrent_broker> none_mt;
    CHECK_FALSE(static_cast<bool>(none_mt));
}

// A single-threaded publisher replays the route of the key it published last while the
// topology is unchanged; every change that takes effect ends the replay. These tests hold
// for both policies, since the replay must never be observable.

TEMPLATE_TEST_CASE("publisher: a replayed route follows every binding, queue and exchange change", "[publisher]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("events", "direct");
    (void)b.declare_queue("a");
    b.bind_queue("a", "events", "k");
    const auto events = b.make_publisher("events");
    CHECK(events.publish(msg("k", "1")) == 1);
    CHECK(events.publish(msg("k", "2")) == 1); // the replay
    (void)b.declare_queue("b");
    b.bind_queue("b", "events", "k");
    CHECK(events.publish(msg("k", "3")) == 2);
    b.unbind_queue("a", "events", "k");
    CHECK(events.publish(msg("k", "4")) == 1);
    (void)b.delete_queue("b");
    CHECK(events.publish(msg("k", "5")) == 0);
    (void)b.declare_queue("c"); // takes the slot "b" had
    CHECK(events.publish(msg("k", "6")) == 0);
    b.bind_queue("c", "events", "k");
    CHECK(events.publish(msg("k", "7")) == 1);
    b.declare_exchange("more", "fanout");
    b.bind_exchange("more", "events", "k"); // now the route walks another exchange
    (void)b.declare_queue("d");
    b.bind_queue("d", "more");
    CHECK(events.publish(msg("k", "8")) == 2);
    CHECK(events.publish(msg("k", "9")) == 2);
    CHECK(drain(b, "a") == strings{"1", "2", "3"});
    CHECK(drain(b, "c") == strings{"7", "8", "9"});
    CHECK(drain(b, "d") == strings{"8", "9"});
}

TEMPLATE_TEST_CASE("publisher: a replayed route is the route of its own key", "[publisher]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "topic");
    (void)b.declare_queue("kern");
    (void)b.declare_queue("user");
    b.bind_queue("kern", "logs", "kern.*");
    b.bind_queue("user", "logs", "user.*");
    const auto logs = b.make_publisher("logs");
    for (int i = 0; i < 3; ++i) {
        CHECK(logs.publish(msg("kern.info", "k")) == 1);
        CHECK(logs.publish(msg("kern.info", "k")) == 1);
        CHECK(logs.publish(msg("user.info", "u")) == 1);
    }
    CHECK(drain(b, "kern") == strings{"k", "k", "k", "k", "k", "k"});
    CHECK(drain(b, "user") == strings{"u", "u", "u"});
}

TEMPLATE_TEST_CASE("publisher: routes that read more than the key are routed every time", "[publisher]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("match", "headers");
    (void)b.declare_queue("pdf");
    b.bind_queue("pdf", "match", "", {{"x-match", "all"}, {"format", "pdf"}});
    const auto match = b.make_publisher("match");
    warren::message pdf = msg("same-key", "1");
    pdf.properties.headers.set("format", "pdf");
    warren::message zip = msg("same-key", "2");
    zip.properties.headers.set("format", "zip");
    CHECK(match.publish(pdf) == 1);
    CHECK(match.publish(zip) == 0); // same key, other headers
    CHECK(match.publish(pdf) == 1);

    // An alternate exchange: the route depends on whether the exchange's own bindings match.
    b.declare_exchange("unrouted", "fanout");
    (void)b.declare_queue("rest");
    b.bind_queue("rest", "unrouted");
    b.declare_exchange("main", "direct", {.arguments = {{"alternate-exchange", "unrouted"}}});
    const auto main = b.make_publisher("main");
    CHECK(main.publish(msg("nobody", "3")) == 1);
    CHECK(main.publish(msg("nobody", "4")) == 1);
    CHECK(drain(b, "pdf") == strings{"1", "1"});
    CHECK(drain(b, "rest") == strings{"3", "4"});
}

TEMPLATE_TEST_CASE("publisher: the default exchange's replayed route follows queues declared and deleted",
                   "[publisher]", warren::broker, warren::concurrent_broker) {
    TestType b;
    const auto direct = b.make_publisher("");
    CHECK(direct.publish(msg("later", "1")) == 0);
    (void)b.declare_queue("later");
    CHECK(direct.publish(msg("later", "2")) == 1);
    CHECK(direct.publish(msg("later", "3")) == 1);
    (void)b.delete_queue("later");
    CHECK(direct.publish(msg("later", "4")) == 0);
}
