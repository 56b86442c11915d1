#pragma once
/// @file queue.hpp
/// basic_queue: ready messages (by priority), consumers, prefetch, acknowledgements, TTL,
/// length limits and dead letters.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "delivery.hpp"
#include "detail/core/deferred_release.hpp"
#include "detail/core/ref_ptr.hpp"
#include "detail/core/ring.hpp"
#include "detail/core/saturate.hpp"
#include "detail/message/message_node.hpp"
#include "detail/message/x_death.hpp"
#include "error.hpp"
#include "field_table.hpp"
#include "options.hpp"
#include "policy.hpp"
#include "queue_arguments.hpp"
#include "stats.hpp"

namespace warren {

/// A queue: ready messages in order, the consumers that take them, and the deliveries not
/// yet settled. Applications reach queues through basic_broker; this class is the
/// storage and consumer logic behind it.
///
/// Order: messages leave in the order they arrived, higher priorities first when the queue
/// has x-max-priority; a requeued message goes back to its original position (as in
/// RabbitMQ's classic queues). Consumers form a rotation as in RabbitMQ: the one served
/// moves to the back, a new one joins at the back, and one at its prefetch limit sits out
/// until an ack frees it, then rejoins at the back. Higher consumer priorities go first;
/// with x-single-active-consumer only the earliest remaining consumer receives.
///
/// Messages the queue lets go of other than by delivery (expired, over the length limit,
/// rejected) are dead letters: they go to the queue's host (the broker), which routes them
/// to the dead-letter exchange, or they are dropped and counted.
///
/// Lifetimes: the queue never destroys a message or a consumer while it holds its lock;
/// the references it lets go of are deferred (detail::deferred_release) and dropped once
/// the operation's locks are released, since their destructors run user code.
///
/// Thread safety: every member is thread-safe under multi_threaded (one mutex per queue);
/// owner thread only under single_threaded.
template <class Message, threading_policy Policy>
class basic_queue : public detail::ref_counted<Policy> {
public:
    using delivery_type = basic_delivery<Message, Policy>;
    using callback_type = std::function<void(delivery_type&)>;
    using node_type = detail::message_node<Message, Policy>;
    using time_point = clock::time_point;

    /// A consumer: its options, its callback and its bookkeeping.
    struct consumer : detail::ref_counted<Policy> {
        consumer(std::uint64_t consumer_id, consumer_options opts, callback_type fn)
            : id(consumer_id), options(std::move(opts)), callback(std::move(fn)),
              tag(detail::make_ref<detail::shared_text<Policy>>(options.tag)) {}
        std::uint64_t id; // ascending in subscription order
        consumer_options options;
        callback_type callback;
        detail::ref_ptr<detail::shared_text<Policy>> tag; // shared with its deliveries
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

    /// A message the queue let go of, on its way to the dead-letter exchange.
    struct dead_letter {
        detail::ref_ptr<node_type> message;
        death_reason reason;
    };
    using dead_letters = std::vector<dead_letter>;

    /// Who takes the queue's dead letters: the broker. Called with no queue lock held; it
    /// must not drop the letters' last references under its own locks (it defers them).
    class host {
    public:
        virtual void dead_letter(basic_queue& from, dead_letters& letters) = 0;

    protected:
        ~host() = default;
    };

    /// What became of a pushed message.
    enum class push_result : std::uint8_t { accepted, refused, closed };

    /// A queue named `name`; `options.arguments` must already be valid (see
    /// queue_arguments::parse). Time comes from `time`; dead letters go to `owner`.
    basic_queue(std::string name, queue_options options, const clock& time, host* owner)
        : name_(std::move(name)), options_(std::move(options)),
          arguments_(queue_arguments::parse(options_.arguments, name_)), clock_(&time), host_(owner),
          levels_(std::size_t{arguments_.max_priority} + 1) {
        if (arguments_.expires) last_used_ = clock_->now();
    }

    /// Its name. Thread-safe (never changes).
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    /// Its declared options. Thread-safe (never change).
    [[nodiscard]] const queue_options& options() const noexcept { return options_; }
    /// Its parsed arguments. Thread-safe (never change).
    [[nodiscard]] const queue_arguments& arguments() const noexcept { return arguments_; }

