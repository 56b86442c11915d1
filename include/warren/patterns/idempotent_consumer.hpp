#pragma once
/// @file patterns/idempotent_consumer.hpp
/// idempotent_consumer: a queue's consumer that handles each message_id once, however
/// often the message comes (the idempotent consumer pattern), built on the public broker
/// API and basic_deduplicator.

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "../broker.hpp"
#include "../config.hpp"
#include "../options.hpp"
#include "deduplicator.hpp"

namespace warren {

/// How an idempotent_consumer consumes its queue.
struct idempotent_consumer_options {
    /// Messages it holds unacknowledged at once (0: no limit).
    std::uint16_t prefetch = 0;
    /// The consumer's tag; empty: generated.
    std::string tag{};
    /// A message whose handler threw goes back to the queue (true), to be handled again on
    /// its redelivery, or is rejected without requeue, dead-lettered where the queue has a
    /// dead-letter exchange (false). A handler that always throws makes a requeued message
    /// come back as long as dispatch() runs; see requeue_once.
    bool requeue_on_error = true;
    /// With requeue_on_error, only a first delivery is requeued: a message that fails again
    /// once redelivered (redelivered() set) is rejected without requeue, so a poison message
    /// is tried twice, then dead-lettered, instead of forever.
    bool requeue_once = false;
    /// The capacity and retention of the deduplicator the consumer makes for itself (not
    /// used when it is given one).
    deduplicator_options deduplicator{};
};

/// A consumer that runs its handler once per message_id: a message published twice with
/// one id, requeued, or redelivered to it after another consumer sharing its deduplicator
/// ended before its ack is handled the first time and only acked the times after.
///
/// It subscribes to the queue with manual acks. For each message it claims the
/// message_id in its deduplicator (basic_deduplicator::try_begin):
/// - claim::first: runs the handler, records the id as handled (complete()), then acks;
/// - claim::duplicate: acks without running the handler (duplicates());
/// - claim::in_progress: another consumer sharing the deduplicator is handling that id
///   right now (on another thread): rejects with requeue, so the message comes back
///   and is then a duplicate, or a first if that handling failed (requeued_in_progress());
/// - a message with no message_id (absent or empty) is handled every time it comes
///   (without_message_id()): nothing tells its deliveries apart.
///
/// On warren::broker an id is in progress elsewhere only when a handler calls dispatch()
/// and, inside it, a consumer sharing its deduplicator meets a copy of its message: that
/// copy comes back within the nested dispatch() until its budget is spent, so bound it
/// (dispatch(n)).
///
/// A handler that throws: the claim is given up (abandon()), so the redelivery is handled
/// again; the message is rejected, requeued or not as idempotent_consumer_options says;
/// then the exception goes on as a consumer callback's does (to the broker's error
/// handler, or out of dispatch()), and the consumer stays subscribed.
///
/// The handler takes `const delivery&`, or `delivery&` to settle the message itself (say,
/// move it out to ack later): the consumer settles only a delivery still pending when the
/// handler returns, and records the id as handled either way.
///
/// Deduplication holds within one deduplicator. By default each consumer makes its own
/// (options.deduplicator, on the broker's clock, so retention follows a manual_clock); give
/// several consumers of one queue, or a consumer that replaces one that ended, the same
/// deduplicator to deduplicate across them: the record of what was handled belongs with
/// the service's data, not with one consumer.
/// @code
/// warren::idempotent_consumer payments(broker, "payments", [&](const warren::delivery& d) {
///     charge(d.body());                 // once per message_id
/// });
/// broker.dispatch();
/// const std::size_t repeats = payments.duplicates(); // acked unhandled
/// @endcode
/// Thread safety: the counters are thread-safe; the handler runs where dispatch() runs
/// (never twice at once for one consumer). With concurrent_broker the deduplicator is a
/// concurrent_deduplicator, so consumers on several threads may share it. Destroying the
/// consumer ends its subscription (waiting for a handler running on another thread); its
/// unacknowledged messages go back to the queue. The broker, and a deduplicator given to
/// it, must outlive the consumer.
template <class Broker>
class idempotent_consumer {
public:
    using broker_type = Broker;
    using delivery = typename Broker::delivery;
    using deduplicator_type = basic_deduplicator<typename Broker::policy_type>;
    /// The handler as stored.
    using handler = std::function<void(delivery&)>;

    /// Subscribes to `queue` with a deduplicator of its own, made from
    /// options.deduplicator on the broker's clock. Unknown queue: not_found.
    template <class Fn>
        requires std::invocable<Fn&, delivery&>
    idempotent_consumer(Broker& owner, std::string_view queue, Fn fn, idempotent_consumer_options options = {})
        : owned_(std::in_place, options.deduplicator, owner.time_source()), seen_(*owned_),
          handler_(std::move(fn)), requeue_on_error_(options.requeue_on_error), requeue_once_(options.requeue_once) {
        subscribe(owner, queue, std::move(options));
    }

