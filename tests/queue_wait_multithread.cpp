// try_get_for, the blocking basic.get of concurrent_broker: what it does with the messages
// that expire while it waits, how long it waits for any timeout a user can write, and that
// the broker may be destroyed while it waits.

#include <warren/broker.hpp>
#include <warren/topology.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <ratio>
#include <string>
#include <thread>
#include <utility>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/threads.hpp"

using warren_test::joining_thread;
using warren_test::to_queue;
using warren_test::wait_until;
using namespace std::chrono_literals;

namespace {

using broker = warren::concurrent_broker;
using steady = std::chrono::steady_clock;

/// "q" with a 50 ms TTL dead-lettering through fanout "dlx" into "dead".
void declare_expiring_queue(broker& b) {
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    warren::queue_options options;
    options.arguments = {{"x-message-ttl", 50}, {"x-dead-letter-exchange", "dlx"}};
    b.declare_queue("q", options);
}

/// The ready messages of `queue` as its counters tell them, without reading the queue
/// (message_count would expire its head, which is what the tests watch try_get_for do).
std::size_t ready_in(broker& b, const std::string& queue) {
    for (const auto& q : b.snapshot().queues) {
        if (q.name == queue) return q.counters.ready;
    }
    return 0;
}

} // namespace

TEST_CASE("queue wait: try_get_for routes the dead letters of expired heads before it waits",
          "[multithread][try_get_for]") {
    broker b;
    declare_expiring_queue(b);
    REQUIRE(b.publish("", to_queue<broker>("q", "short-lived")) == 1);
    std::this_thread::sleep_for(80ms); // expired, not yet removed: nothing has read "q"
    REQUIRE(ready_in(b, "dead") == 0);

    std::atomic<bool> returned{false};
    std::optional<broker::delivery> got;
    joining_thread waiter([&] {
        got = b.try_get_for("q", 5s);
        returned = true;
    });
    // The waiter removes the expired head as it starts; its dead letter must reach "dead"
    // then, not when the wait ends five seconds later.
    CHECK(wait_until([&] { return ready_in(b, "dead") == 1; }, 2s));
    CHECK_FALSE(returned.load());

    REQUIRE(b.publish("", to_queue<broker>("q", "wakes it")) == 1);
    waiter.join();
    REQUIRE(got);
    CHECK(got->body() == "wakes it");
    const auto dead = b.try_get("dead");
    REQUIRE(dead);
    CHECK(dead->body() == "short-lived");
}

TEST_CASE("queue wait: destroying the broker while try_get_for waits after dropping an expired head is safe",
          "[multithread][try_get_for]") {
    auto b = std::make_unique<broker>();
    declare_expiring_queue(*b);
    REQUIRE(b->publish("", to_queue<broker>("q", "short-lived")) == 1);
    std::this_thread::sleep_for(80ms);

    // The wait needs its own reference to the queue, which try_get_for holds; the broker
    // itself is destroyed under it, as when an owner thread tears down while workers wait.
    std::atomic<bool> waiting{false};
    std::optional<broker::delivery> got;
    std::atomic<bool> returned{false};
    broker* raw = b.get();
    joining_thread waiter([&] {
        waiting = true;
        got = raw->try_get_for("q", 10s);
        returned = true;
    });
    REQUIRE(wait_until([&] { return waiting.load(); }));
    std::this_thread::sleep_for(200ms); // it dropped the expired head and waits
    const auto start = steady::now();
    b.reset();
    waiter.join();
    CHECK(returned.load());
    CHECK_FALSE(got);
    CHECK(steady::now() - start < 5s); // woken by the destruction, not by its timeout
}

TEST_CASE("queue wait: try_get_for waits as long as asked, however long that is", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");

    auto waits_for_a_message = [&](auto timeout) {
        std::optional<broker::delivery> got;
        joining_thread waiter([&] { got = b.try_get_for("q", timeout); });
        std::this_thread::sleep_for(100ms);
        REQUIRE(b.publish("", to_queue<broker>("q", "late")) == 1);
        waiter.join();
        return got.has_value();
    };
    // Each of these, added to now(), overflows a time point; the deadline saturates.
    CHECK(waits_for_a_message(std::chrono::hours::max()));
    CHECK(waits_for_a_message(std::chrono::nanoseconds::max()));
    CHECK(waits_for_a_message(std::chrono::duration<std::int64_t, std::ratio<86400 * 365>>::max()));
    CHECK(waits_for_a_message(std::chrono::duration<double>(1e300)));
    CHECK(waits_for_a_message(std::chrono::duration<double>(std::numeric_limits<double>::infinity())));
}

TEST_CASE("queue wait: try_get_for with a zero, negative or NaN timeout does not wait", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    const auto start = steady::now();
    CHECK_FALSE(b.try_get_for("q", 0ms));
    CHECK_FALSE(b.try_get_for("q", -5s));
    CHECK_FALSE(b.try_get_for("q", std::chrono::hours::min()));
    CHECK_FALSE(b.try_get_for("q", std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())));
    CHECK_FALSE(b.try_get_for("q", std::chrono::duration<double>(-std::numeric_limits<double>::infinity())));
    CHECK(steady::now() - start < 2s);
    REQUIRE(b.publish("", to_queue<broker>("q", "ready")) == 1);
    CHECK(b.try_get_for("q", -1s)); // a ready message is still taken
}