    /// Messages ready for delivery (expired ones not yet removed included; see expire()).
    [[nodiscard]] std::size_t message_count() const {
        std::lock_guard lock(mutex_);
        return ready_count_;
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
        c.ready = ready_count_;
        c.unacked = unacked_count_;
        c.ready_bytes = ready_bytes_;
        c.consumers = consumers_.size();
        return c;
    }
    /// Whether the queue was deleted.
    [[nodiscard]] bool closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }
    /// Whether the tag belongs to the consumer that receives under single-active-consumer
    /// (always true without it).
    [[nodiscard]] bool is_active_consumer(std::uint64_t consumer_id) const {
        std::lock_guard lock(mutex_);
        if (!arguments_.single_active_consumer) return true;
        const consumer* active = single_active();
        return active != nullptr && active->id == consumer_id;
    }
    /// A copy of the consumers' ids and options, in rotation order.
    [[nodiscard]] std::vector<std::pair<std::uint64_t, consumer_options>> consumer_list() const {
        std::lock_guard lock(mutex_);
        std::vector<std::pair<std::uint64_t, consumer_options>> out;
        for (const auto& c : consumers_) {
            if (!c->cancelled) out.emplace_back(c->id, c->options);
        }
        return out;
    }

    /// Appends a message, applying the length limit. Dead letters it causes (drop-head,
    /// reject-publish-dlx, expired heads) are appended to `dead` for the caller to route.
    /// The caller holds a detail::deferred_release::scope open, which drops the messages
    /// it lets go of once the caller's locks are released.
    push_result push(const detail::ref_ptr<node_type>& msg, dead_letters& dead);

    /// Takes the next ready message, as AMQP basic.get does.
    [[nodiscard]] std::optional<delivery_type> try_get(ack_mode mode);

    /// Waits up to `timeout` for a message. multi_threaded only.
    template <class Rep, class Period>
        requires Policy::thread_safe
    [[nodiscard]] std::optional<delivery_type> try_get_for(std::chrono::duration<Rep, Period> timeout, ack_mode mode);

    /// Adds a consumer. Throws access_refused (403) when an exclusive consumer holds the
    /// queue or `options.exclusive` is asked of a queue that has consumers or
    /// x-single-active-consumer, and not_allowed (530) when the tag is already in use on this queue.
    detail::ref_ptr<consumer> add_consumer(std::uint64_t id, consumer_options options, callback_type callback);

    /// Ends a consumer: its unacknowledged messages return to the queue (one whose
    /// callback is running returns when the callback does, unless settled). Returns
    /// whether it was still subscribed, and whether the queue now has no consumers. Under
    /// multi_threaded it first waits for the consumer's callback if that runs on another
    /// thread, also when the queue was deleted meanwhile; otherwise, on a deleted queue it
    /// returns at once, finding nothing to end.
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

    /// Removes the expired messages at the head, as RabbitMQ does: a message whose TTL
    /// passed behind one that has not (of its own priority or a higher one) waits until
    /// it reaches the head.
    /// Returns how many expired.
    std::size_t expire();
    /// Whether it can hold expiring messages (x-message-ttl, or one with an expiration).
    [[nodiscard]] bool may_expire() const {
        std::lock_guard lock(mutex_);
        return may_expire_;
    }
    /// Whether x-expires has passed since it was last used (declared, consumed from, got
    /// from) while it had no consumers.
    [[nodiscard]] bool unused_too_long(time_point now) const {
        std::lock_guard lock(mutex_);
        return unused_too_long_locked(now);
    }
    /// Counts as a use for x-expires (a redeclare).
    void touch() {
        std::lock_guard lock(mutex_);
        if (arguments_.expires) last_used_ = clock_->now();
    }

    /// Drops every ready message; returns how many.
    std::size_t purge();

