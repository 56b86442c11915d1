#pragma once
/// @file detail/queue/router_gate.hpp
/// router_gate: how a queue lends out the dead-letter router to the handles that may
/// outlive the broker.

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <type_traits>
#include <utility>

namespace warren::detail {

/// A queue keeps its broker's dead-letter router here for the holders of its deliveries
/// and subscriptions, which may outlive the broker. Each hand-over goes through a pass,
/// which holds the gate open while it lives; the broker, as it goes away, closes the gate:
/// close() waits for the passes held on other threads, and later passes are empty.
/// Thread safety: thread-safe under multi_threaded.
template <class Router, class Policy>
class router_gate {
public:
    explicit router_gate(Router* router) noexcept : router_(router) {}
    router_gate(const router_gate&) = delete;
    router_gate& operator=(const router_gate&) = delete;

    /// The router, held open for as long as the pass lives; empty once the gate closed.
    class pass {
    public:
        pass(pass&& other) noexcept
            : gate_(std::exchange(other.gate_, nullptr)), router_(std::exchange(other.router_, nullptr)) {}
        pass(const pass&) = delete;
        pass& operator=(const pass&) = delete;
        pass& operator=(pass&&) = delete;
        ~pass() {
            if (gate_ != nullptr) gate_->leave();
        }
        [[nodiscard]] explicit operator bool() const noexcept { return router_ != nullptr; }
        Router* operator->() const noexcept { return router_; }

    private:
        friend router_gate;
        pass(router_gate* gate, Router* router) noexcept : gate_(gate), router_(router) {}
        router_gate* gate_;
        Router* router_;
    };

    /// A pass to the router, or an empty one once the gate is closed.
    [[nodiscard]] pass enter() {
        std::lock_guard lock(mutex_);
        if (router_ == nullptr) return pass(nullptr, nullptr);
        ++passes_;
        return pass(this, router_);
    }
    /// Hands out no more passes, once those held on other threads have ended.
    void close() {
        std::unique_lock lock(mutex_);
        router_ = nullptr;
        if constexpr (Policy::thread_safe) idle_.wait(lock, [&] { return passes_ == 0; });
    }

private:
    void leave() {
        std::lock_guard lock(mutex_);
        --passes_;
        if constexpr (Policy::thread_safe) idle_.notify_all();
    }

    struct no_condition {};
    mutable typename Policy::mutex mutex_;
    [[no_unique_address]] std::conditional_t<Policy::thread_safe, std::condition_variable_any, no_condition> idle_;
    Router* router_; // null once closed
    std::size_t passes_ = 0;
};

} // namespace warren::detail
