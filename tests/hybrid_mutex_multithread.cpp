// detail::hybrid_mutex, the queues' lock under multi_threaded: mutual exclusion, a
// sleeping waiter woken by unlock, try_lock, and waits through condition_variable_any.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include <warren/policy.hpp>

#include "support/catch.hpp"
#include "support/scale.hpp"
#include "support/threads.hpp"

using warren::detail::hybrid_mutex;
using warren_test::joining_thread;

TEST_CASE("hybrid mutex (threads): four threads incrementing under it lose no increment",
          "[multithread][hybrid_mutex]") {
    hybrid_mutex m;
    std::size_t counter = 0; // guarded by m: a lost increment or a TSan report fails the test
    const std::size_t per_thread = warren_test::at_scale(std::size_t{200000});
    {
        std::vector<joining_thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&] {
                for (std::size_t i = 0; i < per_thread; ++i) {
                    std::lock_guard lock(m);
                    ++counter;
                }
            });
        }
    }
    CHECK(counter == 4 * per_thread);
}

TEST_CASE("hybrid mutex (threads): a thread that sleeps on a held lock gets it once it is released",
          "[multithread][hybrid_mutex]") {
    hybrid_mutex m;
    std::atomic<bool> waiter_has_it{false};
    m.lock();
    joining_thread waiter([&] {
        std::lock_guard lock(m); // spins, then sleeps: the holder keeps it far longer than the spin
        waiter_has_it = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK_FALSE(waiter_has_it.load());
    m.unlock();
    REQUIRE(warren_test::wait_until([&] { return waiter_has_it.load(); }));
}

TEST_CASE("hybrid mutex (threads): try_lock fails while another thread holds it and succeeds after",
          "[multithread][hybrid_mutex]") {
    hybrid_mutex m;
    std::atomic<int> step{0};
    joining_thread holder([&] {
        std::lock_guard lock(m);
        step = 1;
        while (step.load() != 2) std::this_thread::yield();
    });
    REQUIRE(warren_test::wait_until([&] { return step.load() == 1; }));
    CHECK_FALSE(m.try_lock());
    step = 2;
    holder.join();
    REQUIRE(m.try_lock());
    m.unlock();
}

TEST_CASE("hybrid mutex (threads): condition_variable_any waits on it and wakes on notify",
          "[multithread][hybrid_mutex]") {
    hybrid_mutex m;
    std::condition_variable_any ready;
    bool produced = false; // guarded by m
    bool seen = false;
    joining_thread consumer([&] {
        std::unique_lock lock(m);
        seen = ready.wait_for(lock, std::chrono::seconds(20), [&] { return produced; });
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    {
        std::lock_guard lock(m);
        produced = true;
    }
    ready.notify_one();
    consumer.join();
    CHECK(seen);
}
