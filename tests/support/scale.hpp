// Sizes for the tests that check how a cost grows with the input.
#pragma once

#include <cstddef>

namespace warren_test {

/// True in a build with AddressSanitizer or ThreadSanitizer (gcc and clang spell it apart).
inline constexpr bool sanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

/// `n`, or a tenth of it under a sanitizer. The growth tests prove their bounds at the full
/// size in the gcc (Release) and clang (Debug) stages; under a sanitizer, where every
/// allocation costs tens of times as much, they walk the same code paths for memory errors at
/// a tenth of the size, which keeps the sanitizer stage within CI's budget.
constexpr std::size_t at_scale(std::size_t n) { return sanitized ? n / 10 : n; }

} // namespace warren_test
