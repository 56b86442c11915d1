// The stored message's layout, seen from outside: routing keys of every length kept after
// the node (in size classes of 16 to 256 bytes), properties kept only when set, and both
// handed back intact by try_get, subscribe, dead-lettering and basic.return.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::manual;
using warren_test::with_args;

namespace {

/// A key of `n` bytes that tells its bytes apart: every byte value, NUL and 0xFF included.
std::string key_of(std::size_t n) {
    std::string key(n, '\0');
    for (std::size_t i = 0; i < n; ++i) key[i] = static_cast<char>((i * 7 + n) % 256);
    return key;
}

/// Exchange "x", a fanout to queue "q".
template <class Broker>
void fanout_to_q(Broker& b) {
    b.declare_exchange("x", "fanout");
    b.declare_queue("q");
    b.bind_queue("q", "x");
}

warren::properties some_properties() {
    warren::properties p;
    p.correlation_id = "c-1";
    p.headers.set("tenant", "eu");
    return p;
}

} // namespace

TEMPLATE_TEST_CASE("message layout: routing keys of every length from 0 to 255 bytes come back as published",
                   "[message][layout]", warren::broker, warren::concurrent_broker) {
    TestType b;
    fanout_to_q(b);
    // Every length, so that each size class and both sides of each boundary are stored.
    for (std::size_t n = 0; n <= warren::max_name_length; ++n) {
        REQUIRE(b.publish("x", {.routing_key = key_of(n), .body = std::to_string(n)}) == 1);
    }
    for (std::size_t n = 0; n <= warren::max_name_length; ++n) {
        auto d = b.try_get("q");
        REQUIRE(d);
        CHECK(d->body() == std::to_string(n));
        CHECK(d->routing_key() == key_of(n));
    }
}

TEMPLATE_TEST_CASE("message layout: keys of 0, 15, 16, 100 and 255 bytes reach a subscriber intact",
                   "[message][layout]", warren::broker, warren::concurrent_broker) {
    TestType b;
    fanout_to_q(b);
    std::vector<std::string> keys;
    auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { keys.emplace_back(d.routing_key()); });
    const std::vector<std::size_t> lengths{0, 15, 16, 100, 255};
    for (const std::size_t n : lengths) REQUIRE(b.publish("x", {.routing_key = key_of(n), .body = "b"}) == 1);
    CHECK(b.dispatch() == lengths.size());
    REQUIRE(keys.size() == lengths.size());
    for (std::size_t i = 0; i < lengths.size(); ++i) CHECK(keys[i] == key_of(lengths[i]));
}

TEMPLATE_TEST_CASE("message layout: a message that sets no property reads the one shared default", "[message][layout]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    REQUIRE(b.publish("", {.routing_key = "q", .body = "plain 1"}) == 1);
    REQUIRE(b.publish("", {.routing_key = "q", .body = "plain 2"}) == 1);
    typename TestType::message_type with{.routing_key = "q", .body = "with"};
    with.properties = some_properties();
    REQUIRE(b.publish("", std::move(with)) == 1);

    auto first = b.try_get("q");
    auto second = b.try_get("q");
    auto third = b.try_get("q");
    REQUIRE(first);
    REQUIRE(second);
    REQUIRE(third);
    CHECK(first->properties() == warren::properties{});
    // Not stored per message: both read one object.
    CHECK(&first->properties() == &second->properties());
    CHECK(third->properties() == some_properties());
    CHECK(&third->properties() != &first->properties());
}

TEMPLATE_TEST_CASE("message layout: properties that are set, even to empty values, are kept", "[message][layout]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    auto with = [](auto set) {
        typename TestType::message_type m{.routing_key = "q", .body = "b"};
        set(m.properties);
        return m;
    };
    // An empty string is a value (AMQP tells it from absent), and so is a priority of 0.
    std::vector<typename TestType::message_type> sent{
        with([](warren::properties& p) { p.content_type = ""; }),
        with([](warren::properties& p) { p.priority = 0; }),
        with([](warren::properties& p) { p.timestamp = 0; }),
        with([](warren::properties& p) { p.headers.set("k", ""); }),
        with([](warren::properties& p) { p.app_id = "app"; }),
    };
    for (const auto& m : sent) REQUIRE(b.publish("", m) == 1);
    std::vector<warren::properties> got;
    auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { got.push_back(d.properties()); });
    CHECK(b.dispatch() == sent.size());
    REQUIRE(got.size() == sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) {
        CHECK(got[i] == sent[i].properties);
        CHECK_FALSE(got[i] == warren::properties{});
    }
}

