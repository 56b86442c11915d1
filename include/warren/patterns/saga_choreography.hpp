#pragma once
/// @file patterns/saga_choreography.hpp
/// The choreographed saga: no coordinator. Each participant listens on a topic exchange
/// for the event that triggers its local transaction, publishes an event when it succeeds
/// or fails, and listens for the failure events that concern it, on which it compensates
/// its own local transaction (if it made one). Built on the public broker API only; the
/// orchestrated form is in saga.hpp.
///
/// The wire convention: an event's routing key is its name ("order.created",
/// "payment.failed"), its correlation_id the saga id and its message_id
/// "<saga id>/<event name>", so that a participant deduplicates a redelivered event (and
/// an event published again is the same event); a failure event carries the reason in its
/// x-error header (and as its body when the body can hold text).

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../broker.hpp"
#include "../config.hpp"
#include "../message.hpp"
#include "../options.hpp"
#include "deduplicator.hpp"
#include "saga.hpp"

namespace warren {

/// An event as a choreographed participant sees it: its saga, its name (the routing key)
/// and its body. For the action of a saga's initiator (saga_choreography_participant::
/// start) the name is empty and the body is what start() was given.
template <class Body = std::string>
struct saga_event {
    const std::string& saga_id;
    const std::string& name;
    const Body& body;
};

/// What one participant of a choreographed saga does: on which event, which events it
/// publishes, and which failure events make it compensate. Event names are exact routing
/// keys (no wildcards), so that the participant can tell which one it got.
/// @code
/// warren::saga_role<> payment{
///     .name = "payment",
///     .on = "inventory.reserved",
///     .action = [&](const warren::saga_event<>& e) -> warren::saga_outcome<> { return charge(e.body); },
///     .succeeded = "payment.completed",
///     .failed = "payment.failed",
///     .compensate_on = {"shipment.failed"},
///     .compensation = [&](const warren::saga_event<>&, const std::string& charged) { refund(charged); },
///     .compensated = "payment.refunded",
/// };
/// @endcode
/// Thread safety: a value type; its functions run where the participant's queue is consumed.
template <class Body = std::string>
struct saga_role {
    /// The participant's name; its queue is "<exchange>.<name>".
    std::string name;
    /// The event that triggers its action; empty: only start() does (the saga's initiator).
    std::string on{};
    /// Its local transaction: a result, or saga_outcome::failure. An exception it throws
    /// rejects the event (see saga_choreography_participant).
    std::function<saga_outcome<Body>(const saga_event<Body>&)> action{};
    /// Published with the action's result when it succeeds; empty: nothing.
    std::string succeeded{};
    /// Published with the reason when the action fails; empty: nothing.
    std::string failed{};
    /// The failure events on which it compensates its own completed transaction.
    std::vector<std::string> compensate_on{};
    /// Undoes its transaction; receives the failure event and its action's result.
    std::function<void(const saga_event<Body>&, const Body& result)> compensation{};
    /// Published with the action's result once compensated; empty: nothing.
    std::string compensated{};
};

/// Where a choreographed participant is in one saga.
enum class saga_role_state : std::uint8_t {
    none,        ///< it has not heard of the saga
    acting,      ///< its action is running
    done,        ///< its action succeeded; it can be compensated
    failed,      ///< its action failed (nothing to compensate)
    compensated, ///< its action succeeded and was compensated
    aborted,     ///< a failure event came before its trigger: its action will not run
};

/// How a saga_choreography_participant consumes its queue.
struct saga_choreography_options {
    /// Events held unacknowledged at once (0: no limit).
    std::uint16_t prefetch = 1;
    /// Which message ids it remembers, and for how long (on the broker's clock).
    deduplicator_options deduplication{};
    /// Its queue's options, e.g. a dead-letter exchange for the events it rejects.
    queue_options queue{};
};

/// Publishes event `name` of saga `saga_id` with `body` to topic exchange `exchange` of `to`,
/// with the wire convention of this header (a `failure` reason sets x-error). Returns how
/// many queues got it. Thread-safe as broker.publish is.
template <class Broker>
std::size_t publish_saga_event(Broker& to, std::string_view exchange, std::string_view saga_id,
                               std::string_view name, typename Broker::body_type body,
                               const std::optional<std::string>& failure = std::nullopt) {
    typename Broker::message_type event{.routing_key = std::string(name), .body = std::move(body)};
    std::string id(saga_id);
    event.properties.message_id = id + "/" + std::string(name);
    event.properties.correlation_id = std::move(id);
    if (failure) event.properties.headers.set(saga_wire::error_header, *failure);
    return to.publish(exchange, std::move(event));
}

/// One participant of choreographed sagas: declares the topic exchange (if need be) and
/// its queue "<exchange>.<name>", bound to its trigger and its compensating events, and
/// consumes it with manual acks.
///
/// On its trigger event it runs its action once per saga and publishes `succeeded` (with
/// the result) or `failed` (with the reason); on one of its compensating events it runs
/// its compensation once, with its action's result, if its action succeeded, then
/// publishes `compensated`. Events are deduplicated by message_id, and each saga's state
/// is kept (state()), so a redelivered or repeated event, or a second failure event of the
/// same saga, does nothing twice. A failure event that comes before the trigger (events
/// of one saga may take other paths) marks the saga aborted here: the trigger, if it comes
/// later, is acknowledged without running the action. A failure event that comes while
/// the action runs (on another thread) makes the action compensate as soon as it ends,
/// without publishing `succeeded`.
///
/// Events are acked after what they cause is published. An action or compensation that
/// throws: the event's id is forgotten, the event is rejected without requeue
/// (dead-lettered if the queue has a dead-letter exchange) and the exception goes on as a
/// consumer callback's does. An event without a correlation_id is acked and counted
/// (ignored()).
/// @code
/// warren::saga_choreography_participant<warren::broker> payments(broker, "orders", payment);
/// warren::saga_choreography_participant<warren::broker> orders(broker, "orders", order_role);
/// (void)orders.start("order-1", "2 books");   // the initiator's action, then its event
/// broker.dispatch();                          // the others react, event by event
/// @endcode
/// Thread safety: start(), state() and the counters are thread-safe on concurrent_broker;
/// the role's functions run where the queue is consumed, or in start(). Destroying it ends
/// its subscription (its unacknowledged events go back to the queue); the queue stays.
/// The broker must outlive it.
template <class Broker>
class saga_choreography_participant {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    using role_type = saga_role<body_type>;

