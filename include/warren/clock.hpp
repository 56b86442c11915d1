#pragma once
/// @file clock.hpp
/// Where a broker reads time: the steady clock, or a manual clock for simulations and tests.

#include <atomic>
#include <chrono>
#include <cstdint>

#include "detail/core/saturate.hpp"

namespace warren {

/// The time source of a broker. Message TTLs, per-message expiration and queue expiry
/// (x-expires) follow now(); the `time` field of an x-death header is unix_seconds().
///
/// Its time points are of their own type, not std::chrono::steady_clock's: a broker's time
/// may be simulation time (manual_clock), which no deadline on a real clock can be compared
/// with. (dispatch_until takes a real clock's deadline, and refuses these at compile time.)
///
/// Thread safety: implementations must be safe to read from any thread the broker is used on.
class clock {
public:
    using duration = std::chrono::nanoseconds;
    using time_point = std::chrono::time_point<clock, duration>;

    virtual ~clock() = default;
    /// Monotonic time: what TTLs are measured against.
    [[nodiscard]] virtual time_point now() const noexcept = 0;
    /// Wall-clock seconds since the Unix epoch, as RabbitMQ writes them into x-death.
    [[nodiscard]] virtual std::int64_t unix_seconds() const noexcept = 0;
};

/// The default: std::chrono::steady_clock for TTLs, std::chrono::system_clock for x-death.
class steady_clock final : public clock {
public:
    [[nodiscard]] time_point now() const noexcept override {
        return time_point(std::chrono::duration_cast<duration>(std::chrono::steady_clock::now().time_since_epoch()));
    }
    [[nodiscard]] std::int64_t unix_seconds() const noexcept override {
        return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    /// The instance brokers use when given no clock.
    static const steady_clock& instance() noexcept {
        static const steady_clock shared;
        return shared;
    }
};

/// Time that moves only when told to: TTLs then follow simulation time, and tests of
/// expiry are deterministic.
/// @code
/// warren::manual_clock time;
/// warren::broker broker(time);
/// ...
/// time.advance(std::chrono::milliseconds(16)); // one frame
/// broker.dispatch();                            // expires what is due, then delivers
/// @endcode
/// Thread safety: advance() and the readers are thread-safe (one atomic).
class manual_clock final : public clock {
public:
    /// Starts at time zero; unix_seconds() starts at `unix_start`.
    explicit manual_clock(std::int64_t unix_start = 0) noexcept : unix_start_(unix_start) {}

    /// Moves time forward by `step`, any duration (a negative or NaN step is ignored: time
    /// never goes back). Time stops at the last time point rather than wrapping around.
    template <class Rep, class Period>
    void advance(std::chrono::duration<Rep, Period> step) noexcept {
        const duration::rep by = detail::saturating_duration_cast<duration>(step).count();
        if (by <= 0) return;
        duration::rep now = elapsed_.load(std::memory_order_relaxed);
        while (!elapsed_.compare_exchange_weak(now, detail::saturating_add(now, by), std::memory_order_relaxed)) {
        }
    }
    /// Time elapsed since the clock was made.
    [[nodiscard]] duration elapsed() const noexcept { return duration(elapsed_.load(std::memory_order_relaxed)); }

    [[nodiscard]] time_point now() const noexcept override { return time_point(elapsed()); }
    /// unix_start plus the whole seconds elapsed, clamped to the range of std::int64_t.
    [[nodiscard]] std::int64_t unix_seconds() const noexcept override {
        return detail::saturating_add(unix_start_, std::chrono::duration_cast<std::chrono::seconds>(elapsed()).count());
    }

private:
    std::int64_t unix_start_;
    std::atomic<duration::rep> elapsed_{0};
};

} // namespace warren
