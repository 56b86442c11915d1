// Publishing a routing key and a body without building a basic_message:
// basic_broker::publish(exchange, key, body) and basic_publisher::publish(key, body), and
// their publish_confirmed forms. They behave as publishing {key, body} would.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain;
using warren_test::error_of;
using warren_test::strings;

TEMPLATE_TEST_CASE("publish parts: a key and a body are routed as the message {key, body} would be",
                   "[publish][publisher]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "topic");
    b.declare_queue("kern");
    b.declare_queue("all");
    b.bind_queue("kern", "logs", "kern.*");
    b.bind_queue("all", "logs", "#");
    const auto logs = b.make_publisher("logs");
    const std::string key = "kern.info";

    CHECK(b.publish("logs", std::string_view(key), "1") == 2);
    CHECK(b.publish("logs", "user.info", std::string("2")) == 1);
    CHECK(logs.publish("kern.warn", "3") == 2);
    CHECK(logs.publish("user.warn", "4") == 1);
    CHECK(b.publish("logs", "nobody", "5") == 1); // "#" matches
    CHECK(drain(b, "kern") == strings{"1", "3"});
    CHECK(drain(b, "all") == strings{"1", "2", "3", "4", "5"});

    REQUIRE(b.publish("", "kern", "direct") == 1); // the default exchange
    auto d = b.try_get("kern");
    REQUIRE(d);
    CHECK(d->routing_key() == "kern");
    CHECK(d->exchange().empty());
    CHECK(d->body() == "direct");
    CHECK(d->properties() == warren::properties{});
}

TEMPLATE_TEST_CASE("publish parts: the confirm forms report what publish_confirmed of a message reports",
                   "[publish][publisher][confirm]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "fanout");
    b.declare_queue("full", warren_test::with_args({{"x-max-length", 1}, {"x-overflow", "reject-publish"}}));
    b.bind_queue("full", "x");
    const auto x = b.make_publisher("x");

    const warren::confirmation first = b.publish_confirmed("x", "k", "1");
    CHECK(first.ack);
    CHECK(first.routed == 1);
    const warren::confirmation second = x.publish_confirmed("k", "2");
    CHECK_FALSE(second.ack); // refused at the limit: nack
    CHECK(second.refused == 1);
    CHECK(drain(b, "full") == strings{"1"});
}

TEMPLATE_TEST_CASE("publish parts: a mandatory message that no queue took returns as a whole message",
                   "[publish][publisher][return]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    std::vector<typename TestType::message_type> returned;
    b.set_return_handler([&](typename TestType::returned_message& r) { returned.push_back(std::move(r.message)); });
    const std::string long_key(200, 'k');
    CHECK(b.publish("x", long_key, "by name", {.mandatory = true}) == 0);
    CHECK(b.make_publisher("x").publish("short", "by publisher", {.mandatory = true}) == 0);
    CHECK(b.publish("x", "dropped", "not mandatory") == 0);
    REQUIRE(returned.size() == 2);
    CHECK(returned[0].routing_key == long_key);
    CHECK(returned[0].body == "by name");
    CHECK(returned[0].properties == warren::properties{});
    CHECK(returned[1].routing_key == "short");
    CHECK(returned[1].body == "by publisher");
}

TEMPLATE_TEST_CASE("publish parts: errors are those of publishing a message", "[publish][publisher][errors]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("inner", "fanout", {.internal = true});
    CHECK(error_of([&] { (void)b.publish("nowhere", "k", "b"); }) == "404 NOT_FOUND - no exchange 'nowhere'");
    CHECK(error_of([&] { (void)b.publish("inner", "k", "b"); }) ==
          "403 ACCESS_REFUSED - cannot publish to internal exchange 'inner'");
    CHECK(error_of([&] { (void)b.publish("", std::string(256, 'k'), "b"); }) ==
          "406 PRECONDITION_FAILED - routing key of 256 bytes exceeds the limit of 255");
    const auto inner = b.make_publisher("inner");
    CHECK(error_of([&] { (void)inner.publish("k", "b"); }) ==
          "403 ACCESS_REFUSED - cannot publish to internal exchange 'inner'");
}

TEMPLATE_TEST_CASE("publish parts: a move-only body is moved in, not copied", "[publish][publisher]",
                   warren::single_threaded, warren::multi_threaded) {
    using message = warren::basic_message<std::unique_ptr<int>>;
    warren::basic_broker<message, TestType> b;
    b.declare_queue("q");
    auto owned = std::make_unique<int>(7);
    const int* raw = owned.get();
    REQUIRE(b.publish("", "q", std::move(owned)) == 1);
    REQUIRE(b.make_publisher("").publish("q", std::make_unique<int>(8)) == 1);
    auto first = b.try_get("q");
    auto second = b.try_get("q");
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first->body().get() == raw);
    CHECK(*second->body() == 8);
}

TEMPLATE_TEST_CASE("publish parts: the message forms keep their meaning beside the new overloads", "[publish][publisher]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    const auto to_default = b.make_publisher("");
    // Braced messages and options, as before the key-and-body overloads existed.
    CHECK(b.publish("", {.routing_key = "q", .body = "1"}) == 1);
    CHECK(b.publish("", {.routing_key = "q", .body = "2"}, {.mandatory = true}) == 1);
    const typename TestType::message_type m{.routing_key = "q", .body = "3"};
    CHECK(to_default.publish(m, {.mandatory = true}) == 1);
    CHECK(to_default.publish({.routing_key = "q", .body = "4"}) == 1);
    CHECK(b.publish_confirmed("", m).routed == 1);
    CHECK(drain(b, "q") == strings{"1", "2", "3", "4", "3"});
}
