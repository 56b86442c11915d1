// The single-threaded delivery path allocates nothing per message once warm: publish ->
// route -> queue -> dispatch -> callback, for direct, topic (cache hit) and fanout to ten
// queues, with bodies moved in.
//
// Allocations are counted by the replaced global operator new of warren_tests_allocation
// (support/counting_allocator.cpp; see tests/CMakeLists.txt).

#include <array>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/counting_allocator.hpp"

using warren_test::allocation_counter;

namespace {

constexpr int warm_up = 2000;
constexpr int measured = 5000;

/// Bodies made before counting starts: what the application allocates is not the broker's.
std::vector<warren::message> make_messages(int n, const std::string& key) {
    std::vector<warren::message> out;
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        out.push_back({.routing_key = key, .body = std::string(100, static_cast<char>('a' + i % 26))});
    }
    return out;
}

/// Publishes every message through `publisher` and dispatches after each batch of
/// `batch`; returns the allocations made while doing so.
std::size_t run(warren::broker& broker, const warren::publisher& publisher, std::vector<warren::message>& messages,
                int batch) {
    allocation_counter counter;
    int in_batch = 0;
    for (auto& m : messages) {
        (void)publisher.publish(std::move(m));
        if (++in_batch == batch) {
            broker.dispatch();
            in_batch = 0;
        }
    }
    broker.dispatch();
    return counter.count();
}

} // namespace

TEST_CASE("allocation: the counting allocator sees allocations", "[allocation]") {
    allocation_counter counter;
    auto* p = new std::string(100, 'x'); // a long string: the object and its buffer
    delete p;
    CHECK(counter.count() == 2);
}

TEST_CASE("allocation: direct exchange publish and dispatch allocate nothing once warm", "[allocation]") {
    warren::broker broker;
    broker.declare_exchange("events", "direct");
    broker.declare_queue("q");
    broker.bind_queue("q", "events", "unit.spawned");
    std::size_t received = 0;
    std::size_t bytes = 0;
    auto sub = broker.subscribe("q", [&](warren::delivery& d) {
        ++received;
        bytes += d.body().size();
    });
    const auto publisher = broker.make_publisher("events");

    auto warm = make_messages(warm_up, "unit.spawned");
    (void)run(broker, publisher, warm, 64);
    auto messages = make_messages(measured, "unit.spawned");
    const std::size_t allocated = run(broker, publisher, messages, 64);
    CHECK(allocated == 0);
    CHECK(received == warm_up + measured);
    CHECK(bytes == 100 * received);
}

TEST_CASE("allocation: manual acknowledgement allocates nothing once warm", "[allocation]") {
    warren::broker broker;
    broker.declare_queue("q");
    std::size_t received = 0;
    auto sub = broker.subscribe("q", [&](warren::delivery& d) {
        ++received;
        d.ack();
    }, {.tag = "a-consumer-tag-longer-than-small-string-storage", .ack = warren::ack_mode::manual, .prefetch = 32});
    const auto publisher = broker.make_publisher(""); // the default exchange

    auto warm = make_messages(warm_up, "q");
    (void)run(broker, publisher, warm, 100);
    auto messages = make_messages(measured, "q");
    CHECK(run(broker, publisher, messages, 100) == 0);
    CHECK(received == warm_up + measured);
    CHECK(broker.queue_stats("q").acked == received);
}

TEST_CASE("allocation: topic exchange with a routing cache hit allocates nothing once warm", "[allocation]") {
    warren::broker broker;
    broker.declare_exchange("world", "topic");
    const std::array<const char*, 4> patterns{"unit.*.spawned", "unit.#", "*.player.*", "#.despawned"};
    for (std::size_t i = 0; i < patterns.size(); ++i) {
        const std::string name = "q" + std::to_string(i);
        broker.declare_queue(name);
        broker.bind_queue(name, "world", patterns[i]);
    }
    std::size_t received = 0;
    std::vector<warren::subscription> subs;
    for (std::size_t i = 0; i < patterns.size(); ++i) {
        subs.push_back(broker.subscribe("q" + std::to_string(i), [&](warren::delivery&) { ++received; }));
    }
    const auto publisher = broker.make_publisher("world");

    auto warm = make_messages(warm_up, "unit.player.spawned");
    (void)run(broker, publisher, warm, 64);
    auto messages = make_messages(measured, "unit.player.spawned");
    CHECK(run(broker, publisher, messages, 64) == 0);
    CHECK(received == 3 * (warm_up + measured)); // unit.*.spawned, unit.#, *.player.*
}

TEST_CASE("allocation: fanout to ten queues allocates nothing once warm", "[allocation]") {
    warren::broker broker;
    broker.declare_exchange("frame", "fanout");
    std::size_t received = 0;
    std::vector<warren::subscription> subs;
    for (int i = 0; i < 10; ++i) {
        const std::string name = "system" + std::to_string(i);
        broker.declare_queue(name);
        broker.bind_queue(name, "frame");
        subs.push_back(broker.subscribe(name, [&](warren::delivery&) { ++received; }));
    }
    const auto publisher = broker.make_publisher("frame");

    auto warm = make_messages(warm_up, "tick");
    (void)run(broker, publisher, warm, 256);
    auto messages = make_messages(measured, "tick");
    CHECK(run(broker, publisher, messages, 256) == 0);
    CHECK(received == 10 * (warm_up + measured));
}

TEST_CASE("allocation: a struct body costs no allocation from publish to callback", "[allocation]") {
    struct collision {
        int a;
        int b;
        float impulse;
    };
    using broker_type = warren::basic_broker<warren::basic_message<collision>, warren::single_threaded>;
    broker_type broker;
    broker.declare_exchange("physics", "topic");
    broker.declare_queue("audio");
    broker.bind_queue("audio", "physics", "collision.#");
    float total = 0;
    auto sub = broker.subscribe("audio", [&](broker_type::delivery& d) { total += d.body().impulse; });
    const auto publisher = broker.make_publisher("physics");
    auto publish_frame = [&] {
        for (int i = 0; i < 100; ++i) {
            (void)publisher.publish({.routing_key = "collision.wall", .body = {i, i + 1, 0.5f}});
        }
        broker.dispatch();
    };
    for (int frame = 0; frame < 20; ++frame) publish_frame();
    allocation_counter counter;
    for (int frame = 0; frame < 50; ++frame) publish_frame();
    CHECK(counter.count() == 0);
    CHECK(total == 0.5f * 100 * 70);
}
