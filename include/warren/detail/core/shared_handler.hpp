#pragma once
/// @file detail/core/shared_handler.hpp
/// shared_handler: a user handler that one thread may replace while others call it.

#include <memory>
#include <mutex>
#include <utility>

namespace warren::detail {

/// Holds a handler (a std::function) as one shared reference: get() copies it under the
/// lock and the caller calls it without, so the handler may use the broker; set() destroys
/// the one it replaces after the lock is released, as that may be the last reference to
/// user code. Thread safety: thread-safe under multi_threaded.
template <class Handler, class Policy>
class shared_handler {
public:
    /// Replaces the handler; an empty one means none.
    void set(Handler handler) {
        std::shared_ptr<const Handler> replaced = handler ? std::make_shared<const Handler>(std::move(handler)) : nullptr;
        std::lock_guard lock(mutex_);
        std::swap(current_, replaced);
    }
    /// The current handler, or null.
    [[nodiscard]] std::shared_ptr<const Handler> get() const {
        std::lock_guard lock(mutex_);
        return current_;
    }

private:
    mutable typename Policy::mutex mutex_;
    std::shared_ptr<const Handler> current_;
};

} // namespace warren::detail
