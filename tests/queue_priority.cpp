// Priority queues (x-max-priority): the order messages leave in, requeues, length limits
// and dispatch, as RabbitMQ 3.10's classic priority queues define them (priority.html,
// rabbit_priority_queue).

#include <warren/broker.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::drain;
using warren_test::drain_marked;
using warren_test::manual;
using warren_test::strings;

namespace {


warren::queue_options max_priority(std::int64_t max, warren::field_table more = {}) {
    warren::queue_options options;
    options.arguments = std::move(more);
    options.arguments.set("x-max-priority", max);
    return options;
}

/// Publishes `body` to `queue` through the default exchange with `priority` (none when
/// empty); it must arrive.
template <class Broker>
void send_priority(Broker& b, std::string_view queue, std::string_view body, std::optional<std::uint8_t> priority) {
    typename Broker::message_type m;
    m.routing_key = std::string(queue);
    m.body = std::string(body);
    m.properties.priority = priority;
    REQUIRE(b.publish("", std::move(m)) == 1);
}

} // namespace

TEMPLATE_TEST_CASE("priority: higher priorities leave first, FIFO within a priority (RabbitMQ priority.html)",
                   "[queue][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", max_priority(10));
    send_priority(b, "q", "a1", 1);
    send_priority(b, "q", "b5", 5);
    send_priority(b, "q", "c1", 1);
    send_priority(b, "q", "d10", 10);
    send_priority(b, "q", "e5", 5);
    send_priority(b, "q", "f0", 0);
    CHECK(b.message_count("q") == 6);
    CHECK(drain(b, "q") == strings{"d10", "b5", "e5", "a1", "c1", "f0"});
}

TEMPLATE_TEST_CASE("priority: a message without priority counts as priority 0 (RabbitMQ priority.html)",
                   "[queue][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", max_priority(5));
    send_priority(b, "q", "none1", std::nullopt);
    send_priority(b, "q", "zero", 0);
    send_priority(b, "q", "one", 1);
    send_priority(b, "q", "none2", std::nullopt);
    CHECK(drain(b, "q") == strings{"one", "none1", "zero", "none2"});
}

TEMPLATE_TEST_CASE("priority: a priority above the maximum counts as the maximum (RabbitMQ priority.html)",
                   "[queue][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", max_priority(5));
    send_priority(b, "q", "four", 4);
    send_priority(b, "q", "five", 5);
    send_priority(b, "q", "255", 255);
    send_priority(b, "q", "six", 6);
    send_priority(b, "q", "five-again", 5);
    // 255 and 6 are 5: arrival order among the fives, all ahead of 4.
    CHECK(drain(b, "q") == strings{"five", "255", "six", "five-again", "four"});
}

TEMPLATE_TEST_CASE("priority: x-max-priority 0 and no x-max-priority keep arrival order (rabbit_priority_queue)",
                   "[queue][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("x-max-priority 0: one priority") {
        b.declare_queue("q", max_priority(0));
    }
    SECTION("no x-max-priority: priorities are ignored") {
        b.declare_queue("q");
    }
    send_priority(b, "q", "nine", 9);
    send_priority(b, "q", "one", 1);
    send_priority(b, "q", "none", std::nullopt);
    send_priority(b, "q", "five", 5);
    CHECK(drain(b, "q") == strings{"nine", "one", "none", "five"});
}

