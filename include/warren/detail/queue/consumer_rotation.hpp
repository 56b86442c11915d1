#pragma once
/// @file detail/queue/consumer_rotation.hpp
/// consumer and consumer_rotation: a queue's consumers and whose turn it is.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../../error.hpp"
#include "../../options.hpp"
#include "../../policy.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/shared_text.hpp"

namespace warren::detail {

/// A consumer: its options, its callback and its bookkeeping. Guarded by its queue's lock.
template <class Callback, class Policy>
struct consumer : ref_counted<Policy> {
    consumer(std::uint64_t consumer_id, consumer_options opts, Callback fn)
        : id(consumer_id), options(std::move(opts)), callback(std::move(fn)),
          tag(make_ref<shared_text<Policy>>(options.tag)) {}
    std::uint64_t id; // ascending in subscription order
    consumer_options options;
    Callback callback;
    ref_ptr<shared_text<Policy>> tag; // shared with its deliveries
    std::uint32_t unacked = 0;
    bool busy = false;           // its callback is running: never run it twice at once
    bool blocked = false;        // sat out at its prefetch limit; rejoins at the back when freed
    bool cancelled = false;      // its subscription ended
    std::uint64_t in_flight = 0; // tag whose callback is running, if manual
    std::uint32_t handed_for_dispatch = 0; // synchronous, yet handed messages that wait for dispatch()
    std::thread::id runner;      // the thread running its callback (multi_threaded)
};

/// A queue's consumers in rotation order, as RabbitMQ's rabbit_queue_consumers keeps them:
/// the one served moves to the back, a new one joins at the back, and one at its prefetch
/// limit sits out until an ack frees it, then rejoins at the back. Higher consumer
/// priorities go first; with x-single-active-consumer only the earliest subscription still
/// standing receives. Not thread-safe: the queue's lock guards it.
template <class Consumer>
class consumer_rotation {
public:
    using list = std::vector<ref_ptr<Consumer>>;
    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    explicit consumer_rotation(bool single_active) noexcept : single_active_(single_active) {}

    [[nodiscard]] std::size_t size() const noexcept { return consumers_.size(); }
    [[nodiscard]] bool empty() const noexcept { return consumers_.empty(); }
    [[nodiscard]] const list& consumers() const noexcept { return consumers_; }

    /// Refuses a consumer that may not join: access_refused (403) while an exclusive one
    /// holds the queue, or when `wanted.exclusive` is asked of a queue with consumers or
    /// single-active-consumer (RabbitMQ's exclusive_consume_unavailable); not_allowed (530)
    /// for a tag already in use.
    void check_can_join(const consumer_options& wanted, std::string_view queue_name) const {
        const bool held_exclusively =
            std::any_of(consumers_.begin(), consumers_.end(), [](const auto& c) { return c->options.exclusive; });
        if (held_exclusively || (wanted.exclusive && (!consumers_.empty() || single_active_))) {
            raise(reply_code::access_refused, "queue " + detail::quoted(queue_name) + " in exclusive use");
        }
        for (const auto& c : consumers_) {
            if (c->options.tag == wanted.tag) raise(reply_code::not_allowed, "attempt to reuse consumer tag " + detail::quoted(wanted.tag));
        }
    }
    /// Joins at the back.
    void join(ref_ptr<Consumer> c) { consumers_.push_back(std::move(c)); }

    [[nodiscard]] Consumer* find(std::uint64_t id) noexcept {
        for (auto& c : consumers_) {
            if (c->id == id) return c.get();
        }
        return nullptr;
    }

    /// The consumer that receives under single-active-consumer: the earliest subscription
    /// still standing, as RabbitMQ 3.10 hands over. One being cancelled stays listed while
    /// cancel() waits for its running callback; it keeps the place (taking nothing) until
    /// its unacked messages are back, so the next consumer starts with them, in order, as
    /// RabbitMQ's requeue-then-hand-over does.
    [[nodiscard]] const Consumer* single_active() const noexcept {
        const Consumer* active = nullptr;
        for (const auto& c : consumers_) {
            if (active == nullptr || c->id < active->id) active = c.get();
        }
        return active;
    }
    /// Whether `id` may receive (always, without single-active-consumer).
    [[nodiscard]] bool is_active(std::uint64_t id) const noexcept {
        if (!single_active_) return true;
        const Consumer* active = single_active();
        return active != nullptr && active->id == id;
    }

    /// Whether a consumer whose callback is running may be picked: not to run a callback
    /// now, but to be handed a message whose callback runs once the current one returns.
    enum class running : bool { excluded, included };

    /// The index of the consumer to serve next, or `none`: the first of the highest
    /// priority that can take a message. One at its prefetch limit is marked blocked.
    [[nodiscard]] std::size_t pick(running busy = running::excluded) noexcept {
        if (single_active_) {
            const Consumer* active = single_active();
            if (active == nullptr) return none;
            const std::size_t at = index_of(*active);
            return can_take(*consumers_[at], busy) ? at : none;
        }
        std::size_t best = none;
        for (std::size_t index = 0; index < consumers_.size(); ++index) {
            Consumer& c = *consumers_[index];
            if (!can_take(c, busy)) continue;
            if (best == none || c.options.priority > consumers_[best]->options.priority) best = index;
        }
        return best;
    }
    /// The consumer at `index` was served: it goes to the back. Returns a reference to it.
    ref_ptr<Consumer> served(std::size_t index) {
        ref_ptr<Consumer> c = consumers_[index];
        to_back(index);
        return c;
    }
    /// Freed from its prefetch limit: back into the rotation, at the end.
    void unblock(Consumer& c) {
        c.blocked = false;
        to_back(index_of(c));
    }
    /// Takes `c` out; the reference is the caller's to defer (the callback is user code).
    ref_ptr<Consumer> remove(const Consumer& c) {
        const auto at = consumers_.begin() + static_cast<std::ptrdiff_t>(index_of(c));
        ref_ptr<Consumer> out = std::move(*at);
        consumers_.erase(at);
        return out;
    }
    /// Takes every consumer out, in rotation order.
    list take_all() noexcept { return std::exchange(consumers_, {}); }

private:
    [[nodiscard]] static bool can_take(Consumer& c, running busy) noexcept {
        // A cancelled consumer is still listed while cancel() waits for its callback: it
        // must get nothing more, or that wait could go on as long as messages arrive.
        if ((c.busy && busy == running::excluded) || c.cancelled || c.blocked) return false;
        if (c.options.ack == ack_mode::manual && c.options.prefetch != 0 && c.unacked >= c.options.prefetch) {
            c.blocked = true; // out of the rotation until an ack frees it
            return false;
        }
        return true;
    }
    [[nodiscard]] std::size_t index_of(const Consumer& c) const noexcept {
        const auto it = std::find_if(consumers_.begin(), consumers_.end(), [&](const auto& x) { return x.get() == &c; });
        return static_cast<std::size_t>(it - consumers_.begin());
    }
    void to_back(std::size_t index) {
        const auto at = consumers_.begin() + static_cast<std::ptrdiff_t>(index);
        std::rotate(at, at + 1, consumers_.end());
    }

    list consumers_;
    bool single_active_;
};

} // namespace warren::detail
