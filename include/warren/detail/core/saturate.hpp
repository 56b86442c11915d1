#pragma once
/// @file detail/core/saturate.hpp
/// Arithmetic that stops at the ends of its type instead of overflowing: counters read from
/// headers a client wrote, and time points computed from durations a user passed.

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>

namespace warren::detail {

/// a + b, clamped to the range of T (a signed integer).
template <class T>
[[nodiscard]] constexpr T saturating_add(T a, T b) noexcept {
    static_assert(std::is_integral_v<T> && std::is_signed_v<T>);
    if (b > 0 && a > std::numeric_limits<T>::max() - b) return std::numeric_limits<T>::max();
    if (b < 0 && a < std::numeric_limits<T>::min() - b) return std::numeric_limits<T>::min();
    return static_cast<T>(a + b);
}

/// a - b, clamped to the range of T (a signed integer).
template <class T>
[[nodiscard]] constexpr T saturating_sub(T a, T b) noexcept {
    static_assert(std::is_integral_v<T> && std::is_signed_v<T>);
    if (b < 0 && a > std::numeric_limits<T>::max() + b) return std::numeric_limits<T>::max();
    if (b > 0 && a < std::numeric_limits<T>::min() + b) return std::numeric_limits<T>::min();
    return static_cast<T>(a - b);
}

/// `d` as the integral duration `To`, rounded toward zero and clamped to the range of To;
/// NaN becomes zero. std::chrono::duration_cast overflows instead (hours::max() in
/// nanoseconds), which is undefined behaviour.
template <class To, class Rep, class Period>
[[nodiscard]] constexpr To saturating_duration_cast(std::chrono::duration<Rep, Period> d) noexcept {
    using to_rep = typename To::rep;
    static_assert(std::is_integral_v<to_rep>, "the target of saturating_duration_cast is an integral duration");
    // The range check in long double, which holds any duration's value in any unit.
    const long double value = std::chrono::duration_cast<std::chrono::duration<long double, typename To::period>>(d).count();
    if (!(value == value)) return To::zero(); // NaN
    constexpr auto top = static_cast<long double>(std::numeric_limits<to_rep>::max());
    constexpr auto bottom = static_cast<long double>(std::numeric_limits<to_rep>::min());
    if (value >= top) return To::max();
    if (value <= bottom) return To::min();
    if constexpr (std::is_integral_v<Rep>) {
        // In range: convert exactly, in integers, unless the conversion's intermediate
        // product (count times the ratio's numerator) could itself overflow.
        using ratio = std::ratio_divide<Period, typename To::period>;
        const long double product = value * static_cast<long double>(ratio::den);
        if (product < top && product > bottom) return std::chrono::duration_cast<To>(d);
    }
    return To(static_cast<to_rep>(value));
}

/// `from + d`, clamped to the time points `from`'s type can hold.
template <class Clock, class Duration, class Rep, class Period>
[[nodiscard]] constexpr std::chrono::time_point<Clock, Duration>
saturating_add(std::chrono::time_point<Clock, Duration> from, std::chrono::duration<Rep, Period> d) noexcept {
    const Duration step = saturating_duration_cast<Duration>(d);
    return std::chrono::time_point<Clock, Duration>(
        Duration(saturating_add(from.time_since_epoch().count(), step.count())));
}

/// `later - earlier`, clamped to the range of their duration.
template <class Clock, class Duration>
[[nodiscard]] constexpr Duration saturating_sub(std::chrono::time_point<Clock, Duration> later,
                                                std::chrono::time_point<Clock, Duration> earlier) noexcept {
    return Duration(saturating_sub(later.time_since_epoch().count(), earlier.time_since_epoch().count()));
}

} // namespace warren::detail