TEMPLATE_TEST_CASE("priority: a requeued message returns to its place within its priority (RabbitMQ priority.html)",
                   "[queue][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", max_priority(9));

    SECTION("ahead of later messages of its priority, behind higher ones") {
        send_priority(b, "q", "a5", 5);
        send_priority(b, "q", "b5", 5);
        send_priority(b, "q", "c1", 1);
        auto a = b.try_get("q", manual);
        REQUIRE(a);
        CHECK(a->body() == "a5");
        send_priority(b, "q", "d5", 5);
        send_priority(b, "q", "e9", 9);
        a->nack(false, true);
        CHECK(drain_marked(b, "q") == strings{"e9", "a5*", "b5", "d5", "c1"});
    }
    SECTION("several requeued, in their original order whatever the order of the nacks") {
        send_priority(b, "q", "x9", 9);
        send_priority(b, "q", "y1", 1);
        send_priority(b, "q", "z1", 1);
        send_priority(b, "q", "w9", 9);
        std::vector<typename TestType::delivery> got;
        while (auto d = b.try_get("q", manual)) got.push_back(std::move(*d));
        REQUIRE(got.size() == 4); // x9 w9 y1 z1
        CHECK(got[0].body() == "x9");
        CHECK(got[3].body() == "z1");
        got[3].reject(true);
        got[2].reject(true);
        got[1].reject(true);
        got[0].ack();
        send_priority(b, "q", "v1", 1);
        CHECK(drain_marked(b, "q") == strings{"w9*", "y1*", "z1*", "v1"});
    }
    SECTION("a message above the maximum returns among the maximum's") {
        send_priority(b, "q", "big", 200);
        send_priority(b, "q", "nine", 9);
        auto big = b.try_get("q", manual);
        REQUIRE(big);
        CHECK(big->body() == "big");
        big->reject(true);
        CHECK(drain_marked(b, "q") == strings{"big*", "nine"});
    }
}

// Which message drop-head takes from a priority queue is what a consumer would get next:
// the head of the highest non-empty priority (rabbit_priority_queue:drop/fetch go to the
// highest priority first). RabbitMQ's exact choice is being checked by the differential
// test in tests/differential/.
TEMPLATE_TEST_CASE("priority: drop-head drops the message a consumer would get next (rabbit_priority_queue)",
                   "[queue][priority][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    b.declare_queue("q", max_priority(5, {{"x-max-length", 2}, {"x-dead-letter-exchange", "dlx"}}));
    send_priority(b, "q", "low", 1);
    send_priority(b, "q", "high", 5);
    send_priority(b, "q", "mid", 3); // three ready: the head, high, goes
    CHECK(drain(b, "dead") == strings{"high"});
    send_priority(b, "q", "low2", 1); // mid is the head now
    CHECK(drain(b, "dead") == strings{"mid"});
    CHECK(drain(b, "q") == strings{"low", "low2"});
    const warren::queue_counters c = b.queue_stats("q");
    CHECK(c.dead_lettered.maxlen == 2);
    CHECK(c.accounted());
}

TEMPLATE_TEST_CASE("priority: reject-publish refuses a high-priority message at the limit (RabbitMQ maxlength.html)",
                   "[queue][priority][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", max_priority(5, {{"x-max-length", 1}, {"x-overflow", "reject-publish"}}));
    send_priority(b, "q", "low", 0);
    typename TestType::message_type m{.routing_key = "q", .body = "high"};
    m.properties.priority = 5;
    const warren::confirmation c = b.publish_confirmed("", std::move(m));
    CHECK_FALSE(c.ack);
    CHECK(c.refused == 1);
    CHECK(drain(b, "q") == strings{"low"});
}

TEMPLATE_TEST_CASE("priority: dispatch delivers to a subscriber in priority order (RabbitMQ priority.html)",
                   "[queue][priority][dispatch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", max_priority(10));
    strings got;

    SECTION("messages waiting when dispatch runs") {
        send_priority(b, "q", "a2", 2);
        send_priority(b, "q", "b7", 7);
        send_priority(b, "q", "c", std::nullopt);
        send_priority(b, "q", "d7", 7);
        auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { got.push_back(d.body()); });
        CHECK(b.dispatch() == 4);
        CHECK(got == strings{"b7", "d7", "a2", "c"});
    }
    SECTION("prefetch 1: a message of higher priority arriving meanwhile goes next") {
        std::vector<typename TestType::delivery> held;
        auto sub = b.subscribe(
            "q",
            [&](typename TestType::delivery& d) {
                got.push_back(d.body());
                held.push_back(std::move(d));
            },
            {.ack = manual, .prefetch = 1});
        send_priority(b, "q", "a1", 1);
        send_priority(b, "q", "b1", 1);
        CHECK(b.dispatch() == 1); // a1; then the consumer is at its limit
        send_priority(b, "q", "c9", 9);
        held.back().ack();
        CHECK(b.dispatch() == 1);
        held.back().ack();
        CHECK(b.dispatch() == 1);
        held.back().ack();
        CHECK(got == strings{"a1", "c9", "b1"});
    }
}
