// basic_queue_handle across threads: a consumer thread that waits on its handle, and
// consumer threads that take in batches while others publish.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using namespace std::chrono_literals;
using warren_test::msg;

TEST_CASE("queue handle: try_get_for waits for a message from another thread", "[queue_handle][multithread]") {
    warren::concurrent_broker b;
    (void)b.declare_queue("q");
    const auto q = b.make_queue_handle("q");
    CHECK_FALSE(q.try_get_for(10ms));
    std::thread producer([&] {
        std::this_thread::sleep_for(20ms);
        (void)b.publish("", msg("q", "hello"));
    });
    auto got = q.try_get_for(5s);
    producer.join();
    REQUIRE(got);
    CHECK(got->body() == "hello");
}

TEST_CASE("queue handle: batch takes on two threads while two threads publish lose and duplicate nothing",
          "[queue_handle][multithread][batch]") {
    constexpr std::size_t per_producer = 20000;
    constexpr std::size_t total = 2 * per_producer;
    warren::concurrent_broker b;
    (void)b.declare_queue("q");
    const auto q = b.make_queue_handle("q");
    std::atomic<std::size_t> taken{0};
    std::vector<std::vector<std::size_t>> seen(2);
    {
        std::vector<std::thread> threads;
        for (std::size_t p = 0; p < 2; ++p) {
            threads.emplace_back([&, p] {
                for (std::size_t i = 0; i < per_producer; ++i) (void)b.publish("", msg("q", std::to_string(p * per_producer + i)));
            });
        }
        for (std::size_t c = 0; c < 2; ++c) {
            threads.emplace_back([&, c] {
                std::vector<warren::concurrent_broker::delivery> batch;
                const auto give_up = std::chrono::steady_clock::now() + 20s;
                while (taken.load() < total && std::chrono::steady_clock::now() < give_up) {
                    batch.clear();
                    const std::size_t n = q.try_get_many(batch, 64);
                    for (const auto& d : batch) seen[c].push_back(std::stoul(d.body()));
                    taken += n;
                    if (n == 0) std::this_thread::yield();
                }
            });
        }
        for (auto& t : threads) t.join();
    }
    std::vector<int> times(total, 0);
    for (const auto& s : seen) {
        for (std::size_t id : s) ++times[id];
        // Each consumer sees each producer's messages in publishing order.
        std::size_t last[2] = {0, 0};
        bool first[2] = {true, true};
        bool in_order = true;
        for (std::size_t id : s) {
            const std::size_t p = id / per_producer;
            if (!first[p] && id < last[p]) in_order = false;
            first[p] = false;
            last[p] = id;
        }
        CHECK(in_order);
    }
    CHECK(std::count(times.begin(), times.end(), 1) == static_cast<std::ptrdiff_t>(total));
    CHECK(b.queue_stats("q").delivered == total);
}
