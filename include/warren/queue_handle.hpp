#pragma once
/// @file queue_handle.hpp
/// basic_queue_handle: takes messages from one queue without a name lookup.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "detail/broker/route_through_gate.hpp"
#include "detail/core/deferred_release.hpp"
#include "detail/core/ref_ptr.hpp"
#include "error.hpp"
#include "options.hpp"

namespace warren {

/// Takes messages from the queue it was made for, as basic_broker::try_get does, but the
/// queue is resolved once, when the handle is made: no name lookup and no topology lock
/// per message, which is what a consumer thread polling a concurrent_broker pays for
/// otherwise. Once the queue is deleted (or the broker destroyed), taking throws
/// not_found (404), even if a queue of the same name is declared again: make a new handle.
/// @code
/// auto tasks = broker.make_queue_handle("tasks");
/// while (auto d = tasks.try_get()) work(d->body());
/// @endcode
/// Thread safety: under multi_threaded, every member is thread-safe. A handle may outlive
/// the broker.
template <class Broker>
class basic_queue_handle {
public:
    using queue_type = typename Broker::queue_type;
    using delivery = typename Broker::delivery;

    basic_queue_handle() noexcept = default;

    /// The next message, or nothing if the queue is empty; with ack_mode::manual the
    /// delivery must be settled. Expired heads are removed first (dead-lettered where the
    /// queue has a dead-letter exchange). Deleted queue: not_found.
    [[nodiscard]] std::optional<delivery> try_get(ack_mode mode = ack_mode::automatic) const {
        const detail::deferred_release::scope releases_after_unlock;
        typename queue_type::dead_letters dead;
        auto got = queue_->try_get(mode, dead);
        detail::route_through_gate(*queue_, dead);
        if (!got && queue_->closed()) gone();
        return got;
    }
    /// Takes up to `max` messages at once, each as try_get takes one, in order, appending
    /// them to `out`; returns how many (0 if the queue is empty). One lock for the batch,
    /// where try_get takes it per message: what a consumer thread draining a busy queue
    /// wants. Deleted queue: not_found.
    std::size_t try_get_many(std::vector<delivery>& out, std::size_t max, ack_mode mode = ack_mode::automatic) const {
        const detail::deferred_release::scope releases_after_unlock;
        typename queue_type::dead_letters dead;
        const std::size_t taken = queue_->try_get_many(max, mode, out, dead);
        detail::route_through_gate(*queue_, dead);
        if (taken == 0 && queue_->closed()) gone();
        return taken;
    }
    /// Like try_get, but waits up to `timeout` for a message. multi_threaded only.
    template <class Rep, class Period>
        requires Broker::policy_type::thread_safe
    [[nodiscard]] std::optional<delivery> try_get_for(std::chrono::duration<Rep, Period> timeout,
                                                      ack_mode mode = ack_mode::automatic) const {
        auto got = queue_->try_get_for(timeout, mode, [this](typename queue_type::dead_letters& dead) {
            detail::route_through_gate(*queue_, dead);
        });
        if (!got && queue_->closed()) gone();
        return got;
    }
    /// Ready messages in the queue (expired ones not yet removed included).
    [[nodiscard]] std::size_t message_count() const { return queue_->message_count(); }
    /// The queue's name.
    [[nodiscard]] const std::string& queue() const noexcept { return queue_->name(); }
    /// Whether this handle was made by a broker.
    [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(queue_); }

private:
    friend Broker;
    explicit basic_queue_handle(detail::ref_ptr<queue_type> queue) noexcept : queue_(std::move(queue)) {}

    [[noreturn]] void gone() const {
        detail::raise(reply_code::not_found, "no queue " + detail::quoted(queue_->name()) + " (deleted)");
    }

    detail::ref_ptr<queue_type> queue_;
};

} // namespace warren
