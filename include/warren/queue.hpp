#pragma once
/// @file queue.hpp
/// basic_queue: FIFO storage, consumers, round robin, prefetch and acknowledgements.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "delivery.hpp"
#include "detail/message_node.hpp"
#include "detail/ref_ptr.hpp"
#include "detail/ring.hpp"
#include "error.hpp"
#include "field_table.hpp"
#include "policy.hpp"

namespace warren {

/// How a queue is declared. Redeclaring a queue with different options is refused.
struct queue_options {
    /// Accepted for compatibility with RabbitMQ topologies; one process keeps nothing on disk.
    bool durable = false;
    /// One process is one AMQP connection, so an exclusive queue is simply one that lives
    /// until it is deleted or the broker goes away.
    bool exclusive = false;
    /// Deleted when its last consumer goes away, once it has had one.
    bool auto_delete = false;
    /// `x-` arguments. Those whose behaviour warren does not implement yet are refused
    /// with not_implemented (540) rather than silently ignored; unknown ones are kept, as
    /// RabbitMQ keeps them.
    field_table arguments{};

    friend bool operator==(const queue_options&, const queue_options&) = default;
};

/// How a consumer subscribes.
struct consumer_options {
    /// Its tag; empty means the broker generates one.
    std::string tag{};
    /// automatic: settled when handed out; manual: the callback acks, nacks or rejects.
    ack_mode ack = ack_mode::automatic;
    /// Most unacknowledged messages it holds at once (manual mode); 0 means no limit.
    std::uint16_t prefetch = 0;
    /// The only consumer of its queue while it lasts.
    bool exclusive = false;
};

/// Counters of one queue. Read them with basic_broker::queue_stats().
struct queue_counters {
    std::uint64_t enqueued = 0;     ///< messages routed into the queue
    std::uint64_t delivered = 0;    ///< handed to a consumer or a get, redeliveries included
    std::uint64_t acked = 0;        ///< acknowledged (automatic deliveries count on delivery)
    std::uint64_t requeued = 0;     ///< returned to the queue by nack, reject or cancel
    std::uint64_t rejected = 0;     ///< rejected or nacked without requeue, and so dropped
    std::uint64_t purged = 0;       ///< removed by purge or deletion
    std::size_t ready = 0;          ///< waiting to be delivered
    std::size_t unacked = 0;        ///< delivered, not yet settled
    std::size_t consumers = 0;      ///< current consumers
};

/// A queue: ready messages in order, the consumers that take them, and the deliveries not
/// yet settled. Applications reach queues through basic_broker; this class is the
/// storage and consumer logic behind it.
///
/// Order: messages leave in the order they arrived; a requeued message goes back to its
/// original position (as in RabbitMQ's classic queues). Consumers form a rotation as in
/// RabbitMQ: the one served moves to the back, a new one joins at the back, and one at its
/// prefetch limit sits out until an ack frees it, then rejoins at the back.
///
/// Thread safety: every member is thread-safe under multi_threaded (one mutex per queue);
/// owner thread only under single_threaded.
template <class Message, threading_policy Policy>
class basic_queue : public detail::ref_counted<Policy> {
public:
    using delivery_type = basic_delivery<Message, Policy>;
    using callback_type = std::function<void(delivery_type&)>;
    using node_type = detail::message_node<Message, Policy>;

    /// A consumer: its options, its callback and its bookkeeping.
    struct consumer : detail::ref_counted<Policy> {
        consumer(std::uint64_t consumer_id, consumer_options opts, callback_type fn)
            : id(consumer_id), options(std::move(opts)), callback(std::move(fn)) {}
        std::uint64_t id;
        consumer_options options;
        callback_type callback;
        std::uint32_t unacked = 0;
        bool busy = false;        // its callback is running: never run it twice at once
        bool blocked = false;     // sat out at its prefetch limit; rejoins at the back when freed
        bool cancelled = false;   // its subscription ended
        std::uint64_t in_flight = 0; // tag whose callback is running, if manual
        std::thread::id runner;      // the thread running its callback (multi_threaded)
    };

    /// A delivery picked for a consumer, to be run outside the queue's lock.
    struct pending_callback {
        detail::ref_ptr<consumer> target;
        delivery_type delivery;
    };

    basic_queue(std::string name, queue_options options)
        : name_(std::move(name)), options_(std::move(options)) {}

    /// Its name. Thread-safe (never changes).
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    /// Its declared options. Thread-safe (never change).
    [[nodiscard]] const queue_options& options() const noexcept { return options_; }

