// retry_policy: attempts, fixed and exponential delays, the cap and deterministic jitter.

#include <chrono>
#include <cstdint>
#include <set>

#include <warren/patterns/retry_policy.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;
using warren::retry_policy;

TEST_CASE("retry_policy: none tries once and never retries", "[patterns][retry]") {
    const auto p = retry_policy::none();
    CHECK(p.attempts() == 1);
    CHECK_FALSE(p.allows_retry(1));
    CHECK(retry_policy{.max_attempts = 0}.attempts() == 1);
}

TEST_CASE("retry_policy: allows a retry until max_attempts have failed", "[patterns][retry]") {
    const auto p = retry_policy::fixed(3, 10ms);
    CHECK(p.allows_retry(1));
    CHECK(p.allows_retry(2));
    CHECK_FALSE(p.allows_retry(3));
}

TEST_CASE("retry_policy: a fixed backoff waits the same delay before every retry", "[patterns][retry]") {
    const auto p = retry_policy::fixed(5, 250ms);
    for (std::uint32_t failed = 1; failed < 5; ++failed) CHECK(p.delay_before_retry(failed) == 250ms);
}

TEST_CASE("retry_policy: an exponential backoff multiplies the delay and stops at the cap", "[patterns][retry]") {
    const auto p = retry_policy::exponential(10, 100ms, 3.0).capped_at(2s);
    CHECK(p.delay_before_retry(1) == 100ms);
    CHECK(p.delay_before_retry(2) == 300ms);
    CHECK(p.delay_before_retry(3) == 900ms);
    CHECK(p.delay_before_retry(4) == 2s);
    CHECK(p.delay_before_retry(9) == 2s);
}

TEST_CASE("retry_policy: a huge exponential delay saturates instead of overflowing", "[patterns][retry]") {
    const auto p = retry_policy::exponential(2000, 1s, 10.0);
    CHECK(p.delay_before_retry(1000) == warren::clock::duration::max());
}

TEST_CASE("retry_policy: jitter takes at most its fraction off, the same for one seed", "[patterns][retry]") {
    const auto p = retry_policy::fixed(100, 1000ms).with_jitter(0.25);
    std::set<warren::clock::duration::rep> seen;
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
        const auto d = p.delay_before_retry(1, seed);
        CHECK(d <= 1000ms);
        CHECK(d >= 750ms);
        CHECK(d == p.delay_before_retry(1, seed));
        seen.insert(d.count());
    }
    CHECK(seen.size() > 150); // spread over seeds, not one value
}

TEST_CASE("retry_policy: jitter outside [0, 1] is clamped", "[patterns][retry]") {
    CHECK(retry_policy::fixed(3, 100ms).with_jitter(-1.0).delay_before_retry(1, 7) == 100ms);
    const auto d = retry_policy::fixed(3, 100ms).with_jitter(5.0).delay_before_retry(1, 7);
    CHECK(d >= 0ms);
    CHECK(d <= 100ms);
}
