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
