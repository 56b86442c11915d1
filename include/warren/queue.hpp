#pragma once
/// @file queue.hpp
/// basic_queue: a queue's rules over its three stores (ready messages, consumers, unacked
/// deliveries): prefetch, acknowledgements, TTL, length limits and what it lets go of.
/// Over 600 lines for a reason: it is one public class with its documentation, each member
/// a rule of RabbitMQ's classic queue over the stores in detail/queue/, and splitting the
/// rules apart would split the lock that makes them atomic.

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

#include "config.hpp"
#include "clock.hpp"
#include "delivery.hpp"
#include "detail/core/deferred_release.hpp"
#include "detail/core/ref_ptr.hpp"
#include "detail/core/ring.hpp"
#include "detail/core/saturate.hpp"
#include "detail/message/message_node.hpp"
#include "detail/queue/consumer_rotation.hpp"
#include "detail/queue/ready_store.hpp"
#include "detail/queue/router_gate.hpp"
#include "detail/queue/unacked_ledger.hpp"
#include "error.hpp"
#include "options.hpp"
#include "policy.hpp"
#include "queue_arguments.hpp"
#include "stats.hpp"

namespace warren {
namespace detail {
template <class Message, class Policy>
class dead_letter_router;
} // namespace detail

/// A queue: ready messages in order, the consumers that take them, and the deliveries not
/// yet settled. Applications reach queues through basic_broker; this class holds the
/// rules, over detail::ready_store (order, priorities, requeue position),
/// detail::consumer_rotation (whose turn it is) and detail::unacked_ledger (what waits for
/// an ack).
///
/// Delivery as RabbitMQ's does it: a message that arrives while no message is ready and a
/// consumer has credit (prefetch room; automatic acks always have it) is handed to that
/// consumer at once, so it is delivered (unacked under manual acks) from then on and never
/// counts against x-max-length or ages under a TTL; its callback runs at the next
/// dispatch, in arrival order. Ended before its callback ran, the consumer gives such
/// messages back: requeued (redelivered) under manual acks, restored as they were under
/// automatic ones.
///
/// Messages the queue lets go of other than by delivery (expired, over the length limit,
/// rejected) are dead letters: every operation that can let go of some appends them to
/// the `dead` it is given, and its caller hands them to the dead-letter router (or, with
/// no dead-letter exchange, the queue drops and counts them). The queue itself never
/// calls the router: it only keeps its address for the deliveries it hands out, behind
/// pass_to_router().
///
/// Lifetimes: the queue never destroys a message or a consumer while it holds its lock;
/// the references it lets go of are deferred (detail::deferred_release) and dropped once
/// the caller's locks are released, since their destructors run user code. Every member
/// that can let go of something expects the caller to hold a deferred_release::scope.
///
/// Thread safety: every member is thread-safe under multi_threaded (one mutex per queue);
/// owner thread only under single_threaded.
template <class Message, threading_policy Policy>
class basic_queue : public detail::ref_counted<Policy> {
public:
    using delivery_type = basic_delivery<Message, Policy>;
    using callback_type = std::function<void(delivery_type&)>;
    using node_type = detail::message_node<Message, Policy>;
    using consumer = detail::consumer<callback_type, Policy>;
    using router_type = detail::dead_letter_router<Message, Policy>;
    using time_point = clock::time_point;

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

    /// What became of a pushed message. `handed_synchronous`: accepted, and handed to a
    /// consumer whose callback runs inside the publish (take_synchronous).
    enum class push_result : std::uint8_t { accepted, handed_synchronous, refused, closed };