    /// Subscribes to `queue`, deduplicating through `shared` (which must outlive the
    /// consumer; options.deduplicator is unused). Unknown queue: not_found.
    template <class Fn>
        requires std::invocable<Fn&, delivery&>
    idempotent_consumer(Broker& owner, std::string_view queue, deduplicator_type& shared, Fn fn,
                        idempotent_consumer_options options = {})
        : seen_(shared), handler_(std::move(fn)), requeue_on_error_(options.requeue_on_error),
          requeue_once_(options.requeue_once) {
        subscribe(owner, queue, std::move(options));
    }

    idempotent_consumer(const idempotent_consumer&) = delete;
    idempotent_consumer& operator=(const idempotent_consumer&) = delete;
    /// Ends the subscription (see release()).
    ~idempotent_consumer() { subscription_.release(); }

    /// Ends the subscription now: its unacknowledged messages go back to the queue, and no
    /// handler runs after it returns. Does nothing if it already ended. Owner thread.
    void release() noexcept { subscription_.release(); }

    /// Messages whose handler ran and returned, those without a message_id included.
    /// Thread-safe.
    [[nodiscard]] std::size_t handled() const noexcept { return handled_.load(); }
    /// Messages acked without running the handler: their id was handled before.
    /// Thread-safe.
    [[nodiscard]] std::size_t duplicates() const noexcept { return duplicates_.load(); }
    /// Messages requeued because their id was being handled elsewhere at that moment.
    /// Thread-safe.
    [[nodiscard]] std::size_t requeued_in_progress() const noexcept { return in_progress_.load(); }
    /// Messages handled that had no message_id, so could not be deduplicated. Thread-safe.
    [[nodiscard]] std::size_t without_message_id() const noexcept { return without_id_.load(); }
    /// Messages whose handler threw (or whose id could not be recorded). Thread-safe.
    [[nodiscard]] std::size_t failures() const noexcept { return failures_.load(); }
    /// The deduplicator it uses (its own, or the one it was given). Thread-safe as the
    /// deduplicator is.
    [[nodiscard]] deduplicator_type& seen() noexcept { return seen_; }
    /// The consumer's tag. Thread-safe.
    [[nodiscard]] const std::string& tag() const noexcept { return subscription_.tag(); }
    /// Whether it is still consuming: false after release() or once its queue was deleted.
    /// Owner thread.
    [[nodiscard]] bool active() const { return subscription_.active(); }

private:
    void subscribe(Broker& owner, std::string_view queue, idempotent_consumer_options options) {
        subscription_ = owner.subscribe(
            queue, [this](delivery& d) { consume(d); },
            {.tag = std::move(options.tag), .ack = ack_mode::manual, .prefetch = options.prefetch});
    }

    void consume(delivery& d) {
        const std::optional<std::string>& message_id = d.properties().message_id;
        if (!message_id || message_id->empty()) {
            run(d, {});
            ++without_id_;
            return;
        }
        // The id is copied: a handler that moves the delivery out takes its properties along.
        const std::string id = *message_id;
        switch (seen_.try_begin(id)) {
        case claim::first:
            run(d, id);
            return;
        case claim::duplicate:
            ++duplicates_;
            d.ack();
            return;
        case claim::in_progress:
            ++in_progress_;
            d.reject(true);
            return;
        }
    }

    /// Runs the handler for a claimed id (or none); settles the delivery either way.
    void run(delivery& d, std::string_view id) {
#if WARREN_EXCEPTIONS
        try {
            handler_(d);
            // Recorded before any ack: a handler that moved the delivery out may never
            // settle it (its consumer ends first), and the redelivery must then be known as
            // a duplicate. Inside the try: an id left claimed would requeue its copies forever.
            seen_.complete(id);
        } catch (...) {
            ++failures_;
            seen_.abandon(id); // before the reject: a requeued message may be redelivered at once, elsewhere
            if (d.pending()) d.reject(requeue_on_error_ && !(requeue_once_ && d.redelivered()));
            throw;
        }
#else
        handler_(d);
        seen_.complete(id);
#endif
        ++handled_;
        if (d.pending()) d.ack();
    }

    std::optional<deduplicator_type> owned_; // before seen_, which may refer to it
    deduplicator_type& seen_;
    handler handler_;
    bool requeue_on_error_;
    bool requeue_once_;
    std::atomic<std::size_t> handled_{0};
    std::atomic<std::size_t> duplicates_{0};
    std::atomic<std::size_t> in_progress_{0};
    std::atomic<std::size_t> without_id_{0};
    std::atomic<std::size_t> failures_{0};
    typename Broker::subscription subscription_; // last: ends before the members above
};

} // namespace warren
