// basic_message<Body>: bodies of any movable type, shared on fanout, and the delivery
// envelope around them.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/counting.hpp"

namespace {

struct order {
    int id = 0;
    std::string item;
    double price = 0;

    friend bool operator==(const order&, const order&) = default;
};

struct created {
    int id = 0;
};
struct shipped {
    std::string carrier;
};
using event = std::variant<created, shipped>;

template <class Body>
warren::basic_message<Body> make(std::string key, Body body) {
    warren::basic_message<Body> m;
    m.routing_key = std::move(key);
    m.body = std::move(body);
    return m;
}

/// A broker of `Body` messages with an exchange "x" of `type` bound to the queues `names`.
template <class Body, class Policy>
struct fixture {
    warren::basic_broker<warren::basic_message<Body>, Policy> broker;

    explicit fixture(std::initializer_list<const char*> names, const char* type = "fanout") {
        broker.declare_exchange("x", type);
        for (const char* name : names) {
            (void)broker.declare_queue(name);
            broker.bind_queue(name, "x", "#");
        }
    }
};

} // namespace

static_assert(warren::message_type<warren::message>);
static_assert(warren::message_type<warren::basic_message<std::unique_ptr<int>>>);
static_assert(!warren::message_type<std::string>);
static_assert(std::is_same_v<warren::message::body_type, std::string>);

TEMPLATE_TEST_CASE("message: bodies of any movable type arrive intact", "[message]", warren::single_threaded,
                   warren::multi_threaded) {
    SECTION("std::string, moved rather than copied") {
        fixture<std::string, TestType> f({"q"});
        std::string body(1000, 'b'); // long enough to live on the heap
        const char* data = body.data();
        REQUIRE(f.broker.publish("x", make("k", std::move(body))) == 1);
        auto d = f.broker.try_get("q");
        REQUIRE(d);
        CHECK(d->body() == std::string(1000, 'b'));
        CHECK(d->body().data() == data);
    }
    SECTION("a user struct") {
        fixture<order, TestType> f({"q"});
        REQUIRE(f.broker.publish("x", make("k", order{7, "lamp", 19.5})) == 1);
        REQUIRE(f.broker.publish("x", make("k", order{8, "desk", 120.0})) == 1);
        auto first = f.broker.try_get("q");
        auto second = f.broker.try_get("q");
        REQUIRE(first);
        REQUIRE(second);
        CHECK(first->body() == order{7, "lamp", 19.5});
        CHECK(second->body() == order{8, "desk", 120.0});
        CHECK_FALSE(f.broker.try_get("q"));
    }
    SECTION("std::vector<std::byte>") {
        fixture<std::vector<std::byte>, TestType> f({"q"});
        std::vector<std::byte> bytes{std::byte{0x00}, std::byte{0xFF}, std::byte{0x7F}, std::byte{0x00}};
        const std::byte* data = bytes.data();
        REQUIRE(f.broker.publish("x", make("k", std::move(bytes))) == 1);
        auto d = f.broker.try_get("q");
        REQUIRE(d);
        CHECK(d->body() == std::vector<std::byte>{std::byte{0x00}, std::byte{0xFF}, std::byte{0x7F}, std::byte{0x00}});
        CHECK(d->body().data() == data);
    }
    SECTION("a std::variant of event types") {
        fixture<event, TestType> f({"q"});
        REQUIRE(f.broker.publish("x", make("order.created", event{created{42}})) == 1);
        REQUIRE(f.broker.publish("x", make("order.shipped", event{shipped{"post"}})) == 1);
        auto first = f.broker.try_get("q");
        auto second = f.broker.try_get("q");
        REQUIRE(first);
        REQUIRE(second);
        REQUIRE(std::holds_alternative<created>(first->body()));
        CHECK(std::get<created>(first->body()).id == 42);
        CHECK(first->routing_key() == "order.created");
        REQUIRE(std::holds_alternative<shipped>(second->body()));
        CHECK(std::get<shipped>(second->body()).carrier == "post");
        CHECK(second->routing_key() == "order.shipped");
    }
    SECTION("a move-only body") {
        fixture<std::unique_ptr<int>, TestType> f({"q1", "q2"});
        auto owned = std::make_unique<int>(42);
        const int* raw = owned.get();
        REQUIRE(f.broker.publish("x", make("k", std::move(owned))) == 2);
        auto d1 = f.broker.try_get("q1");
        auto d2 = f.broker.try_get("q2");
        REQUIRE(d1);
        REQUIRE(d2);
        REQUIRE(d1->body() != nullptr);
        CHECK(*d1->body() == 42);
        CHECK(d1->body().get() == raw); // the very object published
        CHECK(d2->body().get() == raw);
    }
    SECTION("an empty body") {
        fixture<std::string, TestType> f({"q"});
        REQUIRE(f.broker.publish("x", make("k", std::string())) == 1);
        auto d = f.broker.try_get("q");
        REQUIRE(d);
        CHECK(d->body().empty());
    }
}

