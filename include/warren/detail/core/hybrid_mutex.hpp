#pragma once
/// @file detail/core/hybrid_mutex.hpp
/// hybrid_mutex: a mutex for short critical sections that spins briefly before it sleeps.

#include <atomic>
#include <cstdint>

namespace warren::detail {

/// A mutex for critical sections of a few dozen nanoseconds (a queue's push, get or ack),
/// where a producer and a consumer on two cores meet on every message. std::mutex (glibc)
/// goes to the kernel as soon as it finds the lock taken: a futex wait for the one and a
/// futex wake for the other, microseconds for a section a thousand times shorter. This
/// one spins for a while first (the holder is about to let go), then sleeps on the atomic
/// (C++20 atomic wait: a futex on Linux) and is woken by unlock: Drepper's three-state
/// mutex ("Futexes are tricky") with a spin in front. Meets the Lockable requirements
/// (wait on it with std::condition_variable_any). Not recursive; no fairness.
/// Thread safety: every member from any thread.
class hybrid_mutex {
public:
    /// Attempts before a waiting thread sleeps: enough to cover a queue operation.
    static constexpr int spins = 128;

    hybrid_mutex() noexcept = default;
    hybrid_mutex(const hybrid_mutex&) = delete;
    hybrid_mutex& operator=(const hybrid_mutex&) = delete;

    void lock() noexcept {
        std::uint32_t expected = unlocked;
        if (state_.compare_exchange_strong(expected, locked, std::memory_order_acquire, std::memory_order_relaxed)) {
            return;
        }
        lock_contended();
    }
    [[nodiscard]] bool try_lock() noexcept {
        std::uint32_t expected = unlocked;
        return state_.compare_exchange_strong(expected, locked, std::memory_order_acquire, std::memory_order_relaxed);
    }
    void unlock() noexcept {
        if (state_.exchange(unlocked, std::memory_order_release) == sleepers) state_.notify_one();
    }

private:
    static constexpr std::uint32_t unlocked = 0;
    static constexpr std::uint32_t locked = 1;   // no thread sleeps on it
    static constexpr std::uint32_t sleepers = 2; // a thread may sleep on it: unlock wakes one

    void lock_contended() noexcept {
        for (int i = 0; i < spins; ++i) {
            pause();
            std::uint32_t expected = unlocked;
            if (state_.load(std::memory_order_relaxed) == unlocked &&
                state_.compare_exchange_weak(expected, locked, std::memory_order_acquire, std::memory_order_relaxed)) {
                return;
            }
        }
        // Marked as slept on from here: the thread that takes it this way cannot tell
        // whether others still sleep, so its unlock wakes one in any case.
        while (state_.exchange(sleepers, std::memory_order_acquire) != unlocked) {
            state_.wait(sleepers, std::memory_order_relaxed);
        }
    }
    static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }

    std::atomic<std::uint32_t> state_{unlocked};
};

} // namespace warren::detail