    /// Declares topic exchange `exchange` (redeclaring is harmless) and the participant's
    /// queue, binds it, and subscribes.
    saga_choreography_participant(Broker& owner, std::string exchange, role_type role,
                                  saga_choreography_options options = {})
        : broker_(owner), exchange_(std::move(exchange)), role_(std::move(role)),
          seen_(options.deduplication, owner.time_source()) {
        WARREN_ASSERT(static_cast<bool>(role_.action), "a saga role needs an action");
        broker_.declare_exchange(exchange_, "topic");
        queue_ = broker_.declare_queue(exchange_ + "." + role_.name, options.queue);
        if (!role_.on.empty()) broker_.bind_queue(queue_, exchange_, role_.on);
        for (const auto& event : role_.compensate_on) broker_.bind_queue(queue_, exchange_, event);
        subscription_ = broker_.subscribe(
            queue_, [this](delivery& d) { on_event(d); }, {.ack = ack_mode::manual, .prefetch = options.prefetch});
    }
    saga_choreography_participant(const saga_choreography_participant&) = delete;
    saga_choreography_participant& operator=(const saga_choreography_participant&) = delete;
    ~saga_choreography_participant() { subscription_.release(); }

    /// Starts saga `saga_id` here, as its initiator: runs the action with `body` (the
    /// event's name empty) and publishes its outcome event. Returns false, doing nothing,
    /// if this participant already knows the saga. Thread-safe on concurrent_broker.
    bool start(const std::string& saga_id, body_type body) {
        {
            std::lock_guard guard(lock_);
            auto [it, inserted] = sagas_.try_emplace(saga_id);
            if (!inserted && it->second.state != saga_role_state::none) return false; // none: a start that threw
            it->second.state = saga_role_state::acting;
        }
        const std::string none;
        act(saga_id, saga_event<body_type>{saga_id, none, body});
        return true;
    }

    /// Where this participant is in saga `saga_id`. Thread-safe on concurrent_broker.
    [[nodiscard]] saga_role_state state(std::string_view saga_id) const {
        std::lock_guard guard(lock_);
        const auto it = sagas_.find(saga_id);
        return it == sagas_.end() ? saga_role_state::none : it->second.state;
    }
    /// The result of its action in saga `saga_id`, if it succeeded. Thread-safe on
    /// concurrent_broker.
    [[nodiscard]] std::optional<body_type> result(std::string_view saga_id) const {
        std::lock_guard guard(lock_);
        const auto it = sagas_.find(saga_id);
        if (it == sagas_.end() || !it->second.result) return std::nullopt;
        return it->second.result;
    }

    /// Its queue's name. Thread-safe.
    [[nodiscard]] const std::string& queue() const noexcept { return queue_; }
    /// Actions run. Thread-safe.
    [[nodiscard]] std::size_t actions() const noexcept { return actions_.load(); }
    /// Compensations run. Thread-safe.
    [[nodiscard]] std::size_t compensations() const noexcept { return compensations_.load(); }
    /// Events acked unhandled because their message_id was handled before. Thread-safe.
    [[nodiscard]] std::size_t duplicates() const noexcept { return duplicates_.load(); }
    /// Events that changed nothing: a trigger of a saga aborted or already acted on, a
    /// failure event with nothing (more) to compensate, an event without a saga id.
    /// Thread-safe.
    [[nodiscard]] std::size_t ignored() const noexcept { return ignored_.load(); }

private:
    struct entry {
        saga_role_state state = saga_role_state::none;
        std::optional<body_type> result;
        bool compensate_when_done = false; ///< a failure event came while acting
    };