TEMPLATE_TEST_CASE("message layout: a dead letter carries the original's key, body and properties with its x-death",
                   "[message][layout][dead-letter]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    const std::string long_key = key_of(200);
    // Publishes `m` to the default exchange, rejects it from "q" and takes its dead letter.
    auto dead_letter_of = [&b](typename TestType::message_type m) {
        REQUIRE(b.publish("", std::move(m)) == 1);
        auto d = b.try_get("q", manual);
        REQUIRE(d);
        d->reject(false);
        auto dead = b.try_get("dead");
        REQUIRE(dead);
        return std::move(*dead);
    };

    SECTION("a message without properties gets an x-death, its key kept") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
        auto dead = dead_letter_of({.routing_key = "q", .body = "plain"});
        CHECK(dead.body() == "plain");
        CHECK(dead.routing_key() == "q");
        CHECK(dead.properties().headers.contains("x-death"));
        CHECK_FALSE(dead.properties().correlation_id);
    }
    SECTION("a message with properties keeps them, under a long dead-letter routing key") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}, {"x-dead-letter-routing-key", long_key}}));
        typename TestType::message_type m{.routing_key = "q", .body = "with"};
        m.properties = some_properties();
        auto dead = dead_letter_of(std::move(m));
        CHECK(dead.body() == "with");
        CHECK(dead.routing_key() == long_key);
        CHECK(dead.properties().correlation_id == "c-1");
        CHECK(warren_test::header_text(dead.properties(), "tenant") == "eu");
        CHECK(dead.properties().headers.contains("x-death"));
        CHECK(warren_test::header_text(dead.properties(), "x-first-death-queue") == "q");
    }
}

TEMPLATE_TEST_CASE("message layout: basic.return hands back the key, body and properties as published",
                   "[message][layout][return]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct"); // bound to nothing: every message is unroutable
    std::vector<typename TestType::message_type> returned;
    b.set_return_handler([&](typename TestType::returned_message& r) { returned.push_back(std::move(r.message)); });
    const std::string long_key = key_of(100);

    typename TestType::message_type with{.routing_key = long_key, .body = "with"};
    with.properties = some_properties();
    REQUIRE(b.publish("x", std::move(with), {.mandatory = true}) == 0);
    REQUIRE(b.publish("x", {.routing_key = "", .body = "plain"}, {.mandatory = true}) == 0);

    REQUIRE(returned.size() == 2);
    CHECK(returned[0].routing_key == long_key);
    CHECK(returned[0].body == "with");
    CHECK(returned[0].properties == some_properties());
    CHECK(returned[1].routing_key.empty());
    CHECK(returned[1].body == "plain");
    CHECK(returned[1].properties == warren::properties{});
}

TEMPLATE_TEST_CASE("message layout: an over-aligned body is stored at its alignment, whatever the key's length",
                   "[message][layout]", warren::single_threaded, warren::multi_threaded) {
    // Aligned beyond what operator new promises: its nodes bypass the pools.
    struct alignas(2 * __STDCPP_DEFAULT_NEW_ALIGNMENT__) wide {
        int value = 0;
    };
    warren::basic_broker<warren::basic_message<wide>, TestType> b;
    b.declare_exchange("x", "fanout");
    b.declare_queue("q");
    b.bind_queue("q", "x");
    const std::vector<std::size_t> lengths{0, 16, 17, 100, 255};
    for (const std::size_t n : lengths) {
        REQUIRE(b.publish("x", {.routing_key = key_of(n), .body = wide{static_cast<int>(n)}}) == 1);
    }
    for (const std::size_t n : lengths) {
        auto d = b.try_get("q");
        REQUIRE(d);
        CHECK(reinterpret_cast<std::uintptr_t>(&d->body()) % alignof(wide) == 0);
        CHECK(d->body().value == static_cast<int>(n));
        CHECK(d->routing_key() == key_of(n));
    }
}
