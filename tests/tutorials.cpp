// RabbitMQ's tutorials 4, 5 and 6 (https://www.rabbitmq.com/tutorials), checked through
// the broker: the routing tables they state, and the RPC round trip.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::drain;
using warren_test::strings;

namespace {

struct topic_case {
    const char* key;
    std::size_t q1; // copies Q1 gets
    std::size_t q2; // copies Q2 gets
};

/// What the RPC client saw of one reply.
struct reply {
    std::string correlation_id;
    std::string body;
    std::string routing_key;
    std::string exchange;
    friend bool operator==(const reply&, const reply&) = default;
    friend std::ostream& operator<<(std::ostream& os, const reply& r) {
        return os << "{" << r.correlation_id << ", " << r.body << ", " << r.routing_key << ", '" << r.exchange << "'}";
    }
};

std::uint64_t fib(std::uint64_t n) {
    std::uint64_t a = 0;
    std::uint64_t b = 1;
    for (std::uint64_t i = 0; i < n; ++i) b = std::exchange(a, b) + b;
    return a;
}

} // namespace

TEMPLATE_TEST_CASE("tutorials: topic table of tutorial 5", "[tutorials][topic]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("topic_logs", "topic");
    broker.declare_queue("Q1");
    broker.declare_queue("Q2");
    broker.bind_queue("Q1", "topic_logs", "*.orange.*");
    broker.bind_queue("Q2", "topic_logs", "*.*.rabbit");
    broker.bind_queue("Q2", "topic_logs", "lazy.#");

    const topic_case c = GENERATE(values<topic_case>({
        {"quick.orange.rabbit", 1, 1},
        {"lazy.orange.elephant", 1, 1},
        {"quick.orange.fox", 1, 0},
        {"lazy.brown.fox", 0, 1},
        {"lazy.pink.rabbit", 0, 1}, // matches both of Q2's bindings, delivered once
        {"quick.brown.fox", 0, 0},
        {"orange", 0, 0},
        {"quick.orange.new.rabbit", 0, 0},
        {"lazy.orange.new.rabbit", 0, 1},
    }));
    CAPTURE(c.key);

    const std::size_t routed = broker.publish("topic_logs", {.routing_key = c.key, .body = c.key});

    CHECK(routed == c.q1 + c.q2);
    CHECK(drain(broker, "Q1") == strings(c.q1, c.key));
    CHECK(drain(broker, "Q2") == strings(c.q2, c.key));
}

TEMPLATE_TEST_CASE("tutorials: direct routing of tutorial 4", "[tutorials][direct]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("direct_logs", "direct");
    broker.declare_queue("Q1");
    broker.declare_queue("Q2");

    SECTION("orange goes to Q1, black and green to Q2, any other colour is dropped") {
        broker.bind_queue("Q1", "direct_logs", "orange");
        broker.bind_queue("Q2", "direct_logs", "black");
        broker.bind_queue("Q2", "direct_logs", "green");

        CHECK(broker.publish("direct_logs", {.routing_key = "orange", .body = "orange"}) == 1);
        CHECK(broker.publish("direct_logs", {.routing_key = "black", .body = "black"}) == 1);
        CHECK(broker.publish("direct_logs", {.routing_key = "green", .body = "green"}) == 1);
        CHECK(broker.publish("direct_logs", {.routing_key = "red", .body = "red"}) == 0);

        CHECK(drain(broker, "Q1") == strings{"orange"});
        CHECK(drain(broker, "Q2") == strings{"black", "green"});
    }
    SECTION("one key bound to two queues behaves like fanout") {
        broker.bind_queue("Q1", "direct_logs", "black");
        broker.bind_queue("Q2", "direct_logs", "black");

        CHECK(broker.publish("direct_logs", {.routing_key = "black", .body = "black"}) == 2);

        CHECK(drain(broker, "Q1") == strings{"black"});
        CHECK(drain(broker, "Q2") == strings{"black"});
    }
    SECTION("severities: the disk receiver gets warning and error, the screen also info") {
        for (const char* severity : {"warning", "error"}) broker.bind_queue("Q1", "direct_logs", severity);
        for (const char* severity : {"info", "warning", "error"}) broker.bind_queue("Q2", "direct_logs", severity);

        for (const char* severity : {"info", "warning", "error", "debug"}) {
            (void)broker.publish("direct_logs", {.routing_key = severity, .body = severity});
        }

        CHECK(drain(broker, "Q1") == strings{"warning", "error"});
        CHECK(drain(broker, "Q2") == strings{"info", "warning", "error"});
    }
}

TEMPLATE_TEST_CASE("tutorials: RPC round trip of tutorial 6", "[tutorials][rpc]", warren::broker,
                   warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType broker;

    // rpc_server: prefetch 1, manual acks, answers to reply_to with the correlation_id.
    broker.declare_queue("rpc_queue");
    std::vector<std::size_t> reply_routed;
    auto server = broker.subscribe(
        "rpc_queue",
        [&](delivery& request) {
            warren::message reply{.routing_key = request.properties().reply_to.value_or(""),
                                  .body = std::to_string(fib(std::stoull(request.body())))};
            reply.properties.correlation_id = request.properties().correlation_id;
            reply_routed.push_back(broker.publish("", std::move(reply)));
            request.ack();
        },
        {.ack = warren::ack_mode::manual, .prefetch = 1});

    // rpc_client: an exclusive server-named callback queue.
    const std::string callback_queue = broker.declare_queue("", {.exclusive = true});
    REQUIRE(callback_queue.starts_with("amq.gen-"));
    std::vector<reply> replies;
    auto client = broker.subscribe(callback_queue, [&](delivery& d) {
        replies.push_back({d.properties().correlation_id.value_or("(none)"), d.body(), std::string(d.routing_key()), d.exchange()});
    });
    auto call = [&](std::uint64_t n, std::string correlation_id) {
        warren::message request{.routing_key = "rpc_queue", .body = std::to_string(n)};
        request.properties.reply_to = callback_queue;
        request.properties.correlation_id = std::move(correlation_id);
        return broker.publish("", std::move(request));
    };

    SECTION("the reply comes back to reply_to, carrying the request's correlation_id") {
        REQUIRE(call(30, "abc") == 1);
        broker.dispatch();

        CHECK(replies == std::vector<reply>{{"abc", "832040", callback_queue, ""}});
        CHECK(reply_routed == std::vector<std::size_t>{1});
        const auto stats = broker.queue_stats("rpc_queue");
        CHECK(stats.acked == 1);
        CHECK(stats.unacked == 0);
        CHECK(stats.ready == 0);
    }
    SECTION("two requests in flight are told apart by correlation_id") {
        REQUIRE(call(10, "first") == 1);
        REQUIRE(call(20, "second") == 1);
        broker.dispatch();

        CHECK(replies == std::vector<reply>{{"first", "55", callback_queue, ""}, {"second", "6765", callback_queue, ""}});
        CHECK(broker.queue_stats("rpc_queue").acked == 2);
    }
    SECTION("a reply to a callback queue that is gone is unroutable, not an error") {
        REQUIRE(call(10, "orphan") == 1);
        client.release();
        (void)broker.delete_queue(callback_queue);
        broker.dispatch();

        CHECK(replies.empty());
        CHECK(reply_routed == std::vector<std::size_t>{0});
        CHECK(broker.queue_stats("rpc_queue").acked == 1);
    }
}