    /// Messages ready for delivery.
    [[nodiscard]] std::size_t message_count() const {
        std::lock_guard lock(mutex_);
        return ready_.size();
    }
    /// Current consumers.
    [[nodiscard]] std::size_t consumer_count() const {
        std::lock_guard lock(mutex_);
        return consumers_.size();
    }
    /// A consistent copy of its counters.
    [[nodiscard]] queue_counters counters() const {
        std::lock_guard lock(mutex_);
        queue_counters c = counters_;
        c.ready = ready_.size();
        c.unacked = unacked_count_;
        c.consumers = consumers_.size();
        return c;
    }
    /// Whether the queue was deleted.
    [[nodiscard]] bool closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }

    /// Appends a message; false if the queue was deleted meanwhile.
    bool push(const detail::ref_ptr<node_type>& msg);

    /// Takes the next ready message, as AMQP basic.get does.
    [[nodiscard]] std::optional<delivery_type> try_get(ack_mode mode);

    /// Waits up to `timeout` for a message. multi_threaded only.
    template <class Rep, class Period>
        requires Policy::thread_safe
    [[nodiscard]] std::optional<delivery_type> try_get_for(std::chrono::duration<Rep, Period> timeout, ack_mode mode);

    /// Adds a consumer. Throws access_refused (403) when an exclusive consumer holds the
    /// queue or `options.exclusive` is asked of a queue that has consumers, and
    /// not_allowed (530) when the tag is already in use on this queue.
    detail::ref_ptr<consumer> add_consumer(std::uint64_t id, consumer_options options, callback_type callback);

    /// Ends a consumer: its unacknowledged messages return to the queue (one whose
    /// callback is running returns when the callback does, unless settled). Returns
    /// whether it was still subscribed, and whether the queue now has no consumers.
    struct cancel_result {
        bool cancelled = false;
        bool last_consumer_gone = false;
    };
    cancel_result cancel(std::uint64_t consumer_id);

    /// Picks the next message and consumer for push delivery, or nothing if no consumer can
    /// take a message now. The caller runs the callback, then calls finish().
    [[nodiscard]] std::optional<pending_callback> next_callback();
    /// Marks a consumer's callback as returned.
    void finish(consumer& c);

    /// Settles `tag` (and with `multiple`, the same owner's earlier tags). Throws
    /// precondition_failed (406) for a tag that is not pending. A deleted queue accepts and
    /// ignores settlements, as RabbitMQ does.
    void settle(std::uint64_t tag, bool multiple, bool ack, bool requeue);

    /// Drops every ready message; returns how many.
    std::size_t purge();
    /// Deletes the queue: drops its messages, ends its consumers. Returns the number of
    /// ready messages dropped.
    std::size_t close();

private:
    struct ready_entry {
        detail::ref_ptr<node_type> message;
        std::uint64_t sequence; // arrival order, kept across requeues
        bool redelivered;
    };
    struct unacked_entry {
        std::uint64_t tag;
        std::uint64_t owner; // consumer id, 0 for try_get
        ready_entry entry;   // entry.message is empty once settled
    };

    [[nodiscard]] delivery_type hand_out(ready_entry&& entry, std::uint64_t owner, bool manual,
                                         const std::string& consumer_tag);
    [[nodiscard]] consumer* find_consumer(std::uint64_t id) noexcept;
    void unblock(consumer& c);
    void requeue(ready_entry&& entry);
    void release_unacked(std::size_t index, bool ack, bool requeue);
    void drop_settled_front();
    [[nodiscard]] std::size_t find_unacked(std::uint64_t tag) const noexcept;
    void notify_one() {
        if constexpr (Policy::thread_safe) {
            if (waiters_ > 0) available_.notify_one();
        }
    }

    struct no_condition {};
    using condition = std::conditional_t<Policy::thread_safe, std::condition_variable, no_condition>;