    void on_event(delivery& d) {
        const auto& props = d.properties();
        if (!props.correlation_id) {
            ++ignored_;
            d.ack();
            return;
        }
        const std::string id = props.message_id.value_or(std::string());
        switch (seen_.try_begin(id)) {
        case claim::duplicate:
            ++duplicates_;
            d.ack();
            return;
        case claim::in_progress: // the same event on another thread, which handles it
            ++duplicates_;
            d.ack();
            return;
        case claim::first:
            break;
        }
        WARREN_TRY {
            handle(d);
        }
        WARREN_CATCH_ALL {
            seen_.abandon(id);
            if (d.pending()) d.reject(false);
            WARREN_RETHROW;
        }
        seen_.complete(id);
        d.ack();
    }

    void handle(const delivery& d) {
        const std::string& saga = *d.properties().correlation_id;
        const std::string name(d.routing_key());
        const saga_event<body_type> event{saga, name, d.body()};
        if (!role_.on.empty() && name == role_.on) {
            {
                std::lock_guard guard(lock_);
                entry& e = sagas_[saga];
                if (e.state != saga_role_state::none) { // aborted, or acted on already
                    ++ignored_;
                    return;
                }
                e.state = saga_role_state::acting;
            }
            act(saga, event);
            return;
        }
        for (const auto& failure : role_.compensate_on) {
            if (name == failure) {
                compensate(saga, event);
                return;
            }
        }
        ++ignored_; // bound to nothing it knows (a binding added by hand)
    }

    /// Runs the action (state acting) and publishes its outcome.
    void act(const std::string& saga, const saga_event<body_type>& event) {
        saga_outcome<body_type> out;
#if WARREN_EXCEPTIONS
        try {
            out = role_.action(event);
        } catch (...) {
            // Not acted: the redelivery may run it (or, if the saga failed meanwhile, not).
            std::lock_guard guard(lock_);
            entry& e = sagas_[saga];
            e.state = e.compensate_when_done ? saga_role_state::aborted : saga_role_state::none;
            throw;
        }
#else
        out = role_.action(event);
#endif
        ++actions_;
        bool undo_now = false;
        {
            std::lock_guard guard(lock_);
            entry& e = sagas_[saga];
            undo_now = e.compensate_when_done;
            if (out.ok()) {
                e.result = out.result();
                e.state = undo_now ? saga_role_state::compensated : saga_role_state::done;
            } else {
                e.state = saga_role_state::failed;
            }
        }
        if (undo_now) { // the saga failed meanwhile: undo at once, tell nobody it succeeded
            if (out.ok()) run_compensation(saga, event, out.result());
            return;
        }
        if (out.ok()) {
            if (!role_.succeeded.empty()) (void)publish_saga_event(broker_, exchange_, saga, role_.succeeded, out.result());
        } else if (!role_.failed.empty()) {
            body_type reason{};
            if constexpr (std::constructible_from<body_type, const std::string&>) reason = body_type(out.error());
            (void)publish_saga_event(broker_, exchange_, saga, role_.failed, std::move(reason), out.error());
        }
    }

    void compensate(const std::string& saga, const saga_event<body_type>& failure) {
        std::optional<body_type> result;
        {
            std::lock_guard guard(lock_);
            entry& e = sagas_[saga];
            switch (e.state) {
            case saga_role_state::none: // before the trigger: the action must not run later
                e.state = saga_role_state::aborted;
                ++ignored_;
                return;
            case saga_role_state::acting:
                e.compensate_when_done = true;
                return;
            case saga_role_state::done:
                e.state = saga_role_state::compensated; // claimed here: a second failure event finds it done
                result = e.result;
                break;
            default: // failed, compensated or aborted: nothing (more) to undo
                ++ignored_;
                return;
            }
        }
        WARREN_TRY {
            run_compensation(saga, failure, *result);
        }
        WARREN_CATCH_ALL {
            std::lock_guard guard(lock_);
            sagas_[saga].state = saga_role_state::done; // still to undo: a redelivery tries again
            WARREN_RETHROW;
        }
    }

    void run_compensation(const std::string& saga, const saga_event<body_type>& failure, const body_type& result) {
        if (role_.compensation) role_.compensation(failure, result);
        ++compensations_;
        if (!role_.compensated.empty()) (void)publish_saga_event(broker_, exchange_, saga, role_.compensated, result);
    }

    Broker& broker_;
    std::string exchange_;
    role_type role_;
    std::string queue_;
    basic_deduplicator<typename Broker::policy_type> seen_;
    mutable typename Broker::policy_type::mutex lock_; // guards the sagas
    std::map<std::string, entry, std::less<>> sagas_;
    std::atomic<std::size_t> actions_{0};
    std::atomic<std::size_t> compensations_{0};
    std::atomic<std::size_t> duplicates_{0};
    std::atomic<std::size_t> ignored_{0};
    typename Broker::subscription subscription_; // last: ends before the members above
};

} // namespace warren
