#pragma once
/// @file patterns/retry_policy.hpp
/// retry_policy: how many times a failed step is tried and how long to wait in between
/// (fixed or exponential backoff, a cap, jitter). Shared by the orchestrator, the process
/// engine and the sagas.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

#include "../clock.hpp"

namespace warren {

/// How the delay between attempts grows.
enum class backoff : std::uint8_t {
    fixed,       ///< every retry waits initial_delay
    exponential, ///< retry n waits initial_delay × multiplier^(n-1)
};

/// Attempts and the delays between them. Attempt 1 is the first try; a policy of
/// max_attempts 1 never retries.
///
/// The delay before attempt n+1 (after n failed attempts) is initial_delay for a fixed
/// backoff, initial_delay × multiplier^(n-1) for an exponential one, then capped at
/// max_delay, then, with jitter j > 0, scaled by a factor in [1 - j, 1] drawn from a hash of
/// (jitter_seed, n): deterministic for one seed, so that tests on a manual_clock can say
/// exactly when each attempt runs, and spread over seeds (give each call or instance its
/// own) so that many retries do not all wake at once.
/// @code
/// auto policy = warren::retry_policy::exponential(5, std::chrono::milliseconds(100))
///                   .capped_at(std::chrono::seconds(1))
///                   .with_jitter(0.2);
/// policy.delay_before_retry(2); // 200 ms × [0.8, 1]
/// @endcode
/// Thread safety: a value type; its members are const and pure.
struct retry_policy {
    /// Attempts in all, the first one included (0 is taken as 1).
    std::uint32_t max_attempts = 1;
    /// Delay before the second attempt.
    clock::duration initial_delay = clock::duration::zero();
    /// How the delay grows.
    warren::backoff kind = warren::backoff::fixed;
    /// Growth per retry of an exponential backoff (values below 1 are taken as 1).
    double multiplier = 2.0;
    /// No delay is longer than this.
    clock::duration max_delay = clock::duration::max();
    /// Fraction of the delay that may be taken off at random, in [0, 1] (clamped).
    double jitter = 0.0;

    /// One attempt, no retry.
    [[nodiscard]] static retry_policy none() noexcept { return {}; }
    /// `attempts` in all, `delay` apart.
    [[nodiscard]] static retry_policy fixed(std::uint32_t attempts, clock::duration delay) noexcept {
        return {.max_attempts = attempts, .initial_delay = delay, .kind = warren::backoff::fixed};
    }
    /// `attempts` in all, the first retry after `initial`, each next one `multiplier` times
    /// longer.
    [[nodiscard]] static retry_policy exponential(std::uint32_t attempts, clock::duration initial,
                                                  double multiplier = 2.0) noexcept {
        return {.max_attempts = attempts, .initial_delay = initial, .kind = warren::backoff::exponential,
                .multiplier = multiplier};
    }
    /// This policy with no delay longer than `cap`.
    [[nodiscard]] retry_policy capped_at(clock::duration cap) const noexcept {
        retry_policy p = *this;
        p.max_delay = cap;
        return p;
    }
    /// This policy with jitter `fraction` (see the class).
    [[nodiscard]] retry_policy with_jitter(double fraction) const noexcept {
        retry_policy p = *this;
        p.jitter = fraction;
        return p;
    }

    /// Attempts in all (at least 1).
    [[nodiscard]] std::uint32_t attempts() const noexcept { return std::max<std::uint32_t>(max_attempts, 1); }

    /// Whether another attempt follows `failed` failed attempts.
    [[nodiscard]] bool allows_retry(std::uint32_t failed) const noexcept { return failed < attempts(); }

    /// The delay before the attempt that follows `failed` failed attempts (failed ≥ 1).
    [[nodiscard]] clock::duration delay_before_retry(std::uint32_t failed,
                                                     std::uint64_t jitter_seed = 0) const noexcept {
        using rep = clock::duration::rep;
        const double base = static_cast<double>(std::max(initial_delay, clock::duration::zero()).count());
        double delay = base;
        if (kind == warren::backoff::exponential && failed > 1) {
            delay = base * std::pow(std::max(multiplier, 1.0), static_cast<double>(failed - 1));
        }
        const double cap = static_cast<double>(std::max(max_delay, clock::duration::zero()).count());
        delay = std::min(delay, cap);
        const double j = std::clamp(std::isnan(jitter) ? 0.0 : jitter, 0.0, 1.0);
        if (j > 0.0) delay *= 1.0 - j * unit_random(jitter_seed, failed);
        // max() as a double rounds up past rep's range: compare before converting.
        if (!(delay < static_cast<double>(clock::duration::max().count()))) return clock::duration::max();
        return clock::duration(static_cast<rep>(delay));
    }

private:
    /// A number in [0, 1) from (seed, n): splitmix64's finalizer.
    static double unit_random(std::uint64_t seed, std::uint32_t n) noexcept {
        std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (static_cast<std::uint64_t>(n) + 1);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        return static_cast<double>(z >> 11) * 0x1.0p-53;
    }
};

} // namespace warren
