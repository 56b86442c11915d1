#pragma once
/// @file config.hpp
/// Version, assertions and the exceptions switch.

#define WARREN_VERSION_MAJOR 0
#define WARREN_VERSION_MINOR 1
#define WARREN_VERSION_PATCH 0

/// WARREN_ASSERT(cond, message) checks a precondition that only a bug in the caller can
/// break. Define it before including warren to route failures into your own handler.
#ifndef WARREN_ASSERT
#    include <cassert>
#    define WARREN_ASSERT(condition, message) assert((condition) && (message))
#endif

/// WARREN_EXCEPTIONS is 1 when the compiler has exceptions enabled. Without them every
/// `warren::error` is printed to stderr and the process aborts (see detail::raise).
#ifndef WARREN_EXCEPTIONS
#    if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#        define WARREN_EXCEPTIONS 1
#    else
#        define WARREN_EXCEPTIONS 0
#    endif
#endif

/// WARREN_TRY / WARREN_CATCH_ALL / WARREN_RETHROW: a `try { } catch (...) { throw; }` that
/// rolls back what a failing step half did, and compiles away without exceptions (where
/// nothing can throw, and clang refuses `try` and `throw` even in uninstantiated templates).
#if WARREN_EXCEPTIONS
#    define WARREN_TRY try
#    define WARREN_CATCH_ALL catch (...)
#    define WARREN_RETHROW throw
#else
#    define WARREN_TRY if (true)
#    define WARREN_CATCH_ALL else
#    define WARREN_RETHROW (void)0
#endif

/// WARREN_ALWAYS_INLINE folds a helper into its one or two callers on the hot path, where
/// the compiler would otherwise keep it out of line and pay a call per message.
#ifndef WARREN_ALWAYS_INLINE
#    if defined(__GNUC__) || defined(__clang__)
#        define WARREN_ALWAYS_INLINE inline __attribute__((always_inline))
#    elif defined(_MSC_VER)
#        define WARREN_ALWAYS_INLINE __forceinline
#    else
#        define WARREN_ALWAYS_INLINE inline
#    endif
#endif

/// WARREN_NOINLINE keeps a rarely taken path out of line, so that its callers' common path
/// stays short (no registers saved for it).
#ifndef WARREN_NOINLINE
#    if defined(__GNUC__) || defined(__clang__)
#        define WARREN_NOINLINE __attribute__((noinline))
#    elif defined(_MSC_VER)
#        define WARREN_NOINLINE __declspec(noinline)
#    else
#        define WARREN_NOINLINE
#    endif
#endif
