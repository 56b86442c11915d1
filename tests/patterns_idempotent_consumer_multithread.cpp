// idempotent_consumer on concurrent_broker with two dispatcher threads: two consumers of one
// queue sharing a concurrent_deduplicator, copies of one message_id in flight at once, and
// each id handled exactly once (run under ThreadSanitizer).

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <warren/patterns/idempotent_consumer.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;

namespace {

using consumer = warren::idempotent_consumer<warren::concurrent_broker>;
using delivery = warren::concurrent_broker::delivery;

std::size_t send(warren::concurrent_broker& b, std::size_t id) {
    warren::message m{.routing_key = "q", .body = std::to_string(id)};
    m.properties.message_id = "m-" + std::to_string(id);
    return b.publish("", std::move(m));
}

} // namespace

TEST_CASE("idempotent_consumer (threads): a copy of an id that is being handled is requeued, then acked unhandled",
          "[multithread][patterns][idempotent_consumer]") {
    warren_test::watchdog guard("in-progress duplicate");
    warren::concurrent_broker b;
    b.declare_queue("q");
    consumer::deduplicator_type seen;
    std::atomic<int> runs{0};
    std::atomic<bool> timed_out{false};
    std::array<std::atomic<consumer*>, 2> both{};
    auto requeued = [&] {
        std::size_t n = 0;
        for (const auto& c : both) n += c.load() == nullptr ? 0 : c.load()->requeued_in_progress();
        return n;
    };
    // The handler that claims the id first holds its claim until the other consumer has
    // met the other copy in progress (and given it back to the queue).
    auto handle = [&](const delivery&) {
        ++runs;
        if (!warren_test::wait_until([&] { return requeued() > 0; }, 5s)) timed_out = true;
    };
    consumer a(b, "q", seen, handle, {.prefetch = 1});
    consumer c(b, "q", seen, handle, {.prefetch = 1});
    both[0] = &a;
    both[1] = &c;
    // One copy reaches each consumer (prefetch 1); whichever runs first claims the id.
    REQUIRE(send(b, 1) == 1);
    REQUIRE(send(b, 1) == 1);
    {
        warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
        REQUIRE(warren_test::wait_until([&] { return b.queue_stats("q").acked == 2; }));
    }
    CHECK_FALSE(timed_out.load());
    CHECK(runs.load() == 1);
    CHECK(a.handled() + c.handled() == 1);
    CHECK(a.duplicates() + c.duplicates() == 1);
    CHECK(a.requeued_in_progress() + c.requeued_in_progress() >= 1);
}

TEST_CASE("idempotent_consumer (threads): copies of many ids in flight at once are each handled exactly once",
          "[multithread][patterns][idempotent_consumer]") {
    warren_test::watchdog guard("many duplicates", 30s);
    constexpr std::size_t ids = 200;
    constexpr std::size_t copies = 3;
    warren::concurrent_broker b;
    b.declare_queue("q");
    consumer::deduplicator_type seen;
    std::array<std::atomic<int>, ids> runs{};
    auto handle = [&](const delivery& d) {
        runs[std::stoul(d.body())].fetch_add(1);
        std::this_thread::sleep_for(20us); // long enough for the other copy to arrive meanwhile
    };
    const std::uint16_t prefetch = GENERATE(std::uint16_t{1}, std::uint16_t{0});
    CAPTURE(prefetch);
    consumer a(b, "q", seen, handle, {.prefetch = prefetch});
    consumer c(b, "q", seen, handle, {.prefetch = prefetch});
    {
        warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
        // Two publishers, each sending every id, so copies race each other.
        {
            warren_test::joining_thread p1([&] {
                for (std::size_t i = 0; i < ids; ++i) (void)send(b, i);
            });
            warren_test::joining_thread p2([&] {
                for (std::size_t i = 0; i < ids; ++i) {
                    (void)send(b, i);
                    (void)send(b, i);
                }
            });
        }
        REQUIRE(warren_test::wait_until([&] { return b.queue_stats("q").acked == ids * copies; }));
    }
    std::size_t wrong = 0;
    for (const auto& r : runs) wrong += r.load() == 1 ? 0 : 1;
    CHECK(wrong == 0);
    CHECK(a.handled() + c.handled() == ids);
    CHECK(a.duplicates() + c.duplicates() == ids * (copies - 1));
    CHECK(seen.size() == ids);
    const auto stats = b.queue_stats("q");
    CHECK(stats.unacked == 0);
    CHECK(stats.ready == 0);
}

TEST_CASE("idempotent_consumer (threads): a handler that fails once per id still handles each id exactly once",
          "[multithread][patterns][idempotent_consumer]") {
    warren_test::watchdog guard("failing handlers", 30s);
    constexpr std::size_t ids = 100;
    warren::concurrent_broker b;
    b.set_error_handler([](const warren::consumer_error&) {});
    b.declare_queue("q");
    consumer::deduplicator_type seen;
    std::array<std::atomic<int>, ids> attempts{};
    std::array<std::atomic<int>, ids> done{};
    auto handle = [&](const delivery& d) {
        const auto i = std::stoul(d.body());
        if (attempts[i].fetch_add(1) == 0) throw std::runtime_error("first attempt fails");
        done[i].fetch_add(1);
    };
    consumer a(b, "q", seen, handle, {.prefetch = 1});
    consumer c(b, "q", seen, handle, {.prefetch = 1});
    {
        warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
        for (std::size_t i = 0; i < ids; ++i) {
            (void)send(b, i);
            (void)send(b, i);
        }
        REQUIRE(warren_test::wait_until([&] { return b.queue_stats("q").acked == 2 * ids; }));
    }
    std::size_t wrong = 0;
    for (const auto& d : done) wrong += d.load() == 1 ? 0 : 1;
    CHECK(wrong == 0);
    CHECK(a.failures() + c.failures() == ids);
    CHECK(a.handled() + c.handled() == ids);
    CHECK(a.duplicates() + c.duplicates() == ids);
}
