// Helpers for tests that run a broker on several threads: a thread that joins itself, a
// bounded wait (so a broken test fails instead of hanging), and dispatcher threads.
//
// Catch2's assertions are not thread-safe: worker threads only record what they saw, and
// the test thread checks it after joining them.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace warren_test {

/// A std::thread that joins on destruction, so a failing REQUIRE in the test thread cannot
/// leave a joinable thread behind (which would terminate the process).
struct joining_thread {
    std::thread thread;
    template <class F>
    explicit joining_thread(F&& f) : thread(std::forward<F>(f)) {}
    joining_thread(joining_thread&&) noexcept = default;
    joining_thread& operator=(joining_thread&&) noexcept = default;
    ~joining_thread() { join(); }
    void join() {
        if (thread.joinable()) thread.join();
    }
};

/// Waits until `done()` holds or `limit` passes; returns `done()`. Tests REQUIRE it, so
/// a lost wake-up or a lost message fails the test instead of hanging it.
template <class Predicate>
[[nodiscard]] bool wait_until(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) return done();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return true;
}

/// Ends the process with a message if it is still alive after `limit`: a test whose code
/// may deadlock (a lock taken twice on one thread) makes one on its stack, so a deadlock
/// fails the test within seconds instead of hanging it until ctest's timeout.
class watchdog {
public:
    watchdog(std::string what, std::chrono::milliseconds limit = std::chrono::seconds(10))
        : thread_([this, what = std::move(what), limit] {
              std::unique_lock lock(mutex_);
              if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
                  std::fprintf(stderr, "watchdog: %s did not finish within %lld ms (a deadlock?)\n", what.c_str(),
                               static_cast<long long>(limit.count()));
                  std::abort();
              }
          }) {}
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;
    ~watchdog() {
        {
            std::lock_guard lock(mutex_);
            done_ = true;
        }
        done_cv_.notify_all();
        thread_.join();
    }

private:
    std::mutex mutex_;
    std::condition_variable done_cv_;
    bool done_ = false;
    std::thread thread_; // last: it starts once the members above exist
};

/// `count` threads calling broker.dispatch(budget) until stop() (or destruction), backing
/// off briefly when there is nothing to deliver: dispatch() does not block.
template <class Broker>
class dispatchers {
public:
    dispatchers(Broker& broker, std::size_t count, std::size_t budget = 16) {
        for (std::size_t i = 0; i < count; ++i) {
            threads_.emplace_back([this, &broker, budget] {
                while (!stop_.load()) {
                    if (broker.dispatch(budget) == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
                }
            });
        }
    }
    dispatchers(const dispatchers&) = delete;
    dispatchers& operator=(const dispatchers&) = delete;
    ~dispatchers() { stop(); }

    /// Lets every running dispatch() call return, then joins the threads.
    void stop() {
        stop_ = true;
        for (auto& t : threads_) t.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::vector<joining_thread> threads_;
};

} // namespace warren_test
