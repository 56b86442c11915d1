// dispatch_until / dispatch_for: a frame's drain is bounded by wall time on a monotonic
// clock (std::chrono::steady_clock, or the clock of the caller's deadline), independent of
// the broker's clock, which ages messages and may be simulation time.

#include <warren/broker.hpp>
#include <warren/clock.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ratio>
#include <string>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::send;
using warren_test::send_numbered;
using warren_test::strings;
using warren_test::to_queue;
using namespace std::chrono_literals;

namespace {

/// A monotonic chrono clock that moves only when a test moves it, so a budget measured on
/// it is deterministic.
struct test_clock {
    using rep = std::int64_t;
    using period = std::nano;
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::time_point<test_clock>;
    static constexpr bool is_steady = true;
    inline static duration elapsed{};
    static time_point now() noexcept { return time_point(elapsed); }
};

/// Spins for `d` of real time: a callback with work to do.
void busy_for(std::chrono::nanoseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
    }
}

} // namespace

TEMPLATE_TEST_CASE("dispatch budget: dispatch_for is wall time, so a simulated clock that stands still cannot stretch it",
                   "[dispatch][budget]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock simulation; // never advanced: no simulated time passes in this frame
    TestType b(simulation);
    b.declare_queue("q");
    constexpr int total = 20'000;
    send_numbered(b, "q", "m", total);
    std::size_t ran = 0;
    auto sub = b.subscribe("q", [&](typename TestType::delivery&) {
        ++ran;
        busy_for(20us);
    });
    const auto start = std::chrono::steady_clock::now();
    const std::size_t delivered = b.dispatch_for(2ms);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(delivered == ran);
    // 20,000 callbacks of 20 us are 400 ms: a 2 ms budget stops it after about a hundred.
    CHECK(delivered < total / 10);
    CHECK(took < 200ms); // the budget plus one callback, with room for a preempted thread
    CHECK(b.message_count("q") == total - delivered);
}

TEMPLATE_TEST_CASE("dispatch budget: dispatch_until reads its deadline's clock before each delivery",
                   "[dispatch][budget]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("a");
    b.declare_queue("b");
    strings seen;
    test_clock::elapsed = {};
    auto work = [&](typename TestType::delivery& d) { // each callback takes 3 ms
        seen.push_back(d.body());
        test_clock::elapsed += 3ms;
    };
    auto sa = b.subscribe("a", work);
    auto sb = b.subscribe("b", work);
    send(b, "a", {"a1", "a2", "a3"});
    send(b, "b", {"b1", "b2", "b3"});

    SECTION("a deadline already past delivers nothing") {
        CHECK(b.dispatch_until(test_clock::now()) == 0);
        CHECK(seen.empty());
    }
    SECTION("the deadline is overrun by at most one callback") {
        // Reads at 0, 3, 6 and 9 ms are before 10 ms; the read at 12 ms stops it.
        CHECK(b.dispatch_until(test_clock::now() + 10ms) == 4);
        CHECK(seen == strings{"a1", "b1", "a2", "b2"});
        // The next frame goes on where this one stopped.
        CHECK(b.dispatch_until(test_clock::now() + 4ms) == 2);
        CHECK(seen == strings{"a1", "b1", "a2", "b2", "a3", "b3"});
    }
    SECTION("the message budget still applies") {
        CHECK(b.dispatch_until(test_clock::now() + 1h, 3) == 3);
        CHECK(seen == strings{"a1", "b1", "a2"});
    }
}

TEMPLATE_TEST_CASE("dispatch budget: TTLs follow the broker's clock, whatever clock bounds the frame",
                   "[dispatch][budget][ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock simulation;
    TestType b(simulation);
    warren::queue_options options;
    options.arguments = {{"x-message-ttl", 100}};
    b.declare_queue("q", options);
    strings seen;
    const auto subscribe = [&] {
        return b.subscribe("q", [&](typename TestType::delivery& d) { seen.push_back(d.body()); });
    };
    test_clock::elapsed = {};

    // Each message is published while the queue has no consumer, so that it waits ready
    // and ages (one handed to a consumer as it arrives never expires).
    send(b, "q", {"old"});
    test_clock::elapsed += 1h; // wall time passing ages nothing
    {
        auto sub = subscribe();
        CHECK(b.dispatch_until(test_clock::now() + 1ms) == 1);
    }
    CHECK(seen == strings{"old"});

    send(b, "q", {"stale"});
    simulation.advance(100ms); // simulated time passing does
    auto sub = subscribe();
    CHECK(b.dispatch_for(1h) == 0);
    CHECK(b.queue_stats("q").dropped.expired == 1);
}

TEMPLATE_TEST_CASE("dispatch budget: a budget too large for the clock saturates, a negative one delivers nothing",
                   "[dispatch][budget]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    std::size_t ran = 0;
    auto sub = b.subscribe("q", [&](typename TestType::delivery&) { ++ran; });

    send(b, "q", {"a", "b"});
    CHECK(b.dispatch_for(std::chrono::hours::max()) == 2);
    send(b, "q", {"c"});
    CHECK(b.dispatch_for(std::chrono::nanoseconds::max()) == 1);
    send(b, "q", {"d"});
    CHECK(b.dispatch_for(std::chrono::duration<double>(1e300)) == 1);
    send(b, "q", {"e"});
    CHECK(b.dispatch_until(std::chrono::steady_clock::time_point::max()) == 1);

    send(b, "q", {"f"});
    CHECK(b.dispatch_for(-1s) == 0);
    CHECK(b.dispatch_for(std::chrono::hours::min()) == 0);
    CHECK(b.dispatch_for(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())) == 0);
    CHECK(b.dispatch_until(std::chrono::steady_clock::time_point::min()) == 0);
    CHECK(ran == 5);
    CHECK(b.dispatch() == 1);
}