    /// The consumers a closing queue ended: the caller runs their on_cancel (where the
    /// deletion is AMQP's basic.cancel) and lets go of them once every lock is released.
    using ended_consumers = std::vector<detail::ref_ptr<consumer>>;
    /// Deletes the queue: drops its messages, ends its consumers, and returns them. Sets
    /// `ready_dropped` (if given) to the ready messages it dropped, counted under its lock.
    ended_consumers close(std::size_t* ready_dropped = nullptr);
    /// Deletes the queue only if it has no consumer (auto-delete, x-expires): the check and
    /// the deletion are one step, so no consumer can subscribe in between. Returns whether
    /// it deleted it.
    bool close_if_unused(time_point unused_since_before = time_point::max());
    /// Stops handing dead letters to the host, once any hand-over in progress on another
    /// thread has finished: the broker calls it as it is destroyed.
    void detach_host();

private:
    struct ready_entry {
        detail::ref_ptr<node_type> message;
        std::uint64_t sequence; // arrival order, kept across requeues
        time_point expires;     // time_point::max() when it never expires
        bool redelivered;
    };
    struct unacked_entry {
        std::uint64_t tag;
        std::uint64_t owner; // consumer id, 0 for try_get
        ready_entry entry;   // entry.message is empty once settled
    };

    [[nodiscard]] std::size_t level_of(const node_type& msg) const noexcept {
        const std::uint8_t p = msg.message.properties.priority.value_or(0);
        return std::min<std::size_t>(p, arguments_.max_priority);
    }
    [[nodiscard]] std::size_t head_level() const noexcept {
        for (std::size_t level = levels_.size(); level-- > 0;) {
            if (!levels_[level].empty()) return level;
        }
        return 0;
    }
    [[nodiscard]] time_point expiry_of(const node_type& msg) const noexcept;
    [[nodiscard]] bool over_limit() const noexcept {
        return (arguments_.max_length && ready_count_ > *arguments_.max_length) ||
               (arguments_.max_length_bytes && ready_bytes_ > *arguments_.max_length_bytes);
    }
    [[nodiscard]] bool unused_too_long_locked(time_point now) const noexcept {
        return arguments_.expires && consumers_.empty() && detail::saturating_sub(now, last_used_) >= *arguments_.expires;
    }
    [[nodiscard]] static bool expired(const ready_entry& e, time_point now) noexcept {
        return e.expires != time_point::max() && e.expires <= now; // max: never (or saturated)
    }
    ready_entry take_from(std::size_t level);
    ready_entry take_head() { return take_from(head_level()); }
    void let_go(detail::ref_ptr<node_type> msg, death_reason reason, dead_letters& dead);
    void drop_head_while_over_limit(dead_letters& dead);
    /// Drops the expired messages at the head; the common case, nothing can expire, inline.
    void expire_heads(dead_letters& dead) {
        if (may_expire_ && ready_count_ != 0) expire_expired_heads(dead);
    }
    void expire_expired_heads(dead_letters& dead);
    /// Gives the dead letters to the host; called with no queue lock held. The letters'
    /// references stay with the caller, which drops them after this returns.
    void hand_over(dead_letters& dead);
    ended_consumers close_locked(std::size_t* ready_dropped);

