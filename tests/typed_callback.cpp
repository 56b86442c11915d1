// Typed events: a subscription that takes one alternative of a std::variant body
// (subscribe<Event>, typed_callback), and what becomes of a message of another alternative.

#include <warren/broker.hpp>
#include <warren/typed_callback.hpp>

#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::manual_options;
using warren_test::stats;
using warren_test::with_args;

namespace {

struct collision {
    int a = 0;
    int b = 0;
};
struct explosion {
    double radius = 0;
};
using event = std::variant<collision, explosion>;

template <class Policy>
using event_broker = warren::basic_broker<warren::basic_message<event>, Policy>;

template <class Broker>
void send(Broker& b, const std::string& queue, event e) {
    (void)b.publish("", {.routing_key = queue, .body = std::move(e)});
}

static_assert(warren::alternative_of<collision, event>);
static_assert(!warren::alternative_of<int, event>);
static_assert(!warren::alternative_of<int, std::variant<int, int>>, "an ambiguous alternative is refused");
static_assert(!warren::alternative_of<int, std::string>, "a body that is no variant is refused");

} // namespace

TEMPLATE_TEST_CASE("typed callback: a subscription receives the alternative it takes", "[typed]",
                   warren::single_threaded, warren::multi_threaded) {
    event_broker<TestType> b;
    b.declare_queue("collisions");
    std::vector<int> seen;
    auto sub = b.template subscribe<collision>("collisions", [&](const collision& c) { seen.push_back(c.a * 10 + c.b); });
    send(b, "collisions", collision{1, 2});
    send(b, "collisions", collision{3, 4});
    CHECK(b.dispatch() == 2);
    CHECK(seen == std::vector<int>{12, 34});
    CHECK(stats(b, "collisions").acked == 2);
}

TEMPLATE_TEST_CASE("typed callback: a handler that takes the delivery settles it", "[typed]", warren::single_threaded,
                   warren::multi_threaded) {
    using delivery = typename event_broker<TestType>::delivery;
    event_broker<TestType> b;
    b.declare_queue("explosions");
    std::vector<double> radii;
    auto sub = b.template subscribe<explosion>(
        "explosions",
        [&](const explosion& e, delivery& d) {
            radii.push_back(e.radius);
            if (e.radius > 1) d.ack();
            else d.reject(false);
        },
        manual_options());
    send(b, "explosions", explosion{2.5});
    send(b, "explosions", explosion{0.5});
    CHECK(b.dispatch() == 2);
    CHECK(radii == std::vector<double>{2.5, 0.5});
    const auto c = stats(b, "explosions");
    CHECK(c.acked == 1);
    CHECK(c.dropped.rejected == 1);
    CHECK(c.unacked == 0);
}

TEMPLATE_TEST_CASE("typed callback: a message of another alternative is dead-lettered and reported, never dropped unseen",
                   "[typed]", warren::single_threaded, warren::multi_threaded) {
    event_broker<TestType> b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("misrouted");
    b.bind_queue("misrouted", "dlx", "");
    b.declare_queue("collisions", with_args({{"x-dead-letter-exchange", "dlx"}}));
    std::vector<warren::consumer_error> errors;
    b.set_error_handler([&](const warren::consumer_error& e) { errors.push_back(e); });
    int collisions = 0;
    auto sub = b.template subscribe<collision>("collisions", [&](const collision&) { ++collisions; },
                                               {.tag = "physics", .ack = warren::ack_mode::manual});
    send(b, "collisions", explosion{9});
    send(b, "collisions", collision{1, 1});
    CHECK(b.dispatch() == 2);
    CHECK(collisions == 1);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].queue == "collisions");
    CHECK(errors[0].consumer_tag == "physics");
    try {
        std::rethrow_exception(errors[0].exception);
    } catch (const warren::error& e) {
        CHECK(e.code() == warren::reply_code::precondition_failed);
        CHECK(std::string(e.what()).find("consumer 'physics' takes alternative 0 of the message's variant, the message "
                                         "holds alternative 1") != std::string::npos);
    }
    auto dead = b.try_get("misrouted");
    REQUIRE(dead);
    REQUIRE(std::holds_alternative<explosion>(dead->body()));
    CHECK(std::get<explosion>(dead->body()).radius == 9);
    CHECK(stats(b, "collisions").dead_lettered.rejected == 1);
}

TEMPLATE_TEST_CASE("typed callback: without an error handler the mismatch leaves dispatch as an exception", "[typed]",
                   warren::single_threaded, warren::multi_threaded) {
    event_broker<TestType> b;
    b.declare_queue("collisions");
    auto sub = b.template subscribe<collision>("collisions", [](const collision&) {});
    send(b, "collisions", explosion{1});
    CHECK_THROWS_AS(b.dispatch(), warren::error);
    const auto c = stats(b, "collisions");
    CHECK(c.ready == 0);
    CHECK(c.acked == 1); // automatic acks: settled when handed out; the broker stays consistent
    send(b, "collisions", collision{});
    CHECK(b.dispatch() == 1); // and keeps delivering
}

TEST_CASE("typed callback: works on its own, over any delivery type", "[typed]") {
    using delivery = event_broker<warren::single_threaded>::delivery;
    event_broker<warren::single_threaded> b;
    b.declare_queue("q");
    int hits = 0;
    auto sub = b.subscribe("q", warren::typed_callback<collision, delivery>([&](const collision& c) { hits += c.a; }));
    send(b, "q", collision{5, 0});
    CHECK(b.dispatch() == 1);
    CHECK(hits == 5);
}

TEMPLATE_TEST_CASE("typed callback: under manual acks a handler of the event alone acks once it returns, and a throw "
                   "rejects",
                   "[typed]", warren::single_threaded, warren::multi_threaded) {
    event_broker<TestType> b;
    b.declare_queue("collisions");
    b.set_error_handler([](const warren::consumer_error&) {});
    auto sub = b.template subscribe<collision>(
        "collisions",
        [](const collision& c) {
            if (c.a < 0) throw std::runtime_error("bad collision");
        },
        manual_options());
    send(b, "collisions", collision{1, 0});
    send(b, "collisions", collision{-1, 0});
    CHECK(b.dispatch() == 2);
    const auto c = stats(b, "collisions");
    CHECK(c.acked == 1);
    CHECK(c.dropped.rejected == 1);
    CHECK(c.unacked == 0);
}