    /// A queue named `name`; `options.arguments` must already be valid (see
    /// queue_arguments::parse). Time comes from `time`; `router` is where the holders of
    /// its deliveries send what settling them lets go of.
    basic_queue(std::string name, queue_options options, const clock& time, router_type* router)
        : name_(std::move(name)), options_(std::move(options)),
          arguments_(queue_arguments::parse(options_.arguments, name_)), clock_(&time), router_(router),
          ready_(arguments_.max_priority), consumers_(arguments_.single_active_consumer),
          straight_(!arguments_.limited() && !arguments_.message_ttl) {
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
        c.unacked = unacked_.count();
        c.awaiting_callback = handed_off_.size();
        c.ready_bytes = ready_.bytes();
        c.consumers = consumers_.size();
        return c;
    }
    /// Whether the queue was deleted.
    [[nodiscard]] bool closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }
    /// Whether the consumer receives under single-active-consumer (always true without it).
    [[nodiscard]] bool is_active_consumer(std::uint64_t consumer_id) const {
        std::lock_guard lock(mutex_);
        return consumers_.is_active(consumer_id);
    }
    /// A copy of the consumers' ids and options, in rotation order.
    [[nodiscard]] std::vector<std::pair<std::uint64_t, consumer_options>> consumer_list() const {
        std::lock_guard lock(mutex_);
        std::vector<std::pair<std::uint64_t, consumer_options>> out;
        for (const auto& c : consumers_.consumers()) {
            if (!c->cancelled) out.emplace_back(c->id, c->options);
        }
        return out;
    }

    /// Appends a message, applying the length limit. Dead letters it causes (drop-head,
    /// reject-publish-dlx, expired heads) join `dead`. A synchronous consumer handed the
    /// message runs it inside the publish only if `synchronous` (else at dispatch()).
    push_result push(const detail::ref_ptr<node_type>& msg, dead_letters& dead, bool synchronous);
    /// Appends `count` messages under one lock, each as push() appends one, in order, and
    /// calls `note(push_result)` for each (no user code: the lock is held).
    template <class Note>
    void push_many(const detail::ref_ptr<node_type>* msgs, std::size_t count, dead_letters& dead, bool synchronous,
                   Note&& note) {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < count; ++i) note(push_locked(msgs[i], dead, synchronous));
    }

    /// Takes the next ready message, as AMQP basic.get does; expired heads join `dead`.
    [[nodiscard]] std::optional<delivery_type> try_get(ack_mode mode, dead_letters& dead);
    /// Takes up to `max` ready messages under one lock, each as try_get takes one, and
    /// appends them to `out`; returns how many. Room in `out` is made before any is taken,
    /// so a failure to allocate takes none.
    std::size_t try_get_many(std::size_t max, ack_mode mode, std::vector<delivery_type>& out, dead_letters& dead);

    /// Waits up to `timeout` for a message. Heads that expire meanwhile are handed to
    /// `route_now(dead_letters&)` at once, with no lock held, never kept through the wait.
    /// multi_threaded only.
    template <class Rep, class Period, class RouteNow>
        requires Policy::thread_safe
    [[nodiscard]] std::optional<delivery_type> try_get_for(std::chrono::duration<Rep, Period> timeout, ack_mode mode,
                                                           RouteNow&& route_now);

    /// Adds a consumer: refusals as for detail::consumer_rotation::check_can_join, and
    /// not_found (404) once the queue is deleted.
    detail::ref_ptr<consumer> add_consumer(std::uint64_t id, consumer_options options, callback_type callback);

    /// Ends a consumer: its unacknowledged messages return to the queue (one whose
    /// callback is running returns when the callback does, unless settled); dead letters
    /// that causes join `dead`. Returns whether it was still subscribed, and whether the
    /// queue now has no consumers. Under multi_threaded it first waits for the consumer's
    /// callback if that runs on another thread, also when the queue was deleted meanwhile;
    /// otherwise, on a deleted queue it returns at once, finding nothing to end.
    struct cancel_result {
        bool cancelled = false;
        bool last_consumer_gone = false;
    };
    cancel_result cancel(std::uint64_t consumer_id, dead_letters& dead);

    /// Picks the next message and consumer for push delivery, or nothing if no consumer can
    /// take a message now. The caller runs the callback, then calls finish().
    [[nodiscard]] std::optional<pending_callback> next_callback(dead_letters& dead);
    /// The first message handed to a synchronous consumer whose callback can run now, or
    /// nothing; as next_callback, the caller runs the callback, then calls finish().
    [[nodiscard]] std::optional<pending_callback> take_synchronous();
    /// Marks a consumer's callback as returned.
    void finish(consumer& c, dead_letters& dead);

    /// Settles `tag` (and with `multiple`, the same owner's earlier tags). Throws
    /// precondition_failed (406) for a tag that is not pending. A deleted queue accepts and
    /// ignores settlements, as RabbitMQ does.
    void settle(std::uint64_t tag, bool multiple, bool ack, bool requeue, dead_letters& dead);

    /// Removes the expired messages at the head (see detail::ready_store). Returns how many.
    std::size_t expire(dead_letters& dead);
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
    using ended_consumers = typename detail::consumer_rotation<consumer>::list;
    /// Deletes the queue: drops its messages, ends its consumers, and returns them in
    /// subscription order. Sets `ready_dropped` (if given) to the messages it dropped that no
    /// callback saw (ready, or handed to an automatic-ack consumer whose callback had not run),
    /// counted under its lock.
    ended_consumers close(std::size_t* ready_dropped = nullptr);
    /// Deletes the queue only if it has no consumer (auto-delete, x-expires): the check and
    /// the deletion are one step, so no consumer can subscribe in between. Returns whether
    /// it deleted it.
    bool close_if_unused(time_point unused_since_before = time_point::max());

    /// The dead-letter router, held open for as long as the pass lives (detail::router_gate).
    using router_pass = typename detail::router_gate<router_type, Policy>::pass;
    /// A pass to the dead-letter router, empty once the broker is going away. For the
    /// holders of deliveries and subscriptions, which may outlive the broker.
    [[nodiscard]] router_pass pass_to_router() { return router_.enter(); }
    /// Hands out no more passes, once those held on other threads have ended: the broker
    /// calls it as it is destroyed.
    void detach_router() { router_.close(); }

