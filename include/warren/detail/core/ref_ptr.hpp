#pragma once
/// @file detail/core/ref_ptr.hpp
/// An intrusive reference-counted pointer whose counter follows the threading policy.

#include <atomic>
#include <cstdint>
#include <utility>

#include "../../config.hpp"
#include "../../policy.hpp"

namespace warren::detail {

/// Base for objects shared through ref_ptr. With single_threaded the count is a plain
/// integer, so sharing a message between queues costs no atomic operation.
template <class Policy>
class ref_counted {
public:
    ref_counted() = default;
    ref_counted(const ref_counted&) = delete;
    ref_counted& operator=(const ref_counted&) = delete;

    void add_ref() const noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    /// Returns true when this was the last reference.
    [[nodiscard]] bool release() const noexcept { return refs_.fetch_sub(1, std::memory_order_acq_rel) == 1; }
    /// Whether the caller's reference is the only one. Only meaningful where no other
    /// thread can take a new reference meanwhile (the caller holds the lock they need).
    [[nodiscard]] bool unique() const noexcept { return refs_.load(std::memory_order_acquire) == 1; }

protected:
    ~ref_counted() = default;

private:
    mutable typename Policy::template atomic<std::uint32_t> refs_{0};
};

/// Owns one reference to a T derived from ref_counted.
template <class T>
class ref_ptr {
public:
    constexpr ref_ptr() noexcept = default;
    explicit ref_ptr(T* p) noexcept : p_(p) {
        if (p_) p_->add_ref();
    }
    ref_ptr(const ref_ptr& other) noexcept : ref_ptr(other.p_) {}
    ref_ptr(ref_ptr&& other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    ref_ptr& operator=(ref_ptr other) noexcept {
        swap(other);
        return *this;
    }
    ~ref_ptr() { reset(); }

    void reset() noexcept {
        // Null the member first: nothing can reach the object through it once its last
        // reference may be gone.
        T* const p = std::exchange(p_, nullptr);
        if (p != nullptr && p->release()) destroy(p);
    }
    void swap(ref_ptr& other) noexcept { std::swap(p_, other.p_); }
    /// Gives up this reference without dropping it: the caller owns it until adopt().
    [[nodiscard]] T* detach() noexcept { return std::exchange(p_, nullptr); }
    /// Takes over a reference that detach() gave up, without counting one more.
    [[nodiscard]] static ref_ptr adopt(T* p) noexcept {
        ref_ptr r;
        r.p_ = p;
        return r;
    }

    [[nodiscard]] T* get() const noexcept { return p_; }
    T& operator*() const noexcept { return *p_; }
    T* operator->() const noexcept { return p_; }
    explicit operator bool() const noexcept { return p_ != nullptr; }
    friend bool operator==(const ref_ptr& a, const ref_ptr& b) noexcept { return a.p_ == b.p_; }

private:
    // Out of line, so that dropping a reference that is not the last stays a few
    // instructions wherever it is inlined (the destructor's code would make it a call).
    WARREN_NOINLINE static void destroy(T* p) noexcept { delete p; }

    T* p_ = nullptr;
};

/// Allocates a T and returns the first reference to it.
template <class T, class... Args>
[[nodiscard]] ref_ptr<T> make_ref(Args&&... args) {
    return ref_ptr<T>(new T(std::forward<Args>(args)...));
}

} // namespace warren::detail
