// The single-threaded delivery path allocates nothing per message once warm: publish ->
// route -> queue -> dispatch -> callback, for direct, topic (cache hit) and fanout to ten
// queues, handed to a consumer on arrival or waiting ready, or run inside the publish by a
// synchronous consumer, with bodies moved in, whether published as messages or as a key
// and a body, and whatever properties a message sets beyond what they hold themselves.
//
// Allocations are counted by the replaced global operator new of warren_tests_allocation
// (support/counting_allocator.cpp; see tests/CMakeLists.txt).

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/counting_allocator.hpp"
#include "support/scale.hpp"

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

/// Ten queues on fanout exchange "frame", each with a consumer that counts into `received`.
std::vector<warren::subscription> fan_out_to_ten(warren::broker& broker, std::size_t& received) {
    broker.declare_exchange("frame", "fanout");
    std::vector<warren::subscription> subs;
    for (int i = 0; i < 10; ++i) {
        const std::string name = "system" + std::to_string(i);
        broker.declare_queue(name);
        broker.bind_queue(name, "frame");
        subs.push_back(broker.subscribe(name, [&received](warren::delivery&) { ++received; }));
    }
    return subs;
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
    std::size_t received = 0;
    const auto subs = fan_out_to_ten(broker, received);
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

// ---------------------------------------------------------------------------------------
// A whole frame in flight: every message published before one dispatch. The node pool
// keeps as many nodes as were ever in flight at once (no fixed cap), so a frame of any
// size allocates nothing once a frame of that size has run; 100-byte routing keys.

namespace {

const std::size_t frame = warren_test::at_scale(100000);

/// A 100-byte routing key of three words, `first.<x...>.last`.
std::string hundred_byte_key(const std::string& first, const std::string& last) {
    std::string key = first + ".";
    key += std::string(100 - key.size() - last.size() - 1, 'x');
    key += "." + last;
    return key;
}

/// Publishes a frame of messages, then dispatches once; returns the allocations made.
std::size_t run_frame(warren::broker& broker, const warren::publisher& publisher, const std::string& key) {
    auto messages = make_messages(static_cast<int>(frame), key);
    return run(broker, publisher, messages, static_cast<int>(frame) + 1);
}

using node_type = warren::detail::message_node<warren::message, warren::single_threaded>;

/// Direct exchange "events" with queue "q" bound under `key`.
void events_to_q(warren::broker& broker, const std::string& key) {
    broker.declare_exchange("events", "direct");
    broker.declare_queue("q");
    broker.bind_queue("q", "events", key);
}

/// Topic exchange "world" with queues "spawns" (unit.*.spawned) and "units" (unit.#), each
/// with a consumer that counts into `received`.
std::vector<warren::subscription> units_world(warren::broker& broker, std::size_t& received) {
    broker.declare_exchange("world", "topic");
    broker.declare_queue("spawns");
    broker.bind_queue("spawns", "world", "unit.*.spawned");
    broker.declare_queue("units");
    broker.bind_queue("units", "world", "unit.#");
    std::vector<warren::subscription> subs;
    subs.push_back(broker.subscribe("spawns", [&received](warren::delivery&) { ++received; }));
    subs.push_back(broker.subscribe("units", [&received](warren::delivery&) { ++received; }));
    return subs;
}

} // namespace

TEST_CASE("allocation: a frame of 100000 messages in flight allocates nothing once warm (direct, 100-byte keys)",
          "[allocation]") {
    const std::string key = hundred_byte_key("unit", "spawned");
    REQUIRE(key.size() == 100);
    warren::broker broker;
    events_to_q(broker, key);
    std::size_t received = 0;
    auto sub = broker.subscribe("q", [&](warren::delivery&) { ++received; });
    const auto publisher = broker.make_publisher("events");
    (void)run_frame(broker, publisher, key); // warm: the pool and the queue's ring grow
    CHECK(run_frame(broker, publisher, key) == 0);
    CHECK(received == 2 * frame);
}

TEST_CASE("allocation: a frame of 100000 messages in flight allocates nothing once warm (fanout to ten)",
          "[allocation]") {
    warren::broker broker;
    std::size_t received = 0;
    const auto subs = fan_out_to_ten(broker, received);
    const auto publisher = broker.make_publisher("frame");
    const std::string key = hundred_byte_key("tick", "all");
    (void)run_frame(broker, publisher, key);
    CHECK(run_frame(broker, publisher, key) == 0);
    CHECK(received == 2 * 10 * frame);
}

// The same frames published as a key and a body, without a basic_message: the key is read
// in place and stored after the node, in a pooled block of its size class.

namespace {

/// A frame of 100-byte bodies, made before counting starts.
std::vector<std::string> make_bodies() {
    std::vector<std::string> out;
    out.reserve(frame);
    for (std::size_t i = 0; i < frame; ++i) out.emplace_back(100, static_cast<char>('a' + i % 26));
    return out;
}

/// Publishes a frame of bodies with `publish(body)`, then dispatches once; returns the
/// allocations made.
template <class Publish>
std::size_t run_body_frame(warren::broker& broker, Publish&& publish) {
    auto bodies = make_bodies();
    allocation_counter counter;
    for (auto& body : bodies) (void)publish(std::move(body));
    broker.dispatch();
    return counter.count();
}

} // namespace

TEST_CASE("allocation: a frame of 100000 keys and bodies in flight allocates nothing once warm (direct by name, "
          "100-byte keys)",
          "[allocation]") {
    const std::string key = hundred_byte_key("unit", "spawned");
    warren::broker broker;
    events_to_q(broker, key);
    std::size_t received = 0;
    auto sub = broker.subscribe("q", [&](warren::delivery& d) { received += d.routing_key() == key ? 1 : 0; });
    auto publish = [&](std::string body) { return broker.publish("events", key, std::move(body)); };
    (void)run_body_frame(broker, publish);
    CHECK(run_body_frame(broker, publish) == 0);
    CHECK(received == 2 * frame);
}

TEST_CASE("allocation: a frame of 100000 messages in flight allocates nothing once warm (topic cache hit)",
          "[allocation]") {
    const std::string key = hundred_byte_key("unit", "spawned");
    warren::broker broker;
    std::size_t received = 0;
    const auto subs = units_world(broker, received);
    const auto publisher = broker.make_publisher("world");
    SECTION("published as messages") {
        (void)run_frame(broker, publisher, key);
        CHECK(run_frame(broker, publisher, key) == 0);
    }
    SECTION("published as keys and bodies through a publisher") {
        auto publish = [&](std::string body) { return publisher.publish(key, std::move(body)); };
        (void)run_body_frame(broker, publish);
        CHECK(run_body_frame(broker, publish) == 0);
    }
    CHECK(received == 2 * 2 * frame);
}

TEST_CASE("allocation: a frame of 100000 keys and bodies in flight allocates nothing once warm (fanout to ten by "
          "name)",
          "[allocation]") {
    warren::broker broker;
    std::size_t received = 0;
    const auto subs = fan_out_to_ten(broker, received);
    const std::string key = hundred_byte_key("tick", "all");
    auto publish = [&](std::string body) { return broker.publish("frame", key, std::move(body)); };
    (void)run_body_frame(broker, publish);
    CHECK(run_body_frame(broker, publish) == 0);
    CHECK(received == 2 * 10 * frame);
}

TEST_CASE("allocation: a frame of 100000 bodies published in batches of 256 allocates nothing once warm (direct and "
          "fanout to ten, 100-byte keys)",
          "[allocation][publish_many]") {
    warren::broker broker;
    std::size_t received = 0;
    const auto subs = fan_out_to_ten(broker, received);
    const std::string key = hundred_byte_key("unit", "spawned");
    events_to_q(broker, key);
    auto sub = broker.subscribe("q", [&](warren::delivery& d) { received += d.routing_key() == key ? 1 : 0; });
    const auto direct = broker.make_publisher("events");
    auto run_batches = [&](const std::string& exchange) {
        auto bodies = make_bodies();
        const std::span<std::string> all(bodies);
        allocation_counter counter;
        for (std::size_t i = 0; i < all.size(); i += 256) {
            const auto batch = all.subspan(i, std::min<std::size_t>(256, all.size() - i));
            if (exchange == "events") (void)direct.publish_many(key, batch);
            else (void)broker.publish_many(exchange, key, batch);
        }
        broker.dispatch();
        return counter.count();
    };
    (void)run_batches("events");
    CHECK(run_batches("events") == 0);
    CHECK(received == 2 * frame);
    (void)run_batches("frame");
    CHECK(run_batches("frame") == 0);
    CHECK(received == 2 * frame + 2 * 10 * frame);
}

// Where the frames above are handed to their consumers as they arrive (each consumer has
// credit), these keep them ready in the queue, or run them inside each publish.

TEST_CASE("allocation: a frame of 100000 messages waiting ready allocates nothing once warm (a consumer at its "
          "prefetch limit, 100-byte keys)",
          "[allocation]") {
    const std::string key = hundred_byte_key("unit", "spawned");
    warren::broker broker;
    events_to_q(broker, key);
    std::size_t received = 0;
    warren::consumer_options one_at_a_time{.ack = warren::ack_mode::manual, .prefetch = 1};
    auto sub = broker.subscribe(
        "q",
        [&](warren::delivery& d) {
            ++received;
            d.ack();
        },
        one_at_a_time);
    const auto publisher = broker.make_publisher("events");
    (void)run_frame(broker, publisher, key);
    CHECK(broker.queue_stats("q").ready == 0);
    auto messages = make_messages(static_cast<int>(frame), key);
    allocation_counter counter;
    for (auto& m : messages) (void)publisher.publish(std::move(m));
    CHECK(broker.queue_stats("q").ready == frame - 1); // the first went to the consumer
    broker.dispatch();
    CHECK(counter.count() == 0);
    CHECK(received == 2 * frame);
}

TEST_CASE("allocation: 100000 synchronous deliveries held unacked allocate nothing once warm (100-byte keys)",
          "[allocation][synchronous]") {
    const std::string key = hundred_byte_key("unit", "spawned");
    warren::broker broker;
    events_to_q(broker, key);
    std::vector<warren::delivery> held;
    held.reserve(frame);
    warren::consumer_options synchronous{.ack = warren::ack_mode::manual, .synchronous = true};
    auto sub = broker.subscribe("q", [&](warren::delivery& d) { held.push_back(std::move(d)); }, synchronous);
    const auto publisher = broker.make_publisher("events");
    auto run_synchronous_frame = [&] {
        auto bodies = make_bodies();
        allocation_counter counter;
        for (auto& body : bodies) (void)publisher.publish(key, std::move(body));
        const bool all_ran = held.size() == frame; // inside the publishes, no dispatch
        held.back().ack(true);
        held.clear();
        return all_ran ? counter.count() : ~std::size_t{0};
    };
    (void)run_synchronous_frame();
    CHECK(run_synchronous_frame() == 0);
    CHECK(broker.queue_stats("q").acked == 2 * frame);
}

TEST_CASE("allocation: messages that set properties allocate nothing beyond what their own properties hold",
          "[allocation]") {
    const std::string key = hundred_byte_key("unit", "spawned");
    warren::broker broker;
    events_to_q(broker, key);
    std::size_t correlated = 0;
    auto sub = broker.subscribe("q", [&](warren::delivery& d) {
        correlated += d.properties().correlation_id && d.properties().headers.contains("tenant") ? 1 : 0;
    });
    const auto publisher = broker.make_publisher("events");
    // The messages, their headers and correlation ids made before counting starts.
    auto frame_with_properties = [&] {
        auto messages = make_messages(static_cast<int>(frame), key);
        for (auto& m : messages) {
            m.properties.correlation_id = "a-correlation-id-longer-than-small-string-storage";
            m.properties.headers.set("tenant", "eu");
        }
        return run(broker, publisher, messages, static_cast<int>(frame) + 1);
    };
    (void)frame_with_properties(); // warm: the properties' pool too
    CHECK(frame_with_properties() == 0);
    CHECK(correlated == 2 * frame);
}

TEST_CASE("allocation: shrink() gives the node pool back and the next frame allocates its nodes again", "[allocation]") {
    warren::broker broker;
    broker.declare_queue("q");
    auto sub = broker.subscribe("q", [](warren::delivery&) {});
    const auto publisher = broker.make_publisher("");
    (void)run_frame(broker, publisher, "q");
    REQUIRE(run_frame(broker, publisher, "q") == 0);
    REQUIRE(node_type::pooled_blocks() >= frame);
    const std::size_t held = warren_test::live_heap_bytes();
    broker.shrink();
    CHECK(node_type::pooled_blocks() == 0);
    CHECK(held - warren_test::live_heap_bytes() >= frame * sizeof(node_type)); // back to the allocator
    CHECK(run_frame(broker, publisher, "q") >= frame); // one node per message, again
}

TEST_CASE("allocation: after a burst a quieter dispatch gives back the nodes beyond twice its peak plus 4096",
          "[allocation]") {
    warren::broker broker;
    broker.declare_queue("q");
    auto sub = broker.subscribe("q", [](warren::delivery&) {});
    const auto publisher = broker.make_publisher("");
    broker.shrink(); // what earlier tests on this thread left
    (void)run_frame(broker, publisher, "q"); // the burst: its dispatch keeps every node
    REQUIRE(node_type::pooled_blocks() == frame);
    // Steady small frames: the first one's dispatch applies the idle rule to a period whose
    // peak was 100 nodes; later ones keep what they need, allocating nothing.
    auto small_frame = [&] {
        auto messages = make_messages(100, "q");
        return run(broker, publisher, messages, 101);
    };
    (void)small_frame();
    const std::size_t bound = 2 * 100 + warren::detail::block_pool<sizeof(node_type)>::slack;
    CHECK(node_type::pooled_blocks() == std::min(frame, bound));
    for (int i = 0; i < 10; ++i) CHECK(small_frame() == 0);
}