private:
    using ready_entry = typename detail::ready_store<node_type>::entry;

    [[nodiscard]] time_point expiry_of(const node_type& msg) const noexcept;
    [[nodiscard]] bool over_limit() const noexcept {
        return (arguments_.max_length && ready_.size() > *arguments_.max_length) ||
               (arguments_.max_length_bytes && ready_.bytes() > *arguments_.max_length_bytes);
    }
    [[nodiscard]] bool unused_too_long_locked(time_point now) const noexcept {
        return arguments_.expires && consumers_.empty() && detail::saturating_sub(now, last_used_) >= *arguments_.expires;
    }
    void let_go(detail::ref_ptr<node_type> msg, death_reason reason, dead_letters& dead);
    void drop_head_while_over_limit(dead_letters& dead);
    /// Drops the expired messages at the head; the common case, nothing can expire, inline.
    void expire_heads(dead_letters& dead) {
        if (may_expire_ && !ready_.empty()) {
            ready_.take_expired_heads(clock_->now(), [&](detail::ref_ptr<node_type> m) {
                let_go(std::move(m), death_reason::expired, dead);
            });
        }
    }
    [[nodiscard]] std::optional<delivery_type> get_locked(ack_mode mode, dead_letters& dead);
    /// A message handed to a consumer on arrival, its callback still to run.
    struct handed_off {
        detail::ref_ptr<consumer> to;
        ready_entry entry;
        std::uint64_t tag;
        bool synchronous; // its callback runs inside the publish (take_synchronous)
    };
    /// push() with the lock held.
    push_result push_locked(const detail::ref_ptr<node_type>& msg, dead_letters& dead, bool synchronous);
    /// Hands an arriving message to a consumer with credit, if one has (see the class
    /// comment): push_result::accepted, or handed_synchronous if that consumer is
    /// synchronous; nothing if none has credit.
    std::optional<push_result> hand_off(const detail::ref_ptr<node_type>& msg, time_point expires, bool synchronous);
    /// The first handed-off message whose consumer can run its callback now (of a
    /// synchronous consumer only, if `synchronous_only`).
    [[nodiscard]] std::optional<pending_callback> take_handed_off(bool synchronous_only);
    /// Gives back what was handed to `consumer_id` and not yet seen by its callback.
    void give_back_handed_off(std::uint64_t consumer_id);
    /// Counts a delivery and, when manual, records it as unacknowledged; returns its tag.
    std::uint64_t record_delivery(const ready_entry& entry, std::uint64_t owner, bool manual);
    /// Undoes record_delivery's counting for an automatic delivery its callback never saw.
    void unrecord_automatic_delivery(const ready_entry& entry) noexcept;
    /// A consumer's callback starts on delivery `tag`.
    void start_callback(consumer& c, std::uint64_t tag) noexcept;
    ended_consumers close_locked(std::size_t* ready_dropped);

    [[nodiscard]] delivery_type make_delivery(ready_entry&& entry, std::uint64_t owner, bool manual,
                                              const detail::ref_ptr<detail::shared_text<Policy>>& consumer_tag);
    /// Settles ledger record `index`: acked, requeued, or let go of as rejected.
    void release_unacked(std::size_t index, bool ack, bool requeue, dead_letters& dead);
    void notify_one() {
        if constexpr (Policy::thread_safe) {
            if (waiters_ > 0) available_.notify_one();
        }
    }

    struct no_condition {};
    using condition = std::conditional_t<Policy::thread_safe, std::condition_variable_any, no_condition>;

    const std::string name_;
    const queue_options options_;
    const queue_arguments arguments_;
    const clock* clock_;
    detail::router_gate<router_type, Policy> router_;
    mutable typename Policy::mutex mutex_;
    [[no_unique_address]] condition available_; // a message arrived (try_get_for)
    [[no_unique_address]] condition idle_;      // a callback returned (cancel)
    std::size_t waiters_ = 0;
    detail::ready_store<node_type> ready_;
    detail::unacked_ledger<ready_entry> unacked_;
    detail::consumer_rotation<consumer> consumers_;
    detail::ring<handed_off> handed_off_; // in arrival order
    // Consumers whose callback was running when the queue closed, so that cancel() can
    // still wait for it (multi_threaded); finish() takes each out.
    std::vector<detail::ref_ptr<consumer>> finishing_;
    std::uint64_t last_tag_ = 0;
    queue_counters counters_;
    time_point last_used_{};
    bool may_expire_ = false;
    // Declared without a length limit or a message TTL and never given a message with an
    // expiration: push has nothing to check but the hand-off.
    bool straight_;
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
void basic_queue<Message, Policy>::drop_head_while_over_limit(dead_letters& dead) {
    // Only drop-head drops: the reject modes refuse at the door instead.
    if (arguments_.overflow != overflow_mode::drop_head) return;
    while (!ready_.empty() && over_limit()) let_go(ready_.take_head().message, death_reason::maxlen, dead);
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::push(const detail::ref_ptr<node_type>& msg, dead_letters& dead, bool synchronous)
    -> push_result {
    std::lock_guard lock(mutex_);
    return push_locked(msg, dead, synchronous);
}

template <class Message, threading_policy Policy>
WARREN_ALWAYS_INLINE auto basic_queue<Message, Policy>::push_locked(const detail::ref_ptr<node_type>& msg, dead_letters& dead,
                                               bool synchronous) -> push_result {
    if (closed_) return push_result::closed;
    if (straight_ && !msg->ttl) { // the straight path: one test for the features this queue does not use
        if (ready_.empty()) {
            if (const auto handed = hand_off(msg, time_point::max(), synchronous)) {
                ++counters_.enqueued;
                return *handed;
            }
        }
        ready_.push(msg, time_point::max());
        ++counters_.enqueued;
        notify_one();
        return push_result::accepted;
    }
    expire_heads(dead); // what RabbitMQ's TTL timer would have removed by now
    if (arguments_.limited() && arguments_.overflow != overflow_mode::drop_head) {
        // reject-publish: refuse a message that would take the queue over its limit.
        const bool too_long = arguments_.max_length && ready_.size() + 1 > *arguments_.max_length;
        const bool too_big = arguments_.max_length_bytes && ready_.bytes() + msg->body_bytes > *arguments_.max_length_bytes;
        if (too_long || too_big) {
            ++counters_.refused;
            if (arguments_.overflow == overflow_mode::reject_publish_dlx && arguments_.dead_letter_exchange) {
                dead.push_back(dead_letter{msg, death_reason::maxlen});
            }
            return push_result::refused;
        }
    }
    const time_point expires = expiry_of(*msg);
    if (expires != time_point::max()) {
        may_expire_ = true;
        straight_ = false; // its expiry is to be checked from now on
    }
    if (ready_.empty()) {
        if (const auto handed = hand_off(msg, expires, synchronous)) {
            ++counters_.enqueued;
            return *handed;
        }
    }
    ready_.push(msg, expires);
    ++counters_.enqueued;
    drop_head_while_over_limit(dead);
    expire_heads(dead); // RabbitMQ drops expired heads after every change to the head
    notify_one();
    return push_result::accepted;
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::expire(dead_letters& dead) {
    std::lock_guard lock(mutex_);
    if (closed_) return 0;
    const std::uint64_t before = counters_.dead_lettered.expired + counters_.dropped.expired;
    expire_heads(dead);
    return static_cast<std::size_t>(counters_.dead_lettered.expired + counters_.dropped.expired - before);
}

// ---------------------------------------------------------------------------------------
// delivery

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::make_delivery(ready_entry&& entry, std::uint64_t owner, bool manual,
                                                 const detail::ref_ptr<detail::shared_text<Policy>>& consumer_tag)
    -> delivery_type {
    const std::uint64_t tag = record_delivery(entry, owner, manual);
    return delivery_type(std::move(entry.message), manual ? detail::ref_ptr<basic_queue>(this) : detail::ref_ptr<basic_queue>{}, tag,
                         entry.redelivered, consumer_tag);
}

template <class Message, threading_policy Policy>
std::uint64_t basic_queue<Message, Policy>::record_delivery(const ready_entry& entry, std::uint64_t owner, bool manual) {
    const std::uint64_t tag = last_tag_ + 1;
    if (manual) unacked_.add(tag, owner, ready_entry(entry)); // first: it may throw
    last_tag_ = tag;
    ++counters_.delivered;
    if (entry.redelivered) ++counters_.redelivered;
    if (!manual) ++counters_.acked;
    return tag;
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::unrecord_automatic_delivery(const ready_entry& entry) noexcept {
    --counters_.delivered;
    if (entry.redelivered) --counters_.redelivered;
    --counters_.acked;
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::start_callback(consumer& c, std::uint64_t tag) noexcept {
    c.busy = true;
    if constexpr (Policy::thread_safe) c.runner = std::this_thread::get_id();
    if (c.options.ack == ack_mode::manual) c.in_flight = tag;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::hand_off(const detail::ref_ptr<node_type>& msg, time_point expires,
                                            bool synchronous_allowed) -> std::optional<push_result> {
    if (consumers_.empty()) return std::nullopt;
    const std::size_t index = consumers_.pick(detail::consumer_rotation<consumer>::running::included);
    if (index == consumers_.none) return std::nullopt;
    consumer& c = *consumers_.consumers()[index];
    const bool manual = c.options.ack == ack_mode::manual;
    const std::uint64_t owner = c.id;
    // A synchronous consumer whose callback runs on this thread is not re-entered: the
    // message waits for dispatch(), so a cycle of publishes cannot go on inside one publish.
    // Once one of its messages waits for dispatch, so do the later ones: in arrival order.
    bool running_here = c.busy;
    if constexpr (Policy::thread_safe) running_here = running_here && c.runner == std::this_thread::get_id();
    const bool synchronous = c.options.synchronous && synchronous_allowed && !running_here && c.handed_for_dispatch == 0;
    handed_off& h = handed_off_.emplace_back(consumers_.served(index), ready_.bypass(msg, expires), std::uint64_t{0},
                                             synchronous); // the consumer to the back of the rotation
    WARREN_TRY {
        h.tag = record_delivery(h.entry, owner, manual);
    }
    WARREN_CATCH_ALL {
        (void)handed_off_.pop_back(); // the message's other reference is the caller's
        WARREN_RETHROW;
    }
    if (manual) ++c.unacked;
    if (c.options.synchronous && !synchronous) ++c.handed_for_dispatch;
    return synchronous ? push_result::handed_synchronous : push_result::accepted;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::take_handed_off(bool synchronous_only) -> std::optional<pending_callback> {
    // Callbacks of one consumer never run at once: skip the messages of one that is
    // running (on another thread, or further up this one's stack) or being cancelled.
    const auto can_run = [synchronous_only](const handed_off& h) {
        return !h.to->busy && !h.to->cancelled && (!synchronous_only || h.synchronous);
    };
    std::size_t at = 0;
    if (!can_run(handed_off_.front())) {
        // With one consumer every entry is its own: if the first cannot run, none can,
        // which spares a dispatcher polling while that consumer's callback runs elsewhere
        // a walk over everything handed to it.
        if (consumers_.size() == 1) return std::nullopt;
        do ++at;
        while (at < handed_off_.size() && !can_run(handed_off_[at]));
        if (at == handed_off_.size()) return std::nullopt;
    }
    for (std::size_t i = at; i > 0; --i) std::swap(handed_off_[i], handed_off_[i - 1]); // to the front, the rest in order
    handed_off& h = handed_off_.front();
    const bool manual = h.to->options.ack == ack_mode::manual;
    if (h.to->options.synchronous && !h.synchronous) --h.to->handed_for_dispatch;
    start_callback(*h.to, h.tag);
    delivery_type d(std::move(h.entry.message), manual ? detail::ref_ptr<basic_queue>(this) : detail::ref_ptr<basic_queue>{}, h.tag,
                    h.entry.redelivered, h.to->tag);
    pending_callback out{std::move(h.to), std::move(d)};
    handed_off_.drop_front();
    return out;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::take_synchronous() -> std::optional<pending_callback> {
    std::lock_guard lock(mutex_);
    if (closed_ || handed_off_.empty()) return std::nullopt;
    return take_handed_off(true);
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::give_back_handed_off(std::uint64_t consumer_id) {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < handed_off_.size(); ++i) {
        handed_off& h = handed_off_[i];
        if (h.to->id != consumer_id) {
            if (kept != i) std::swap(handed_off_[kept], h);
            ++kept;
            continue;
        }
        // Manual: the unacked record returns it (the caller's release loop); automatic: it
        // goes back as it was, since nothing saw it.
        if (h.to->options.ack == ack_mode::automatic) {
            unrecord_automatic_delivery(h.entry);
            ready_.restore(std::move(h.entry));
        }
    }
    while (handed_off_.size() > kept) {
        handed_off h = handed_off_.pop_back();
        detail::deferred_release::defer(std::move(h.entry.message));
        detail::deferred_release::defer(std::move(h.to));
    }
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::get_locked(ack_mode mode, dead_letters& dead) -> std::optional<delivery_type> {
    expire_heads(dead);
    if (ready_.empty()) return std::nullopt;
    std::optional<delivery_type> got(make_delivery(ready_.take_head(), 0, mode == ack_mode::manual, {}));
    expire_heads(dead); // the new head, as RabbitMQ checks it right after a get
    return got;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::try_get(ack_mode mode, dead_letters& dead) -> std::optional<delivery_type> {
    std::lock_guard lock(mutex_);
    if (closed_) return std::nullopt;
    if (arguments_.expires) last_used_ = clock_->now();
    return get_locked(mode, dead);
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::try_get_many(std::size_t max, ack_mode mode, std::vector<delivery_type>& out,
                                                       dead_letters& dead) {
    std::lock_guard lock(mutex_);
    if (closed_ || max == 0) return 0;
    if (arguments_.expires) last_used_ = clock_->now();
    const std::size_t n = std::min(max, ready_.size()); // at most: get_locked expires heads as it goes
    out.reserve(out.size() + n);
    std::size_t taken = 0;
    while (taken < n) {
        auto got = get_locked(mode, dead);
        if (!got) break;
        out.push_back(std::move(*got)); // no reallocation: reserved
        ++taken;
    }
    return taken;
}

template <class Message, threading_policy Policy>
template <class Rep, class Period, class RouteNow>
    requires Policy::thread_safe
auto basic_queue<Message, Policy>::try_get_for(std::chrono::duration<Rep, Period> timeout, ack_mode mode,
                                               RouteNow&& route_now) -> std::optional<delivery_type> {
    // Saturating: hours::max() means waiting as long as there is time, not an overflow.
    const auto deadline = detail::saturating_add(std::chrono::steady_clock::now(), timeout);
    bool first = true;
    for (;;) {
        const detail::deferred_release::scope releases_after_unlock;
        dead_letters dead;
        std::optional<delivery_type> got;
        {
            std::unique_lock lock(mutex_);
            if (closed_) return std::nullopt;
            if (first && arguments_.expires) last_used_ = clock_->now();
            first = false;
            const std::size_t before = ready_.size();
            got = get_locked(mode, dead);
            if (!got && before == 0) {
                // Nothing to take and nothing let go of: wait. Nothing is held across the
                // wait, so a broker destroyed meanwhile (which closes the queue and wakes
                // this) is never touched on waking.
                if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
                ++waiters_;
                (void)available_.wait_until(lock, deadline);
                --waiters_;
                continue;
            }
        }
        // Heads expired: their dead letters go now, and the dropped ones are released as
        // this scope ends, before any wait; holding them through the wait would keep them
        // from their dead-letter queue for as long as it lasts.
        if (!dead.empty()) route_now(dead);
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
    std::lock_guard lock(mutex_);
    if (closed_) detail::raise(reply_code::not_found, "no queue " + detail::quoted(name_));
    consumers_.check_can_join(made->options, name_);
    consumers_.join(made);
    if (arguments_.expires) last_used_ = clock_->now();
    return made;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::cancel(std::uint64_t consumer_id, dead_letters& dead) -> cancel_result {
    std::unique_lock lock(mutex_);
    if (closed_) {
        // Its queue was deleted, which ended it: nothing to do, except that under
        // multi_threaded a callback still running on another thread is waited for, so the
        // caller may destroy what it uses once this returns.
        if constexpr (Policy::thread_safe) {
            auto it = std::find_if(finishing_.begin(), finishing_.end(), [&](const auto& c) { return c->id == consumer_id; });
            if (it != finishing_.end() && (*it)->runner != std::this_thread::get_id()) {
                detail::ref_ptr<consumer> keep = *it;
                idle_.wait(lock, [&] { return !keep->busy; });
                detail::deferred_release::defer(std::move(keep)); // perhaps the last reference
            }
        }
        return {};
    }
    consumer* c = consumers_.find(consumer_id);
    if (c == nullptr) return {};
    c->cancelled = true;
    if constexpr (Policy::thread_safe) {
        // Its callback may be running on another thread: let it finish, so the caller may
        // destroy what the callback uses once the subscription has ended.
        if (c->busy && c->runner != std::this_thread::get_id()) {
            detail::ref_ptr<consumer> keep(c);
            idle_.wait(lock, [&] { return !c->busy; });
            detail::deferred_release::defer(std::move(keep)); // perhaps the last reference
            if (closed_) return {}; // the queue was closed meanwhile, which ended it
        }
    }
    give_back_handed_off(consumer_id);
    // Return its unacknowledged messages, except one whose callback is still running:
    // finish() returns that one, so the callback can still settle it.
    for (std::size_t i = 0; i < unacked_.size(); ++i) {
        const auto& u = unacked_[i];
        if (u.owner == consumer_id && !u.settled() && !(c->busy && u.tag == c->in_flight)) {
            release_unacked(i, false, true, dead);
        }
    }
    unacked_.drop_settled_front();
    drop_head_while_over_limit(dead);
    // The queue's reference is deferred, as the callback it holds is user code.
    detail::deferred_release::defer(consumers_.remove(*c));
    if (consumers_.empty() && arguments_.expires) last_used_ = clock_->now();
    return {true, consumers_.empty()};
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::next_callback(dead_letters& dead) -> std::optional<pending_callback> {
    std::lock_guard lock(mutex_);
    if (closed_) return std::nullopt;
    if (!handed_off_.empty()) {
        if (auto handed = take_handed_off(false)) return handed;
    }
    if (ready_.empty() || consumers_.empty()) return std::nullopt;
    expire_heads(dead);
    if (ready_.empty()) return std::nullopt;
    const std::size_t index = consumers_.pick();
    if (index == consumers_.none) return std::nullopt;
    detail::ref_ptr<consumer> c = consumers_.served(index); // to the back of the rotation
    const bool manual = c->options.ack == ack_mode::manual;
    delivery_type d = make_delivery(ready_.take_head(), c->id, manual, c->tag);
    if (manual) ++c->unacked;
    start_callback(*c, d.delivery_tag());
    expire_heads(dead); // the new head, as after a get
    return pending_callback{std::move(c), std::move(d)};
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::finish(consumer& c, dead_letters& dead) {
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
        const std::size_t i = unacked_.find(c.in_flight);
        if (i != unacked_.size()) release_unacked(i, false, true, dead);
        unacked_.drop_settled_front();
        drop_head_while_over_limit(dead);
    }
    c.in_flight = 0;
}

// ---------------------------------------------------------------------------------------
// settlement

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::release_unacked(std::size_t index, bool ack, bool requeue, dead_letters& dead) {
    if (consumer* c = consumers_.find(unacked_[index].owner)) {
        --c->unacked;
        if (c->blocked) consumers_.unblock(*c);
    }
    ready_entry entry = unacked_.settle(index);
    if (ack) {
        ++counters_.acked;
        detail::deferred_release::defer(std::move(entry.message)); // perhaps its last reference
    } else if (requeue) {
        ++counters_.requeued;
        ready_.requeue(std::move(entry));
        notify_one();
    } else {
        let_go(std::move(entry.message), death_reason::rejected, dead);
    }
}

template <class Message, threading_policy Policy>
void basic_queue<Message, Policy>::settle(std::uint64_t tag, bool multiple, bool ack, bool requeue, dead_letters& dead) {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    const std::size_t index = unacked_.find(tag);
    if (index == unacked_.size()) {
        detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag));
    }
    const std::uint64_t owner = unacked_[index].owner;
    if (multiple) {
        for (std::size_t i = 0; i < index; ++i) {
            if (unacked_[i].owner == owner && !unacked_[i].settled()) release_unacked(i, ack, requeue, dead);
        }
    }
    release_unacked(index, ack, requeue, dead);
    unacked_.drop_settled_front();
    if (requeue) { // as rabbit_amqqueue_process:requeue_and_run
        drop_head_while_over_limit(dead);
        expire_heads(dead);
    }
}

template <class Message, threading_policy Policy>
std::size_t basic_queue<Message, Policy>::purge() {
    const detail::deferred_release::scope releases_after_unlock; // the messages' bodies
    std::lock_guard lock(mutex_);
    const std::size_t n = ready_.clear();
    counters_.purged += n;
    return n;
}

template <class Message, threading_policy Policy>
auto basic_queue<Message, Policy>::close_locked(std::size_t* ready_dropped) -> ended_consumers {
    closed_ = true;
    std::size_t handed_automatic = 0; // dropped undelivered; the manual ones are unacked
    while (!handed_off_.empty()) {
        handed_off h = handed_off_.pop_front();
        if (h.to->options.ack == ack_mode::automatic) {
            unrecord_automatic_delivery(h.entry);
            ++handed_automatic;
        }
        detail::deferred_release::defer(std::move(h.entry.message));
        detail::deferred_release::defer(std::move(h.to));
    }
    counters_.purged += handed_automatic;
    const std::size_t ready = ready_.clear();
    if (ready_dropped != nullptr) *ready_dropped = ready + handed_automatic;
    counters_.purged += ready + unacked_.clear();
    ended_consumers ended = consumers_.take_all(); // out of the queue before anything can reach it
    // Their on_cancel run in subscription order, whatever the rotation's order now.
    std::sort(ended.begin(), ended.end(), [](const auto& x, const auto& y) { return x->id < y->id; });
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

} // namespace warren
