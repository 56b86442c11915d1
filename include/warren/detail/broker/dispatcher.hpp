#pragma once
/// @file detail/broker/dispatcher.hpp
/// dispatcher: push delivery across the broker's queues, round robin, running the
/// consumers' callbacks; the error handler; the expiry scan.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../../config.hpp"
#include "../../clock.hpp"
#include "../../handlers.hpp"
#include "../../queue.hpp"
#include "../core/deferred_release.hpp"
#include "../core/function_ref.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/shared_handler.hpp"
#include "dead_letter_router.hpp"
#include "queue_table.hpp"

namespace warren::detail {

/// Runs consumer callbacks: serves the queues of a queue list round robin, one message per
/// queue per turn, going on from where the previous round stopped; reports what callbacks
/// and on_cancel notifications throw; applies time to every queue (the expiry scan).
///
/// It owns the cursor and the error handler.
/// Thread safety: every member is thread-safe under multi_threaded; callbacks run with no
/// lock held.
template <class Message, class Policy>
class dispatcher {
public:
    using queue_type = basic_queue<Message, Policy>;
    using queue_list = typename queue_table<queue_type, Policy>::walk_list;
    using router_type = dead_letter_router<Message, Policy>;
    using error_handler = std::function<void(const consumer_error&)>;

    explicit dispatcher(router_type& dead_letters) noexcept : dead_letters_(&dead_letters) {}

    /// Delivers from `list` until `max_messages`, no consumer can take more, or `stop()`
    /// (if given) says so; returns how many were delivered. A callback that throws: a
    /// delivery still pending is rejected without requeue, then the exception goes to
    /// report().
    std::size_t run(const queue_list& list, std::size_t max_messages, function_ref<bool()> stop) {
        const std::size_t n = list.queues.size();
        if (n == 0) return 0;
        // Rounds go on from the queue after the last one served, so a small budget per call
        // (one frame's worth) still reaches every queue in turn.
        std::size_t next = cursor_.load(std::memory_order_relaxed) % n;
        std::size_t delivered = 0;
        std::size_t idle = 0; // queues in a row that had nothing to deliver
        while (delivered < max_messages && idle < n) {
            if (stop && stop()) break;
            queue_type* queue = list.queues[next].get();
            next = next + 1 == n ? 0 : next + 1;
            auto pending = queue == nullptr ? std::nullopt : next_callback(*queue); // null: deleted
            if (!pending) {
                ++idle;
                continue;
            }
            idle = 0;
            ++delivered;
            cursor_.store(next, std::memory_order_relaxed);
            run_callback(*pending, *queue);
        }
        return delivered;
    }

    /// Where the next round starts, as a position in the queue list.
    [[nodiscard]] std::size_t cursor() const noexcept { return cursor_.load(std::memory_order_relaxed); }
    /// Moves the cursor, after the queue list was compacted. Topology lock held (unique).
    void move_cursor(std::size_t position) noexcept { cursor_.store(position, std::memory_order_relaxed); }

    /// Removes the expired heads of every queue in `list` that can hold expiring messages,
    /// routing their dead letters. Returns how many expired, and whether some queue has
    /// been unused for longer than its x-expires at `now` (deleting those is the broker's).
    struct expiry {
        std::size_t expired = 0;
        bool unused_queues = false;
    };
    expiry expire(const queue_list& list, clock::time_point now) {
        expiry out;
        for (const auto& queue : list.queues) {
            if (!queue) continue; // deleted
            if (queue->may_expire()) out.expired += dead_letters_->route_after(*queue, [&](auto& dead) { return queue->expire(dead); });
            out.unused_queues = out.unused_queues || queue->unused_too_long(now);
        }
        return out;
    }
    /// Replaces the error handler (see shared_handler).
    void set_error_handler(error_handler handler) { handler_.set(std::move(handler)); }
    /// Hands `failure` to the error handler, or rethrows it without one.
    void report(std::exception_ptr failure, const std::string& queue, const std::string& consumer_tag,
                std::uint64_t delivery_tag) {
        const auto handler = handler_.get();
        if (!handler) std::rethrow_exception(failure);
        (*handler)(consumer_error{std::move(failure), queue, consumer_tag, delivery_tag});
    }
    /// Runs one synchronous consumer's callback (see synchronous_handoffs) as run() runs
    /// callbacks, except that a failure with no error handler is kept in `first_failure`
    /// (if that is still empty) rather than rethrown, so that the publish's other
    /// receivers still run. No lock held.
    void run_synchronous(typename queue_type::pending_callback& pending, queue_type& queue,
                         std::exception_ptr& first_failure) {
        const std::uint64_t tag = pending.delivery.delivery_tag();
        std::exception_ptr failure = run_caught(pending, queue);
        if (!failure) return;
        if (!handler_.get()) {
            if (!first_failure) first_failure = std::move(failure);
            return;
        }
        report(std::move(failure), queue.name(), pending.target->options.tag, tag);
    }

    /// Runs the on_cancel of each consumer a deleted queue ended, every one even if some
    /// throw; their errors go to the handler (delivery_tag 0), or without one the first is
    /// rethrown once all have run. No lock held.
    void notify_cancelled(const std::string& queue, const typename queue_type::ended_consumers& ended) {
        std::vector<std::pair<std::exception_ptr, const std::string*>> failures;
        for (const auto& c : ended) {
            if (!c->options.on_cancel) continue;
            WARREN_TRY {
                c->options.on_cancel();
            }
            WARREN_CATCH_ALL {
                failures.emplace_back(std::current_exception(), &c->options.tag);
            }
        }
        if (failures.empty()) return;
        const auto handler = handler_.get();
        if (!handler) std::rethrow_exception(failures.front().first); // every on_cancel has run
        for (const auto& [failure, tag] : failures) (*handler)(consumer_error{failure, queue, *tag, 0});
    }

private:
    /// The queue's next delivery, its dead letters routed and released before the callback
    /// runs. Written out rather than through route_after, which would move the delivery
    /// once more on the hottest path (60 instructions per message, callgrind).
    std::optional<typename queue_type::pending_callback> next_callback(queue_type& queue) {
        const deferred_release::scope releases_after_unlock;
        typename queue_type::dead_letters dead;
        auto pending = queue.next_callback(dead);
        dead_letters_->route_from(queue, dead);
        return pending;
    }
    void run_callback(typename queue_type::pending_callback& pending, queue_type& queue) {
        const std::uint64_t tag = pending.delivery.delivery_tag();
        if (std::exception_ptr failure = run_caught(pending, queue)) {
            report(std::move(failure), queue.name(), pending.target->options.tag, tag);
        }
    }
    /// Runs the callback and marks it returned; returns what it threw, its delivery then
    /// rejected without requeue if still pending.
    std::exception_ptr run_caught(typename queue_type::pending_callback& pending, queue_type& queue) {
        std::exception_ptr failure;
        WARREN_TRY {
            pending.target->callback(pending.delivery);
        }
        WARREN_CATCH_ALL {
            failure = std::current_exception();
        }
        if (failure && pending.delivery.pending()) {
            pending.delivery.reject(false); // no endless redelivery of a poison message
        }
        dead_letters_->route_after(queue, [&](auto& dead) { queue.finish(*pending.target, dead); });
        return failure;
    }
    router_type* dead_letters_;
    typename Policy::template atomic<std::size_t> cursor_{0};
    shared_handler<error_handler, Policy> handler_;
};

} // namespace warren::detail
