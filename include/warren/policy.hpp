#pragma once
/// @file policy.hpp
/// Threading policies: single_threaded (no locks, no atomics) and multi_threaded.

#include <atomic>
#include <concepts>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "detail/core/hybrid_mutex.hpp"

namespace warren {
namespace detail {

/// A mutex that does nothing, for code that one thread owns.
struct null_mutex {
    constexpr void lock() noexcept {}
    constexpr void unlock() noexcept {}
    constexpr bool try_lock() noexcept { return true; }
    constexpr void lock_shared() noexcept {}
    constexpr void unlock_shared() noexcept {}
};

/// A counter with std::atomic's interface and plain arithmetic behind it.
template <class T>
class plain_atomic {
public:
    constexpr plain_atomic() noexcept = default;
    constexpr plain_atomic(T value) noexcept : value_(value) {}
    constexpr T load(std::memory_order = std::memory_order_seq_cst) const noexcept { return value_; }
    constexpr void store(T value, std::memory_order = std::memory_order_seq_cst) noexcept { value_ = value; }
    constexpr T fetch_add(T n, std::memory_order = std::memory_order_seq_cst) noexcept {
        T old = value_;
        value_ = static_cast<T>(value_ + n);
        return old;
    }
    constexpr T fetch_sub(T n, std::memory_order = std::memory_order_seq_cst) noexcept {
        T old = value_;
        value_ = static_cast<T>(value_ - n);
        return old;
    }

private:
    T value_{};
};

} // namespace detail

/// One thread owns the broker: no locks, no atomics. Consumer callbacks run inside
/// `dispatch()`, where and when the owner's loop calls it.
struct single_threaded {
    /// Whether the broker may be used from several threads at once.
    static constexpr bool thread_safe = false;
    /// Guards a queue's state.
    using mutex = detail::null_mutex;
    /// Guards the topology: shared for publish, exclusive for declare, bind and delete.
    using shared_mutex = detail::null_mutex;
    /// Reference counts and counters.
    template <class T>
    using atomic = detail::plain_atomic<T>;
};

/// Publish, consume, declare and dispatch from any thread. Publishing takes the topology
/// lock shared, so routing never waits for other publishers; topology changes take it
/// exclusively. Each queue has its own mutex, and callbacks run with no lock held.
struct multi_threaded {
    static constexpr bool thread_safe = true;
    /// Guards a queue's state: spins briefly, then sleeps (see detail::hybrid_mutex).
    using mutex = detail::hybrid_mutex;
    using shared_mutex = std::shared_mutex;
    template <class T>
    using atomic = std::atomic<T>;
};

/// What a threading policy provides.
template <class P>
concept threading_policy = requires {
    { P::thread_safe } -> std::convertible_to<bool>;
    typename P::mutex;
    typename P::shared_mutex;
    typename P::template atomic<unsigned>;
};

} // namespace warren