    [[nodiscard]] delivery_type make_delivery(ready_entry&& entry, std::uint64_t owner, bool manual,
                                         const detail::ref_ptr<detail::shared_text<Policy>>& consumer_tag);
    [[nodiscard]] consumer* find_consumer(std::uint64_t id) noexcept;
    [[nodiscard]] const consumer* single_active() const noexcept;
    [[nodiscard]] bool can_take(consumer& c) noexcept;
    [[nodiscard]] std::size_t pick_consumer() noexcept;
    void unblock(consumer& c);
    void requeue(ready_entry&& entry);
    void release_unacked(std::size_t index, bool ack, bool requeue, dead_letters& dead);
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
    const queue_arguments arguments_;
    const clock* clock_;
    host* host_;                 // null once the broker is going away (detach_host)
    std::size_t handing_over_ = 0; // hand-overs to host_ in progress, with no lock held
    mutable typename Policy::mutex mutex_;
    [[no_unique_address]] condition available_; // a message arrived (try_get_for)
    [[no_unique_address]] condition idle_;      // a callback returned (cancel), a hand-over ended
    std::size_t waiters_ = 0;
    std::vector<detail::ring<ready_entry>> levels_; // by priority; one level without x-max-priority
    std::size_t ready_count_ = 0;
    std::size_t ready_bytes_ = 0;
    detail::ring<unacked_entry> unacked_; // ascending tags
    std::size_t unacked_count_ = 0;
    std::vector<detail::ref_ptr<consumer>> consumers_;
    // Consumers whose callback was running when the queue closed, so that cancel() can
    // still wait for it (multi_threaded); finish() takes each out.
    std::vector<detail::ref_ptr<consumer>> finishing_;
    std::uint64_t next_sequence_ = 0;
    std::uint64_t last_tag_ = 0;
    queue_counters counters_;
    time_point last_used_{};
    bool may_expire_ = false;
    bool closed_ = false;
};

// ---------------------------------------------------------------------------------------
// storage, limits and expiry

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::expiry_of(const node_type& msg) const noexcept -> time_point {
    // The smaller of the queue's and the message's TTL wins, as in RabbitMQ.
    std::optional<std::chrono::milliseconds> ttl = arguments_.message_ttl;
    if (msg.ttl && (!ttl || *msg.ttl < *ttl)) ttl = msg.ttl;
    if (!ttl) return time_point::max();
    return detail::saturating_add(clock_->now(), *ttl); // max, never, if it would not fit
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::take_from(std::size_t level) -> ready_entry {
    ready_entry entry = levels_[level].pop_front();
    --ready_count_;
    ready_bytes_ -= entry.message->body_bytes;
    return entry;
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::let_go(detail::ref_ptr<node_type> msg, death_reason reason, dead_letters& dead) {
    const bool dead_lettered = arguments_.dead_letter_exchange.has_value();
    death_counts& counts = dead_lettered ? counters_.dead_lettered : counters_.dropped;
    switch (reason) {
    case death_reason::expired: ++counts.expired; break;
    case death_reason::maxlen: ++counts.maxlen; break;
    case death_reason::rejected: ++counts.rejected; break;
    }
    if (dead_lettered) dead.push_back(dead_letter{std::move(msg), reason});
    else detail::deferred_release::defer(std::move(msg)); // its body's destructor runs after the lock
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::hand_over(dead_letters& dead) {
    if (dead.empty()) return;
    host* to;
    {
        std::lock_guard lock(mutex_);
        to = host_;
        if (to != nullptr) ++handing_over_;
    }
    if (to == nullptr) return; // the broker is going away: the letters are dropped with `dead`
    struct end_hand_over {
        basic_queue& q;
        ~end_hand_over() {
            std::lock_guard lock(q.mutex_);
            --q.handing_over_;
            if constexpr (Policy::thread_safe) q.idle_.notify_all();
        }
    } guard{*this};
    to->dead_letter(*this, dead);
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::detach_host() {
    std::unique_lock lock(mutex_);
    host_ = nullptr;
    if constexpr (Policy::thread_safe) idle_.wait(lock, [&] { return handing_over_ == 0; });
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::drop_head_while_over_limit(dead_letters& dead) {
    // Only drop-head drops: the reject modes refuse at the door instead.
    if (arguments_.overflow != overflow_mode::drop_head) return;
    while (ready_count_ > 0 && over_limit()) let_go(take_head().message, death_reason::maxlen, dead);
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::expire_expired_heads(dead_letters& dead) {
    const time_point now = clock_->now();
    // Only at the queue's head, the next message a consumer would get: a lower priority
    // is reached only once every higher one is empty (rabbit_priority_queue:dropwhile).
    for (std::size_t level = levels_.size(); level-- > 0;) {
        auto& ready = levels_[level];
        while (!ready.empty() && expired(ready.front(), now)) {
            let_go(take_from(level).message, death_reason::expired, dead);
        }
        if (!ready.empty()) break;
    }
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::push(const detail::ref_ptr<node_type>& msg, dead_letters& dead) -> push_result {
    // The caller (the broker's publish, which holds the topology lock) has a
    // deferred_release::scope open: the messages this drops go when it ends.
    std::lock_guard lock(mutex_);
    if (closed_) return push_result::closed;
    expire_heads(dead); // what RabbitMQ's TTL timer would have removed by now
    if (arguments_.limited() && arguments_.overflow != overflow_mode::drop_head) {
        // reject-publish: refuse a message that would take the queue over its limit.
        const bool too_long = arguments_.max_length && ready_count_ + 1 > *arguments_.max_length;
        const bool too_big = arguments_.max_length_bytes && ready_bytes_ + msg->body_bytes > *arguments_.max_length_bytes;
        if (too_long || too_big) {
            ++counters_.refused;
            if (arguments_.overflow == overflow_mode::reject_publish_dlx && arguments_.dead_letter_exchange) {
                dead.push_back(dead_letter{msg, death_reason::maxlen});
            }
            return push_result::refused;
        }
    }
    const time_point expires = expiry_of(*msg);
    if (expires != time_point::max()) may_expire_ = true;
    levels_[level_of(*msg)].push_back(ready_entry{msg, next_sequence_++, expires, false});
    ++ready_count_;
    ready_bytes_ += msg->body_bytes;
    ++counters_.enqueued;
    drop_head_while_over_limit(dead);
    expire_heads(dead); // RabbitMQ drops expired heads after every change to the head
    notify_one();
    return push_result::accepted;
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::expire() {
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    std::size_t count;
    {
        std::lock_guard lock(mutex_);
        if (closed_) return 0;
        const std::uint64_t before = counters_.dead_lettered.expired + counters_.dropped.expired;
        expire_heads(dead);
        count = static_cast<std::size_t>(counters_.dead_lettered.expired + counters_.dropped.expired - before);
    }
    hand_over(dead);
    return count;
}

// ---------------------------------------------------------------------------------------
// delivery

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::make_delivery(ready_entry&& entry, std::uint64_t owner, bool manual,
                                            const detail::ref_ptr<detail::shared_text<Policy>>& consumer_tag)
    -> delivery_type {
    const std::uint64_t tag = ++last_tag_;
    ++counters_.delivered;
    const bool redelivered = entry.redelivered;
    if (redelivered) ++counters_.redelivered;
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
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    std::optional<delivery_type> got;
    {
        std::lock_guard lock(mutex_);
        if (closed_) return std::nullopt;
        if (arguments_.expires) last_used_ = clock_->now();
        expire_heads(dead);
        if (ready_count_ > 0) {
            got.emplace(make_delivery(take_head(), 0, mode == ack_mode::manual, {}));
            expire_heads(dead); // the new head, as RabbitMQ checks it right after a get
        }
    }
    hand_over(dead);
    return got;
}

template <class Message, threading_policy Policy>
template <class Rep, class Period>
    requires Policy::thread_safe
auto basic_queue<Message, Policy>::try_get_for(std::chrono::duration<Rep, Period> timeout, ack_mode mode)
    -> std::optional<delivery_type> {
    // Saturating: hours::max() means waiting as long as there is time, not an overflow.
    const auto deadline = detail::saturating_add(std::chrono::steady_clock::now(), timeout);
    std::optional<delivery_type> got;
    bool first = true;
    for (;;) {
        dead_letters dead;
        {
            const detail::deferred_release::scope releases_after_unlock;
            std::unique_lock lock(mutex_);
            if (closed_) return got;
            if (first && arguments_.expires) last_used_ = clock_->now();
            first = false;
            const std::size_t before = ready_count_;
            expire_heads(dead);
            if (ready_count_ > 0) {
                got.emplace(make_delivery(take_head(), 0, mode == ack_mode::manual, {}));
                expire_heads(dead); // the new head, as after a get
            } else if (ready_count_ == before) {
                // Nothing to take and nothing let go of: wait. Nothing is held across the
                // wait, so a broker destroyed meanwhile (which closes the queue and wakes
                // this) is never touched on waking.
                if (std::chrono::steady_clock::now() >= deadline) return got;
                ++waiters_;
                (void)available_.wait_until(lock, deadline);
                --waiters_;
                continue;
            }
            // Heads expired: their dead letters go now, and the dropped ones are released
            // as this scope ends, before any wait; holding them through the wait would keep
            // them from their dead-letter queue for as long as it lasts.
            lock.unlock();
            hand_over(dead);
        }
        if (got) return got;
    }
}

// ---------------------------------------------------------------------------------------
// consumers

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::add_consumer(std::uint64_t id, consumer_options options, callback_type callback)
    -> detail::ref_ptr<consumer> {
    // Made before the lock, so that a refusal destroys the callback after the lock is released.
    auto made = detail::make_ref<consumer>(id, std::move(options), std::move(callback));
    const consumer_options& wanted = made->options;
    std::lock_guard lock(mutex_);
    if (closed_) detail::raise(reply_code::not_found, "no queue " + detail::quoted(name_));
    const bool held_exclusively = std::any_of(consumers_.begin(), consumers_.end(),
                                              [](const auto& c) { return c->options.exclusive; });
    // A single-active-consumer queue refuses exclusive consumers outright, as RabbitMQ does
    // (rabbit_amqqueue_process: exclusive_consume_unavailable).
    if (held_exclusively ||
        (wanted.exclusive && (!consumers_.empty() || arguments_.single_active_consumer))) {
        detail::raise(reply_code::access_refused, "queue " + detail::quoted(name_) + " in exclusive use");
    }
    for (const auto& c : consumers_) {
        if (c->options.tag == wanted.tag) {
            detail::raise(reply_code::not_allowed, "attempt to reuse consumer tag " + detail::quoted(wanted.tag));
        }
    }
    consumers_.push_back(made);
    if (arguments_.expires) last_used_ = clock_->now();
    return made;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::find_consumer(std::uint64_t id) noexcept -> consumer* {
    for (auto& c : consumers_) {
        if (c->id == id) return c.get();
    }
    return nullptr;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::single_active() const noexcept -> const consumer* {
    // The earliest subscription still standing: RabbitMQ 3.10 hands over in that order.
    // One being cancelled stays listed while cancel() waits for its running callback; it
    // keeps the place (taking nothing) until its unacked messages are back, so the next
    // consumer starts with them, in order, as RabbitMQ's requeue-then-hand-over does.
    const consumer* active = nullptr;
    for (const auto& c : consumers_) {
        if (active == nullptr || c->id < active->id) active = c.get();
    }
    return active;
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
    const detail::deferred_release::scope releases_after_unlock; // the consumer, its callback and captures
    dead_letters dead;
    cancel_result result;
    {
        std::unique_lock lock(mutex_);
        auto same_id = [&](const auto& c) { return c->id == consumer_id; };
        if (closed_) {
            // Its queue was deleted, which ended it: nothing to do, except that under
            // multi_threaded a callback still running on another thread is waited for, so
            // the caller may destroy what it uses once this returns.
            if constexpr (Policy::thread_safe) {
                auto it = std::find_if(finishing_.begin(), finishing_.end(), same_id);
                if (it != finishing_.end() && (*it)->runner != std::this_thread::get_id()) {
                    detail::ref_ptr<consumer> keep = *it;
                    idle_.wait(lock, [&] { return !keep->busy; });
                }
            }
            return {};
        }
        auto it = std::find_if(consumers_.begin(), consumers_.end(), same_id);
        if (it == consumers_.end()) return {};
        detail::ref_ptr<consumer> c = *it;
        c->cancelled = true;
        if constexpr (Policy::thread_safe) {
            // Its callback may be running on another thread: let it finish, so the caller
            // may destroy what the callback uses once the subscription has ended.
            if (c->busy && c->runner != std::this_thread::get_id()) {
                idle_.wait(lock, [&] { return !c->busy; });
                if (closed_) return {}; // the queue was closed meanwhile, which ended it
            }
        }
        // Return its unacknowledged messages, except one whose callback is still running:
        // finish() returns that one, so the callback can still settle it.
        for (std::size_t i = 0; i < unacked_.size(); ++i) {
            unacked_entry& u = unacked_[i];
            if (u.owner == consumer_id && u.entry.message && !(c->busy && u.tag == c->in_flight)) {
                release_unacked(i, false, true, dead);
            }
        }
        drop_settled_front();
        drop_head_while_over_limit(dead);
        // Releasing its messages may have moved it in the rotation (unblock), so find it
        // again; the queue's reference is deferred, as the callback it holds is user code.
        auto at = std::find_if(consumers_.begin(), consumers_.end(), [&](const auto& x) { return x == c; });
        detail::deferred_release::defer(std::move(*at));
        consumers_.erase(at);
        detail::deferred_release::defer(std::move(c));
        if (consumers_.empty() && arguments_.expires) last_used_ = clock_->now();
        result = {true, consumers_.empty()};
    }
    hand_over(dead);
    return result;
}

template <class Message, threading_policy Policy>
bool basic_queue<Message, Policy>::can_take(consumer& c) noexcept {
    // A cancelled consumer is still listed while cancel() waits for its callback: it must
    // get nothing more, or that wait could go on as long as messages arrive.
    if (c.busy || c.cancelled || c.blocked) return false;
    if (c.options.ack == ack_mode::manual && c.options.prefetch != 0 && c.unacked >= c.options.prefetch) {
        c.blocked = true; // out of the rotation until an ack frees it
        return false;
    }
    return true;
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::pick_consumer() noexcept {
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    if (arguments_.single_active_consumer) {
        const consumer* active = single_active();
        if (active == nullptr) return none;
        auto it = std::find_if(consumers_.begin(), consumers_.end(), [&](const auto& c) { return c.get() == active; });
        return can_take(**it) ? static_cast<std::size_t>(it - consumers_.begin()) : none;
    }
    // consumers_ is the rotation, front first (rabbit_queue_consumers keeps the same
    // order); the first of the highest priority that can take a message is served.
    std::size_t best = none;
    for (std::size_t index = 0; index < consumers_.size(); ++index) {
        consumer& c = *consumers_[index];
        if (!can_take(c)) continue;
        if (best == none || c.options.priority > consumers_[best]->options.priority) best = index;
    }
    return best;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::next_callback() -> std::optional<pending_callback> {
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    std::optional<pending_callback> picked;
    {
        std::lock_guard lock(mutex_);
        if (closed_ || ready_count_ == 0 || consumers_.empty()) return std::nullopt;
        expire_heads(dead);
        const std::size_t index = ready_count_ == 0 ? static_cast<std::size_t>(-1) : pick_consumer();
        if (index < consumers_.size()) {
            consumer& c = *consumers_[index];
            const bool manual = c.options.ack == ack_mode::manual;
            c.busy = true;
            if constexpr (Policy::thread_safe) c.runner = std::this_thread::get_id();
            delivery_type d = make_delivery(take_head(), c.id, manual, c.tag);
            if (manual) {
                ++c.unacked;
                c.in_flight = d.delivery_tag();
            }
            expire_heads(dead); // the new head, as after a get
            detail::ref_ptr<consumer> served = consumers_[index];
            // The consumer just served goes to the back of the rotation.
            std::rotate(consumers_.begin() + static_cast<std::ptrdiff_t>(index),
                        consumers_.begin() + static_cast<std::ptrdiff_t>(index) + 1, consumers_.end());
            picked.emplace(pending_callback{std::move(served), std::move(d)});
        }
    }
    hand_over(dead);
    return picked;
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::finish(consumer& c) {
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    {
        std::lock_guard lock(mutex_);
        c.busy = false;
        if constexpr (Policy::thread_safe) idle_.notify_all();
        if (closed_) {
            auto it = std::find_if(finishing_.begin(), finishing_.end(), [&](const auto& x) { return x.get() == &c; });
            if (it != finishing_.end()) {
                detail::deferred_release::defer(std::move(*it));
                finishing_.erase(it);
            }
        } else if (c.cancelled && c.in_flight != 0) {
            // The subscription ended during the callback: its message goes back now.
            const std::size_t i = find_unacked(c.in_flight);
            if (i != unacked_.size()) release_unacked(i, false, true, dead);
            drop_settled_front();
            drop_head_while_over_limit(dead);
        }
        c.in_flight = 0;
    }
    hand_over(dead);
}

// ---------------------------------------------------------------------------------------
// settlement

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
void basic_queue<Message, Policy>::release_unacked(std::size_t index, bool ack, bool requeue, dead_letters& dead) {
    unacked_entry& u = unacked_[index];
    if (consumer* c = find_consumer(u.owner)) {
        --c->unacked;
        if (c->blocked) unblock(*c);
    }
    --unacked_count_;
    if (ack) {
        ++counters_.acked;
        detail::deferred_release::defer(std::move(u.entry.message)); // perhaps its last reference
    } else if (requeue) {
        ++counters_.requeued;
        this->requeue(std::move(u.entry));
        u.entry.message.reset();
    } else {
        let_go(std::move(u.entry.message), death_reason::rejected, dead);
        u.entry.message.reset();
    }
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::requeue(ready_entry&& entry) {
    entry.redelivered = true;
    // Back to its original position: each priority's messages are kept in arrival order.
    auto& ready = levels_[level_of(*entry.message)];
    std::size_t lo = 0;
    std::size_t hi = ready.size();
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (ready[mid].sequence < entry.sequence) lo = mid + 1;
        else hi = mid;
    }
    ++ready_count_;
    ready_bytes_ += entry.message->body_bytes;
    ready.insert(lo, std::move(entry));
    notify_one();
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::drop_settled_front() {
    while (!unacked_.empty() && !unacked_.front().entry.message) unacked_.pop_front();
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::settle(std::uint64_t tag, bool multiple, bool ack, bool requeue) {
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    {
        std::lock_guard lock(mutex_);
        if (closed_) return;
        const std::size_t index = find_unacked(tag);
        if (index == unacked_.size()) {
            detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag));
        }
        const std::uint64_t owner = unacked_[index].owner;
        if (multiple) {
            for (std::size_t i = 0; i < index; ++i) {
                if (unacked_[i].owner == owner && unacked_[i].entry.message) release_unacked(i, ack, requeue, dead);
            }
        }
        release_unacked(index, ack, requeue, dead);
        drop_settled_front();
        if (requeue) { // as rabbit_amqqueue_process:requeue_and_run
            drop_head_while_over_limit(dead);
            expire_heads(dead);
        }
    }
    hand_over(dead);
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::purge() {
    const detail::deferred_release::scope releases_after_unlock; // the messages' bodies
    std::lock_guard lock(mutex_);
    const std::size_t n = ready_count_;
    for (auto& ready : levels_) {
        while (!ready.empty()) detail::deferred_release::defer(std::move(ready.pop_front().message));
    }
    ready_count_ = 0;
    ready_bytes_ = 0;
    counters_.purged += n;
    return n;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::close_locked(std::size_t* ready_dropped) -> ended_consumers {
    closed_ = true;
    if (ready_dropped != nullptr) *ready_dropped = ready_count_;
    counters_.purged += ready_count_ + unacked_count_;
    for (auto& ready : levels_) {
        while (!ready.empty()) detail::deferred_release::defer(std::move(ready.pop_front().message));
    }
    ready_count_ = 0;
    ready_bytes_ = 0;
    while (!unacked_.empty()) detail::deferred_release::defer(std::move(unacked_.pop_front().entry.message));
    unacked_count_ = 0;
    ended_consumers ended;
    ended.swap(consumers_); // out of the queue before anything can reach it
    for (auto& c : ended) {
        c->cancelled = true;
        if constexpr (Policy::thread_safe) {
            if (c->busy) finishing_.push_back(c);
        }
    }
    if constexpr (Policy::thread_safe) available_.notify_all();
    return ended;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::close(std::size_t* ready_dropped) -> ended_consumers {
    const detail::deferred_release::scope releases_after_unlock;
    std::lock_guard lock(mutex_);
    if (closed_) return {};
    return close_locked(ready_dropped);
}

template <class Message, threading_policy Policy>
bool basic_queue<Message, Policy>::close_if_unused(time_point unused_since_before) {
    const detail::deferred_release::scope releases_after_unlock;
    std::lock_guard lock(mutex_);
    if (closed_ || !consumers_.empty()) return false;
    // With a time, only if x-expires has passed by then (the queue may have been used since
    // the caller looked).
    if (unused_since_before != time_point::max() && !unused_too_long_locked(unused_since_before)) return false;
    (void)close_locked(nullptr); // no consumers: nobody to notify
    return true;
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