    const std::string name_;
    const queue_options options_;
    mutable typename Policy::mutex mutex_;
    [[no_unique_address]] condition available_; // a message arrived (try_get_for)
    [[no_unique_address]] condition idle_;      // a callback returned (cancel)
    std::size_t waiters_ = 0;
    detail::ring<ready_entry> ready_;
    detail::ring<unacked_entry> unacked_; // ascending tags
    std::size_t unacked_count_ = 0;
    std::vector<detail::ref_ptr<consumer>> consumers_;
    std::uint64_t next_sequence_ = 0;
    std::uint64_t last_tag_ = 0;
    queue_counters counters_;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------

template <class Message, threading_policy Policy>
bool basic_queue<Message, Policy>::push(const detail::ref_ptr<node_type>& msg) {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    ready_.push_back(ready_entry{msg, next_sequence_++, false});
    ++counters_.enqueued;
    notify_one();
    return true;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::hand_out(ready_entry&& entry, std::uint64_t owner, bool manual,
                                            const std::string& consumer_tag) -> delivery_type {
    const std::uint64_t tag = ++last_tag_;
    ++counters_.delivered;
    const bool redelivered = entry.redelivered;
    if (manual) {
        detail::ref_ptr<node_type> shared = entry.message;
        unacked_.push_back(unacked_entry{tag, owner, std::move(entry)});
        ++unacked_count_;
        return delivery_type(std::move(shared), detail::ref_ptr<basic_queue>(this), tag, redelivered, consumer_tag);
    }
    ++counters_.acked;
    return delivery_type(std::move(entry.message), {}, tag, redelivered, consumer_tag);
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::try_get(ack_mode mode) -> std::optional<delivery_type> {
    std::lock_guard lock(mutex_);
    if (closed_ || ready_.empty()) return std::nullopt;
    return hand_out(ready_.pop_front(), 0, mode == ack_mode::manual, std::string());
}

template <class Message, threading_policy Policy>
template <class Rep, class Period>
    requires Policy::thread_safe
auto basic_queue<Message, Policy>::try_get_for(std::chrono::duration<Rep, Period> timeout, ack_mode mode)
    -> std::optional<delivery_type> {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mutex_);
    ++waiters_;
    const bool ready = available_.wait_until(lock, deadline, [&] { return closed_ || !ready_.empty(); });
    --waiters_;
    if (!ready || closed_) return std::nullopt;
    return hand_out(ready_.pop_front(), 0, mode == ack_mode::manual, std::string());
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::add_consumer(std::uint64_t id, consumer_options options, callback_type callback)
    -> detail::ref_ptr<consumer> {
    std::lock_guard lock(mutex_);
    if (closed_) detail::raise(reply_code::not_found, "no queue " + detail::quoted(name_));
    const bool held_exclusively = std::any_of(consumers_.begin(), consumers_.end(),
                                              [](const auto& c) { return c->options.exclusive; });
    if (held_exclusively || (options.exclusive && !consumers_.empty())) {
        detail::raise(reply_code::access_refused, "queue " + detail::quoted(name_) + " in exclusive use");
    }
    for (const auto& c : consumers_) {
        if (c->options.tag == options.tag) {
            detail::raise(reply_code::not_allowed, "attempt to reuse consumer tag " + detail::quoted(options.tag));
        }
    }
    consumers_.push_back(detail::make_ref<consumer>(id, std::move(options), std::move(callback)));
    return consumers_.back();
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::find_consumer(std::uint64_t id) noexcept -> consumer* {
    for (auto& c : consumers_) {
        if (c->id == id) return c.get();
    }
    return nullptr;
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::unblock(consumer& c) {
    // Freed from its prefetch limit: back into the rotation, at the end.
    c.blocked = false;
    auto it = std::find_if(consumers_.begin(), consumers_.end(), [&](const auto& x) { return x.get() == &c; });
    std::rotate(it, it + 1, consumers_.end());
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::cancel(std::uint64_t consumer_id) -> cancel_result {
    std::unique_lock lock(mutex_);
    auto it = std::find_if(consumers_.begin(), consumers_.end(), [&](const auto& c) { return c->id == consumer_id; });
    if (it == consumers_.end()) return {};
    consumer& c = **it;
    c.cancelled = true;
    if constexpr (Policy::thread_safe) {
        // Its callback may be running on another thread: let it finish, so the caller
        // may destroy what the callback uses once the subscription has ended.
        if (c.busy && c.runner != std::this_thread::get_id()) {
            detail::ref_ptr<consumer> keep = *it;
            idle_.wait(lock, [&] { return !keep->busy; });
            it = std::find_if(consumers_.begin(), consumers_.end(), [&](const auto& x) { return x->id == consumer_id; });
            if (it == consumers_.end()) return {}; // the queue was closed meanwhile
        }
    }
    // Return its unacknowledged messages, except one whose callback is still running:
    // finish() returns that one, so the callback can still settle it.
    for (std::size_t i = 0; i < unacked_.size(); ++i) {
        unacked_entry& u = unacked_[i];
        if (u.owner == consumer_id && u.entry.message && !(c.busy && u.tag == c.in_flight)) {
            release_unacked(i, false, true);
        }
    }
    drop_settled_front();
    consumers_.erase(it);
    return {true, consumers_.empty()};
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::next_callback() -> std::optional<pending_callback> {
    std::lock_guard lock(mutex_);
    if (closed_ || ready_.empty() || consumers_.empty()) return std::nullopt;
    // consumers_ is the rotation, front first (rabbit_queue_consumers keeps the same order).
    for (std::size_t index = 0; index < consumers_.size(); ++index) {
        consumer& c = *consumers_[index];
        // A cancelled consumer is still listed while cancel() waits for its callback:
        // it must get nothing more, or that wait could go on as long as messages arrive.
        if (c.busy || c.cancelled || c.blocked) continue;
        const bool manual = c.options.ack == ack_mode::manual;
        if (manual && c.options.prefetch != 0 && c.unacked >= c.options.prefetch) {
            c.blocked = true; // out of the rotation until an ack frees it
            continue;
        }
        c.busy = true;
        if constexpr (Policy::thread_safe) c.runner = std::this_thread::get_id();
        delivery_type d = hand_out(ready_.pop_front(), c.id, manual, c.options.tag);
        if (manual) {
            ++c.unacked;
            c.in_flight = d.delivery_tag();
        }
        detail::ref_ptr<consumer> served = consumers_[index];
        // The consumer just served goes to the back of the rotation.
        std::rotate(consumers_.begin() + static_cast<std::ptrdiff_t>(index),
                    consumers_.begin() + static_cast<std::ptrdiff_t>(index) + 1, consumers_.end());
        return pending_callback{std::move(served), std::move(d)};
    }
    return std::nullopt;
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::finish(consumer& c) {
    std::lock_guard lock(mutex_);
    c.busy = false;
    if constexpr (Policy::thread_safe) idle_.notify_all();
    if (c.cancelled && c.in_flight != 0 && !closed_) {
        // The subscription ended during the callback: its message goes back now.
        const std::size_t i = find_unacked(c.in_flight);
        if (i != unacked_.size()) release_unacked(i, false, true);
        drop_settled_front();
    }
    c.in_flight = 0;
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::find_unacked(std::uint64_t tag) const noexcept {
    // Tags are handed out in ascending order, so the unacked ring is sorted by tag.
    std::size_t lo = 0;
    std::size_t hi = unacked_.size();
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (unacked_[mid].tag < tag) lo = mid + 1;
        else hi = mid;
    }
    if (lo < unacked_.size() && unacked_[lo].tag == tag && unacked_[lo].entry.message) return lo;
    return unacked_.size();
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::release_unacked(std::size_t index, bool ack, bool requeue) {
    unacked_entry& u = unacked_[index];
    if (consumer* c = find_consumer(u.owner)) {
        --c->unacked;
        if (c->blocked) unblock(*c);
    }
    --unacked_count_;
    if (ack) {
        ++counters_.acked;
        u.entry.message.reset();
    } else if (requeue) {
        ++counters_.requeued;
        this->requeue(std::move(u.entry));
        u.entry.message.reset();
    } else {
        ++counters_.rejected;
        u.entry.message.reset();
    }
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::requeue(ready_entry&& entry) {
    entry.redelivered = true;
    // Back to its original position: ready messages are kept in arrival order.
    std::size_t lo = 0;
    std::size_t hi = ready_.size();
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (ready_[mid].sequence < entry.sequence) lo = mid + 1;
        else hi = mid;
    }
    ready_.insert(lo, std::move(entry));
    notify_one();
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::drop_settled_front() {
    while (!unacked_.empty() && !unacked_.front().entry.message) unacked_.pop_front();
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::settle(std::uint64_t tag, bool multiple, bool ack, bool requeue) {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    const std::size_t index = find_unacked(tag);
    if (index == unacked_.size()) {
        detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag));
    }
    const std::uint64_t owner = unacked_[index].owner;
    if (multiple) {
        for (std::size_t i = 0; i < index; ++i) {
            if (unacked_[i].owner == owner && unacked_[i].entry.message) release_unacked(i, ack, requeue);
        }
    }
    release_unacked(index, ack, requeue);
    drop_settled_front();
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::purge() {
    std::lock_guard lock(mutex_);
    const std::size_t n = ready_.size();
    ready_.clear();
    counters_.purged += n;
    return n;
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::close() {
    std::lock_guard lock(mutex_);
    if (closed_) return 0;
    closed_ = true;
    const std::size_t n = ready_.size();
    counters_.purged += n + unacked_count_;
    ready_.clear();
    unacked_.clear();
    unacked_count_ = 0;
    for (auto& c : consumers_) c->cancelled = true;
    consumers_.clear();
    if constexpr (Policy::thread_safe) available_.notify_all();
    return n;
}

template <class Message, threading_policy Policy>
void basic_delivery<Message, Policy>::ack(bool multiple) {
    if (!queue_) detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag_));
    auto q = std::move(queue_);
    q->settle(tag_, multiple, true, false);
}

template <class Message, threading_policy Policy>
void basic_delivery<Message, Policy>::nack(bool multiple, bool requeue) {
    if (!queue_) detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag_));
    auto q = std::move(queue_);
    q->settle(tag_, multiple, false, requeue);
}

} // namespace warren