TEMPLATE_TEST_CASE("message: fanout shares one message between queues", "[message]", warren::single_threaded,
                   warren::multi_threaded) {
    fixture<std::string, TestType> f({"a", "b", "c"});
    REQUIRE(f.broker.publish("x", make("k", std::string("shared"))) == 3);
    auto a = f.broker.try_get("a");
    auto b = f.broker.try_get("b");
    auto c = f.broker.try_get("c");
    REQUIRE(a);
    REQUIRE(b);
    REQUIRE(c);
    CHECK(a->body() == "shared");
    // The documented sharing: one message, so one body, whatever the number of queues.
    CHECK(&a->body() == &b->body());
    CHECK(&a->body() == &c->body());
    CHECK(a->routing_key().data() == b->routing_key().data()); // one stored key too
    // Each queue still has its own envelope.
    CHECK(a->delivery_tag() == 1);
    CHECK(b->delivery_tag() == 1);

    SECTION("the message lives as long as a delivery holds it") {
        CHECK(f.broker.delete_queue("a") == 0);
        CHECK(f.broker.delete_queue("b") == 0);
        b.reset();
        CHECK(a->body() == "shared");
        CHECK(c->body() == "shared");
    }
}

TEMPLATE_TEST_CASE("message: the broker never copies a body", "[message]", warren::single_threaded,
                   warren::multi_threaded) {
    using warren_test::copy_counter;
    fixture<copy_counter, TestType> f({"q1", "q2", "q3"});
    copy_counter::copies = 0;
    REQUIRE(f.broker.publish("x", make("k", copy_counter(5))) == 3);
    auto d1 = f.broker.try_get("q1");
    auto d2 = f.broker.try_get("q2", warren::ack_mode::manual);
    REQUIRE(d1);
    REQUIRE(d2);
    CHECK(d1->body().value == 5);
    d2->reject(true); // requeued: still no copy
    int seen = 0;
    {
        auto sub = f.broker.subscribe("q2", [&](auto& d) { seen = d.body().value; });
        CHECK(f.broker.dispatch() == 1);
    }
    CHECK(seen == 5);
    CHECK(copy_counter::copies == 0);
}

TEMPLATE_TEST_CASE("message: routing key and properties are preserved", "[message]", warren::single_threaded,
                   warren::multi_threaded) {
    fixture<std::string, TestType> f({"q"}, "topic");
    auto m = make("orders.eu.created", std::string("body"));
    m.properties.content_type = "application/json";
    m.properties.correlation_id = "abc";
    m.properties.headers.set("region", "eu");
    const warren::properties sent = m.properties;
    REQUIRE(f.broker.publish("x", m) == 1);
    auto d = f.broker.try_get("q");
    REQUIRE(d);
    CHECK(d->routing_key() == "orders.eu.created");
    CHECK(d->properties() == sent);
    CHECK(d->body() == "body");
    // The message published was a copy (lvalue): the caller's is untouched.
    CHECK(m.body == "body");
    CHECK(m.routing_key == "orders.eu.created");
}

TEMPLATE_TEST_CASE("message: the delivery envelope", "[message][delivery]", warren::single_threaded,
                   warren::multi_threaded) {
    fixture<std::string, TestType> f({"q1", "q2"});
    for (const char* body : {"1", "2", "3"}) REQUIRE(f.broker.publish("x", make("key", std::string(body))) == 2);

    SECTION("try_get") {
        std::vector<std::uint64_t> tags;
        std::vector<std::string> bodies;
        while (auto d = f.broker.try_get("q1")) {
            CHECK(d->exchange() == "x");
            CHECK(d->routing_key() == "key");
            CHECK_FALSE(d->redelivered());
            CHECK(d->consumer_tag().empty());
            CHECK_FALSE(d->pending()); // automatic ack
            tags.push_back(d->delivery_tag());
            bodies.push_back(d->body());
        }
        CHECK(tags == std::vector<std::uint64_t>{1, 2, 3});
        CHECK(bodies == std::vector<std::string>{"1", "2", "3"});
        // Tags count per queue: q2 starts at 1 and goes on from there.
        auto d = f.broker.try_get("q2", warren::ack_mode::manual);
        REQUIRE(d);
        CHECK(d->delivery_tag() == 1);
        CHECK(d->pending());
        d->reject(true);
        auto again = f.broker.try_get("q2");
        REQUIRE(again);
        CHECK(again->body() == "1");
        CHECK(again->redelivered());
        CHECK(again->delivery_tag() == 2);
    }
    SECTION("the default exchange is named \"\"") {
        REQUIRE(f.broker.purge_queue("q1") == 3);
        REQUIRE(f.broker.publish("", make("q1", std::string("direct"))) == 1);
        auto d = f.broker.try_get("q1");
        REQUIRE(d);
        CHECK(d->exchange().empty());
        CHECK(d->routing_key() == "q1");
    }
    SECTION("a consumer's delivery carries its consumer tag") {
        std::vector<std::string> seen;
        warren::consumer_options options;
        options.tag = "worker-1";
        auto sub = f.broker.subscribe(
            "q2",
            [&](auto& d) {
                seen.push_back(d.consumer_tag() + ":" + std::to_string(d.delivery_tag()) + ":" + d.body());
            },
            options);
        CHECK(f.broker.dispatch() == 3);
        CHECK(seen == std::vector<std::string>{"worker-1:1:1", "worker-1:2:2", "worker-1:3:3"});
    }
}
