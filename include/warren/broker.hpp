#pragma once
/// @file broker.hpp
/// basic_broker: exchanges and queues by name; declare, bind, publish, consume, dispatch.
/// The facade: each member checks, locks and hands the work to one of the components
/// under detail/broker/ (docs/architecture.md draws them).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>

#include "clock.hpp"
#include "delivery.hpp"
#include "detail/broker/binding_table.hpp"
#include "detail/broker/dead_letter_router.hpp"
#include "detail/broker/declare_rules.hpp"
#include "detail/broker/dispatcher.hpp"
#include "detail/broker/exchange_table.hpp"
#include "detail/broker/queue_table.hpp"
#include "detail/broker/router.hpp"
#include "detail/broker/snapshot.hpp"
#include "detail/core/deferred_release.hpp"
#include "detail/core/generated_name.hpp"
#include "detail/core/ref_ptr.hpp"
#include "detail/core/saturate.hpp"
#include "detail/message/expiration.hpp"
#include "detail/message/message_node.hpp"
#include "direct_exchange.hpp"
#include "error.hpp"
#include "exchange.hpp"
#include "fanout_exchange.hpp"
#include "field_table.hpp"
#include "fwd.hpp"
#include "handlers.hpp"
#include "headers_exchange.hpp"
#include "message.hpp"
#include "options.hpp"
#include "policy.hpp"
#include "publisher.hpp"
#include "queue.hpp"
#include "queue_arguments.hpp"
#include "routing_key.hpp"
#include "stats.hpp"
#include "subscription.hpp"
#include "topic_exchange.hpp"
#include "topology.hpp"

namespace warren {
/// A RabbitMQ-style broker inside one process.
///
/// Exchanges route messages to queues by their bindings; publishers and consumers know only
/// names. Every exchange type of RabbitMQ is built in (fanout, direct, topic, headers), the
/// default exchange routes to the queue named by the routing key, and the `amq.*`
/// exchanges are predeclared. Further types can be registered (register_exchange_type).
///
/// @code
/// warren::broker broker;
/// broker.declare_exchange("logs", "topic");
/// auto q = broker.declare_queue();                      // server-named
/// broker.bind_queue(q, "logs", "kern.*");
/// auto sub = broker.subscribe(q, [](warren::delivery& d) { std::cout << d.body() << '\n'; });
/// (void)broker.publish("logs", {.routing_key = "kern.critical", .body = "disk full"});
/// broker.dispatch();                                    // runs the callback
/// @endcode
///
/// Delivery: messages wait in queues until taken with try_get() or pushed to subscribers by
/// dispatch(). dispatch() serves queues round robin in declaration order, one message per
/// queue per turn, going on from where the previous call stopped, until no consumer can
/// take more or the budget (a message count, and with dispatch_until() a deadline) is
/// spent. Within a queue, the highest-priority consumers that can take a message are
/// served, taking turns as in RabbitMQ: the one served goes to the back of the rotation, a
/// new one joins at the back, and one at its prefetch limit sits out until an ack frees
/// it, then rejoins at the back. The order depends only on what was declared, subscribed,
/// published and settled, never on timing, so a simulation replays identically.
///
/// A callback that throws: if its delivery was still pending (manual ack, not settled or
/// moved away), the message is rejected without requeue, so a poison message is not
/// redelivered forever. The exception then goes to the error handler if one is set
/// (set_error_handler) and dispatch goes on; without a handler dispatch rethrows it, the
/// broker already consistent.
///
/// Threading follows `Policy`: single_threaded (one owner thread, no locks or atomics) or
/// multi_threaded (every member thread-safe; callbacks run with no lock held).
/// Callbacks may publish, subscribe, unsubscribe (their own subscription included),
/// declare, bind and delete.
///
/// User objects (callbacks and their captures, on_cancel, the handlers, message bodies,
/// exchange types) are destroyed after every lock is released and never while a container
/// that holds them is being walked, so their destructors may use the broker, and a
/// callback may own its own subscription.
///
/// Costs: binding and unbinding are O(1) amortised (O(words) for topic keys) whatever the
/// counts (200k keys on one queue, 20k queues on one key), and so are declaring and
/// deleting queues and exchanges, beyond the bindings they hold; memory follows the
/// bindings down.
template <message_type Message, threading_policy Policy>
class basic_broker {
public:
    using message_type = Message;
    using policy_type = Policy;
    using queue_type = basic_queue<Message, Policy>;
    using delivery = basic_delivery<Message, Policy>;
    using subscription = basic_subscription<basic_broker>;
    using publisher = basic_publisher<basic_broker>;
    using callback = typename queue_type::callback_type;
    using error_handler = typename detail::dispatcher<Message, Policy>::error_handler;
    using returned_message = basic_returned_message<Message>;
    using return_handler = std::function<void(returned_message&)>;

    /// Makes a broker with the default exchange and amq.direct, amq.fanout, amq.topic,
    /// amq.headers and amq.match declared, as RabbitMQ has them. Time (TTLs, x-expires)
    /// comes from the steady clock.
    basic_broker() : basic_broker(steady_clock::instance()) {}
    /// Makes a broker whose time comes from `time`, e.g. a manual_clock, which must
    /// outlive it.
    explicit basic_broker(const clock& time);
    /// Deletes every queue (their consumers end) and exchange.
    ~basic_broker();
    basic_broker(const basic_broker&) = delete;
    basic_broker& operator=(const basic_broker&) = delete;

    // -- topology ------------------------------------------------------------------------

    /// Makes exchange type E available to declare_exchange under E::type_name. Registering
    /// a name twice is precondition_failed. Thread-safe under multi_threaded.
    template <exchange_type E>
    void register_exchange_type();

    /// Declares an exchange. Redeclaring with the same type and options does nothing; with
    /// others it is precondition_failed (406). An unknown type is command_invalid (503); a
    /// name starting with `amq.` or empty is access_refused (403).
    void declare_exchange(std::string_view name, std::string_view type, const exchange_options& options = {});
    /// Whether an exchange of that name exists (a passive declare).
    [[nodiscard]] bool has_exchange(std::string_view name) const;
    /// Deletes an exchange and its bindings. Deleting one that does not exist does
    /// nothing, as in RabbitMQ. With `if_unused`, refuses (406) while it has bindings.
    void delete_exchange(std::string_view name, bool if_unused = false);

    /// Declares a queue and returns its name; an empty name gets a generated one
    /// (`amq.gen-...`). Redeclaring with the same options does nothing; with others it is
    /// precondition_failed (406).
    std::string declare_queue(std::string_view name = {}, const queue_options& options = {});
    /// Whether a queue of that name exists (a passive declare).
    [[nodiscard]] bool has_queue(std::string_view name) const;
    /// Deletes a queue: its messages are dropped, its consumers end, its bindings go.
    /// Returns the number of ready messages dropped. A queue that does not exist is not an
    /// error, as in RabbitMQ. Each consumer's on_cancel runs (AMQP's basic.cancel), after
    /// the broker's locks are released; every one runs even if some throw: their errors go
    /// to the error handler (consumer_error with delivery_tag 0), or without one the first
    /// is rethrown once all have run, the queue already gone.
    std::size_t delete_queue(std::string_view name, const queue_delete_options& options = {});
    /// Drops a queue's ready messages and returns how many.
    std::size_t purge_queue(std::string_view name);

    /// Binds a queue to an exchange. Binding the same (key, arguments) twice is one
    /// binding. Unknown names are not_found (404); the default exchange is access_refused.
    void bind_queue(std::string_view queue, std::string_view exchange, std::string_view binding_key = {},
                    const field_table& arguments = {});
    /// Removes a binding; removing one that does not exist does nothing.
    void unbind_queue(std::string_view queue, std::string_view exchange, std::string_view binding_key = {},
                      const field_table& arguments = {});
    /// Binds exchange `destination` to exchange `source`: what `source` routes there,
    /// `destination` routes on. Cycles are allowed; a queue still gets one copy.
    void bind_exchange(std::string_view destination, std::string_view source, std::string_view binding_key = {},
                       const field_table& arguments = {});
    /// Removes an exchange-to-exchange binding; a missing one does nothing.
    void unbind_exchange(std::string_view destination, std::string_view source, std::string_view binding_key = {},
                         const field_table& arguments = {});

    // -- publishing ----------------------------------------------------------------------

    /// Routes `msg` through `exchange` ("" is the default exchange) and returns how many
    /// queues got it; 0 means it was unroutable, and with `options.mandatory` it then goes
    /// to the return handler (after the topology lock is released, so the handler may use
    /// the broker). Alternate exchanges are followed as in RabbitMQ; a message an alternate
    /// exchange routes counts as routed. Unknown exchange: not_found (404); internal
    /// exchange: access_refused (403); key over 255 bytes: precondition_failed.
    [[nodiscard]] std::size_t publish(std::string_view exchange, Message&& msg, publish_options options = {}) {
        return publish_to(nullptr, exchange, msg, options).routed;
    }
    /// Publishes a copy of `msg`.
    [[nodiscard]] std::size_t publish(std::string_view exchange, const Message& msg, publish_options options = {}) {
        Message copy(msg);
        return publish_to(nullptr, exchange, copy, options).routed;
    }
    /// Publishes as publish() does and reports what a publisher in AMQP confirm mode
    /// learns: ack, or nack when a queue refused the message at its length limit
    /// (x-overflow reject-publish or reject-publish-dlx). A mandatory message that no queue
    /// took has gone to the return handler before this returns, as basic.return comes
    /// before basic.ack. Errors as for publish().
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, Message&& msg, publish_options options = {}) {
        return publish_to(nullptr, exchange, msg, options);
    }
    /// Publishes a copy of `msg` and reports the confirm.
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, const Message& msg,
                                                 publish_options options = {}) {
        Message copy(msg);
        return publish_to(nullptr, exchange, copy, options);
    }
    /// A publisher for `exchange`, which resolves it once. Unknown exchange: not_found.
    [[nodiscard]] publisher make_publisher(std::string_view exchange);

    // -- consuming -----------------------------------------------------------------------

    /// Takes the next message of `queue`, as AMQP basic.get does, or nothing if it is
    /// empty. With ack_mode::manual the delivery must be settled. Unknown queue: not_found.
    [[nodiscard]] std::optional<delivery> try_get(std::string_view queue, ack_mode mode = ack_mode::automatic);

    /// Like try_get, but waits up to `timeout` for a message. multi_threaded only.
    template <class Rep, class Period>
        requires Policy::thread_safe
    [[nodiscard]] std::optional<delivery> try_get_for(std::string_view queue, std::chrono::duration<Rep, Period> timeout,
                                                      ack_mode mode = ack_mode::automatic);

    /// Subscribes `fn` to `queue`. The callback runs inside dispatch(); the subscription
    /// lasts as long as the returned handle. An empty tag gets a generated one.
    [[nodiscard]] subscription subscribe(std::string_view queue, callback fn, consumer_options options = {});

    /// Runs consumer callbacks for up to `max_messages` ready messages; returns how many
    /// were delivered. See the class comment for the order and for throwing callbacks.
    /// Applies time first (see expire()) when a queue can hold expiring messages or has
    /// x-expires.
    std::size_t dispatch(std::size_t max_messages = std::numeric_limits<std::size_t>::max()) {
        return dispatch_some(max_messages, [] { return false; });
    }
    /// Like dispatch(), but also stops once `deadline` has passed on its own clock:
    /// std::chrono::steady_clock, or any monotonic chrono clock the caller passes. A frame
    /// budget is wall time, independent of the broker's clock, which ages messages and may
    /// be simulation time (a warren::clock time point does not compile here). The clock is
    /// read before each delivery, so a frame's drain overruns its deadline by at most one
    /// callback; a deadline already past delivers nothing.
    template <class Clock, class Duration>
    std::size_t dispatch_until(std::chrono::time_point<Clock, Duration> deadline,
                               std::size_t max_messages = std::numeric_limits<std::size_t>::max());
    /// dispatch_until(std::chrono::steady_clock::now() + budget), the sum saturating: a
    /// budget of hours::max() is no time limit, a negative or NaN one delivers nothing.
    template <class Rep, class Period>
    std::size_t dispatch_for(std::chrono::duration<Rep, Period> budget,
                             std::size_t max_messages = std::numeric_limits<std::size_t>::max());

    /// Applies the passage of time: removes the expired messages at the heads of queues
    /// (dead-lettering them where the queue has a dead-letter exchange) and deletes the
    /// queues unused for longer than their x-expires. RabbitMQ does this on timers; warren
    /// does it here, in dispatch(), and for a queue whenever it is read (try_get,
    /// message_count, queue_stats). Returns how many messages expired.
    std::size_t expire();

    /// Routing keys each topic exchange remembers the route of, by default.
    static constexpr std::size_t default_routing_cache_capacity = 1024;

    /// Sizes the routing cache of every exchange whose type has one (topic), now and for
    /// exchanges declared later; 0 turns caching off. single_threaded only: a cached route
    /// writes to the cache. Owner thread.
    void set_routing_cache_capacity(std::size_t entries)
        requires(!Policy::thread_safe);

    /// Where mandatory messages that no queue took go. Without a handler they are dropped
    /// (publish() returned 0 for them). The handler replaced is destroyed after the
    /// broker's locks are released.
    void set_return_handler(return_handler handler);

    /// Where exceptions from consumer callbacks and on_cancel notifications go. Without a
    /// handler (the default), dispatch() and delete_queue() rethrow them. The handler
    /// replaced is destroyed after the broker's locks are released.
    void set_error_handler(error_handler handler);

    // -- observation ---------------------------------------------------------------------

    /// Ready messages in `queue`, after removing expired ones at its head. Unknown queue:
    /// not_found.
    [[nodiscard]] std::size_t message_count(std::string_view queue) const { return expired_queue(queue)->message_count(); }
    /// Consumers of `queue`. Unknown queue: not_found.
    [[nodiscard]] std::size_t consumer_count(std::string_view queue) const { return find_queue_ref(queue)->consumer_count(); }
    /// The counters of `queue`, after removing expired ones at its head. They are kept
    /// under the queue's own lock, so reading them costs publishing nothing. Unknown queue:
    /// not_found.
    [[nodiscard]] queue_counters queue_stats(std::string_view queue) const { return expired_queue(queue)->counters(); }
    /// The counters of `exchange`. Unknown exchange: not_found.
    [[nodiscard]] exchange_counters exchange_stats(std::string_view exchange) const;
    /// A copy of the topology: exchanges, queues (with their counters), bindings and
    /// consumers. Render it with to_dot(). Thread-safe under multi_threaded.
    [[nodiscard]] topology_snapshot snapshot() const;
    /// Broker-wide counters: dead letters that found no way on.
    [[nodiscard]] broker_counters stats() const {
        return {dead_letters_.without_exchange(), dead_letters_.cycles()};
    }

private:
    friend publisher;
    friend subscription;
    using exchange_node = detail::exchange_node<Policy>;
    using queue_table = detail::queue_table<queue_type, Policy>;
    using router_type = detail::dead_letter_router<Message, Policy>;
    using node_type = detail::message_node<Message, Policy>;
    using dead_letters = typename queue_type::dead_letters;
    using shared_lock = std::shared_lock<typename Policy::shared_mutex>;
    using unique_lock = std::unique_lock<typename Policy::shared_mutex>;

    /// Publishes `msg`, moving from it (the public overloads take it by rvalue or copy it,
    /// so a message is moved once on its way into the queue). `exchange` null: by name.
    confirmation publish_to(exchange_node* exchange, std::string_view name, Message& msg, publish_options options);
    /// Routes `msg` and pushes it into the queues routed to; an unroutable message stays in
    /// `msg` for the caller to return. The stored message goes to `stored`, which the caller
    /// keeps until its lock is released. Topology lock held (shared).
    confirmation route_and_push(exchange_node& exchange, Message& msg, detail::ref_ptr<node_type>& stored);
    /// Binds (`add`) or unbinds what `target()` names to exchange `source`: the checks and
    /// lookups of the four bind and unbind members, in RabbitMQ's order.
    template <class Target>
    void change_binding(bool add, std::string_view source, bool names_default_exchange, Target&& target,
                        std::string_view key, const field_table& arguments);
    /// Deletes `exchange` and, in turn, the auto-delete exchanges that this leaves unused.
    void delete_exchange_locked(exchange_node& exchange);
    void delete_unused(const std::vector<exchange_node*>& unused) {
        for (exchange_node* x : unused) {
            if (x->unused_auto_delete()) delete_exchange_locked(*x); // not deleted meanwhile
        }
    }
    /// Removes a closed queue from the tables; its reference is deferred.
    void remove_queue_locked(std::uint32_t index);
    /// The subscription of a consumer of `queue` ended: routes what that let go of and
    /// deletes an auto-delete queue that lost its last consumer.
    void consumer_ended(queue_type& queue, dead_letters& dead, bool last_consumer_gone) noexcept;
    /// Delivers until `max_messages`, no consumer can take more, or `stop()` says so.
    template <class Stop>
    std::size_t dispatch_some(std::size_t max_messages, Stop&& stop);
    /// Removes the expired heads of `queue` and routes their dead letters.
    void expire_heads(queue_type& queue) const {
        const detail::deferred_release::scope releases_after_unlock;
        dead_letters dead;
        (void)queue.expire(dead);
        dead_letters_.route_from(queue, dead);
    }
    /// The queue named `name` (not_found if none), its expired heads removed.
    [[nodiscard]] detail::ref_ptr<queue_type> expired_queue(std::string_view name) const {
        auto queue = find_queue_ref(name);
        expire_heads(*queue);
        return queue;
    }
    [[nodiscard]] detail::ref_ptr<queue_type> find_queue_ref(std::string_view name) const {
        shared_lock lock(topology_);
        return queues_.slot(queues_.index_of(name));
    }
    void add_exchange(std::string_view name, std::string_view type, const exchange_options& options) {
        (void)exchanges_.add(name, type, options, routing_cache_capacity_);
    }

    const clock* clock_;
    mutable typename Policy::shared_mutex topology_; // guards the three tables
    detail::exchange_table<Policy> exchanges_;
    queue_table queues_;
    detail::binding_table<Policy> bindings_{exchanges_};
    // Observers that apply time (message_count) route dead letters, hence mutable.
    mutable router_type dead_letters_{*clock_, topology_, exchanges_, queues_};
    detail::dispatcher<Message, Policy> dispatcher_{dead_letters_};
    // Copied under the lock as one reference, called without it; the replaced one is
    // destroyed after it is released.
    std::shared_ptr<const return_handler> return_handler_;
    // A cached route writes to the cache, so only a single-threaded broker has one.
    std::size_t routing_cache_capacity_ = Policy::thread_safe ? 0 : default_routing_cache_capacity;
    typename Policy::template atomic<std::uint64_t> next_consumer_id_{0};
    std::uint64_t name_counter_ = 0;
    const std::uint64_t name_seed_ = detail::name_seed(this);
};

// ---------------------------------------------------------------------------------------
// construction

template <message_type Message, threading_policy Policy>
basic_broker<Message, Policy>::basic_broker(const clock& time) : clock_(&time) {
    register_exchange_type<direct_exchange>();
    register_exchange_type<fanout_exchange>();
    register_exchange_type<topic_exchange>();
    register_exchange_type<headers_exchange>();
    exchange_options durable;
    durable.durable = true;
    add_exchange("", "direct", durable);
    add_exchange("amq.direct", "direct", durable);
    add_exchange("amq.fanout", "fanout", durable);
    add_exchange("amq.topic", "topic", durable);
    add_exchange("amq.headers", "headers", durable);
    add_exchange("amq.match", "headers", durable);
}

template <message_type Message, threading_policy Policy>
basic_broker<Message, Policy>::~basic_broker() {
    // What the queues held (consumers with their callbacks, messages) is destroyed once
    // every queue is closed: a callback's captures may end subscriptions of other queues,
    // which then find them closed and touch nothing.
    const detail::deferred_release::scope releases_after_closing;
    std::vector<typename queue_type::ended_consumers> ended;
    // Closed queues refuse pushes and gets, so subscriptions and deliveries that outlive
    // the broker stay harmless.
    for (const auto& queue : queues_.list().queues) {
        if (!queue) continue; // deleted
        ended.push_back(queue->close()); // no basic.cancel: the broker itself goes away
        queue->detach_router();          // waits for dead letters being routed on other threads
    }
    exchanges_.for_each([](exchange_node& x) { x.deleted = true; });
}

template <message_type Message, threading_policy Policy>
template <exchange_type E>
void basic_broker<Message, Policy>::register_exchange_type() {
    unique_lock lock(topology_);
    exchanges_.template register_type<E>();
}

// ---------------------------------------------------------------------------------------
// exchanges

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::declare_exchange(std::string_view name, std::string_view type,
                                                     const exchange_options& options) {
    detail::check_length(name, "exchange name");
    detail::validate_table(options.arguments, "exchange arguments");
    unique_lock lock(topology_);
    // RabbitMQ checks the type first, even for an exchange that exists.
    if (!exchanges_.has_type(type)) {
        detail::raise(reply_code::command_invalid, "unknown exchange type " + detail::quoted(type));
    }
    detail::check_not_default_exchange(name);
    if (const exchange_node* existing = exchanges_.find(name)) {
        detail::check_exchange_equivalent(name, type, options, existing->type, existing->options);
        return;
    }
    detail::check_not_reserved(name, "exchange");
    detail::check_new_exchange_options(name, options);
    add_exchange(name, type, options);
}

template <message_type Message, threading_policy Policy>
bool basic_broker<Message, Policy>::has_exchange(std::string_view name) const {
    shared_lock lock(topology_);
    return exchanges_.find(name) != nullptr;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::delete_exchange(std::string_view name, bool if_unused) {
    detail::check_exchange_deletable(name);
    const detail::deferred_release::scope releases_after_unlock; // the exchange type, user code
    unique_lock lock(topology_);
    exchange_node* exchange = exchanges_.find(name);
    if (exchange == nullptr) return;
    if (if_unused && exchange->binding_count > 0) {
        detail::raise(reply_code::precondition_failed, "exchange " + detail::quoted(name) + " in use");
    }
    delete_exchange_locked(*exchange);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::delete_exchange_locked(exchange_node& exchange) {
    bindings_.remove_from(exchange);
    const auto unused = bindings_.remove_to(destination(destination::kind::exchange, exchange.index));
    // Publishers may keep the node alive, marked deleted; else it goes once the lock is
    // released, with its exchange type (user code).
    detail::deferred_release::defer(exchanges_.remove(exchange));
    delete_unused(unused);
}

// ---------------------------------------------------------------------------------------
// queues

template <message_type Message, threading_policy Policy>
std::string basic_broker<Message, Policy>::declare_queue(std::string_view name, const queue_options& options) {
    detail::check_length(name, "queue name");
    detail::validate_table(options.arguments, "queue arguments");
    const queue_arguments parsed = queue_arguments::parse(options.arguments, name);
    if constexpr (!std::is_copy_constructible_v<Message>) {
        // A dead letter is a changed copy of the message (new headers and key).
        if (parsed.dead_letter_exchange) {
            detail::raise(reply_code::not_implemented,
                          "x-dead-letter-exchange needs a copyable message type (queue " + detail::quoted(name) + ")");
        }
    }
    const detail::deferred_release::scope releases_after_unlock; // a queue list a dispatch let go of
    unique_lock lock(topology_);
    if (!name.empty()) {
        if (const auto index = queues_.find(name)) {
            queue_type& existing = *queues_.slot(*index);
            detail::check_queue_equivalent(name, options, existing.options());
            existing.touch(); // a redeclare is a use, for x-expires
            return std::string(name);
        }
        detail::check_not_reserved(name, "queue");
    }
    std::string actual(name);
    while (actual.empty() || queues_.contains(actual)) actual = detail::generated_name("amq.gen-", name_seed_, 2 * ++name_counter_);
    (void)queues_.add(detail::make_ref<queue_type>(actual, options, *clock_, &dead_letters_));
    if (parsed.message_ttl || parsed.expires) dispatcher_.count_timed_queue(true);
    return actual;
}

template <message_type Message, threading_policy Policy>
bool basic_broker<Message, Policy>::has_queue(std::string_view name) const {
    shared_lock lock(topology_);
    return queues_.contains(name);
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::delete_queue(std::string_view name, const queue_delete_options& options) {
    // Its messages, consumers and the queue itself go once the lock is released.
    const detail::deferred_release::scope releases_after_unlock;
    {
        // Expired heads go first, as RabbitMQ's TTL timer would have removed them (and
        // if_empty must not count them); not under the unique lock, which routing their
        // dead letters would need.
        detail::ref_ptr<queue_type> queue;
        {
            shared_lock lock(topology_);
            if (const auto index = queues_.find(name)) queue = queues_.slot(*index);
        }
        if (queue) expire_heads(*queue);
    }
    typename queue_type::ended_consumers ended;
    std::size_t dropped = 0;
    std::string queue_name;
    {
        unique_lock lock(topology_);
        const auto index = queues_.find(name);
        if (!index) return 0;
        queue_type& queue = *queues_.slot(*index);
        if (options.if_unused && queue.consumer_count() > 0) {
            detail::raise(reply_code::precondition_failed, "queue " + detail::quoted(name) + " in use");
        }
        if (options.if_empty && queue.message_count() > 0) {
            detail::raise(reply_code::precondition_failed, "queue " + detail::quoted(name) + " not empty");
        }
        // Counted as the queue closes: consumers and gets on other threads take messages
        // without the topology lock until then.
        queue_name = queue.name();
        ended = queue.close(&dropped);
        remove_queue_locked(*index);
    }
    dispatcher_.notify_cancelled(queue_name, ended); // AMQP's basic.cancel, outside the lock
    return dropped;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::remove_queue_locked(std::uint32_t index) {
    const queue_arguments& args = queues_.slot(index)->arguments();
    if (args.message_ttl || args.expires) dispatcher_.count_timed_queue(false);
    const auto unused = bindings_.remove_to(destination(destination::kind::queue, index));
    const std::size_t cursor = dispatcher_.cursor();
    std::size_t moved = cursor;
    detail::deferred_release::defer(queues_.remove(index, moved));
    if (moved != cursor) dispatcher_.move_cursor(moved); // the list was compacted
    delete_unused(unused);
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::purge_queue(std::string_view name) {
    // Expired heads are not purged: RabbitMQ's TTL timer removed them.
    return expired_queue(name)->purge();
}

// ---------------------------------------------------------------------------------------
// bindings

template <message_type Message, threading_policy Policy>
template <class Target>
void basic_broker<Message, Policy>::change_binding(bool add, std::string_view source, bool names_default_exchange,
                                                   Target&& target, std::string_view key, const field_table& arguments) {
    // RabbitMQ's order: the key and arguments, the default exchange, then the names, the
    // source first.
    if (add) {
        detail::check_length(key, "binding key");
        detail::validate_table(arguments, "binding arguments");
    }
    if (names_default_exchange) detail::refuse_default_exchange();
    const detail::deferred_release::scope releases_after_unlock; // an auto-deleted exchange
    unique_lock lock(topology_);
    exchange_node& from = exchanges_.get(source);
    const destination to = target();
    if (add) bindings_.add(to, from, key, arguments);
    else if (bindings_.remove(to, from, key, arguments)) delete_exchange_locked(from);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::bind_queue(std::string_view queue, std::string_view exchange,
                                               std::string_view binding_key, const field_table& arguments) {
    change_binding(true, exchange, exchange.empty(), [&] { return destination(destination::kind::queue, queues_.index_of(queue)); },
                   binding_key, arguments);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::unbind_queue(std::string_view queue, std::string_view exchange,
                                                 std::string_view binding_key, const field_table& arguments) {
    change_binding(false, exchange, exchange.empty(), [&] { return destination(destination::kind::queue, queues_.index_of(queue)); },
                   binding_key, arguments);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::bind_exchange(std::string_view destination_name, std::string_view source,
                                                  std::string_view binding_key, const field_table& arguments) {
    change_binding(true, source, source.empty() || destination_name.empty(),
                   [&] { return destination(destination::kind::exchange, exchanges_.get(destination_name).index); },
                   binding_key, arguments);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::unbind_exchange(std::string_view destination_name, std::string_view source,
                                                    std::string_view binding_key, const field_table& arguments) {
    change_binding(false, source, source.empty() || destination_name.empty(),
                   [&] { return destination(destination::kind::exchange, exchanges_.get(destination_name).index); },
                   binding_key, arguments);
}

// ---------------------------------------------------------------------------------------
// publishing

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::publish_to(exchange_node* exchange, std::string_view name, Message& msg,
                                                       publish_options options) {
    // What the publish lets go of (messages dropped or dead-lettered on its way, perhaps
    // the stored message itself) goes once the lock is released.
    const detail::deferred_release::scope releases_after_unlock;
    detail::ref_ptr<exchange_node> node;
    detail::ref_ptr<node_type> stored;
    confirmation outcome;
    std::shared_ptr<const return_handler> handler;
    {
        shared_lock lock(topology_);
        if (exchange == nullptr) {
            node = exchanges_.slot(exchanges_.get(name).index);
        } else {
            if (exchange->deleted) detail::raise(reply_code::not_found, "no exchange " + detail::quoted(exchange->name));
            node = detail::ref_ptr<exchange_node>(exchange);
        }
        outcome = route_and_push(*node, msg, stored);
        // A message some queue refused was routed: it is nacked, never returned.
        if (outcome.routed > 0 || outcome.refused > 0 || !options.mandatory) return outcome;
        handler = return_handler_;
    }
    node->returned.fetch_add(1, std::memory_order_relaxed);
    outcome.returned = true;
    if (handler) { // basic.return, with no lock held
        returned_message returned{reply_code::no_route, "NO_ROUTE", node->name, std::move(msg)};
        (*handler)(returned);
    }
    return outcome;
}

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::route_and_push(exchange_node& exchange, Message& msg,
                                                           detail::ref_ptr<node_type>& stored) {
    detail::check_length(msg.routing_key, "routing key");
    detail::validate_table(msg.properties.headers, "message headers");
    if (exchange.options.internal) {
        detail::raise(reply_code::access_refused, "cannot publish to internal exchange " + detail::quoted(exchange.name));
    }
    std::optional<std::chrono::milliseconds> ttl; // RabbitMQ checks it before routing
    if (msg.properties.expiration) {
        ttl = detail::parse_expiration(*msg.properties.expiration);
        dispatcher_.note_expiring_message();
    }
    exchange.published.fetch_add(1, std::memory_order_relaxed);
    thread_local std::vector<destination> targets;
    detail::route(exchanges_, queues_, exchange, routing_view{msg.routing_key, msg.properties}, targets);
    confirmation outcome;
    if (targets.empty()) {
        exchange.unroutable.fetch_add(1, std::memory_order_relaxed);
        return outcome;
    }
    // One immutable node, shared by every queue that gets the message.
    stored = detail::make_ref<node_type>(std::move(msg), exchange.shared_name, ttl);
    thread_local typename router_type::jobs work;
    work.clear();
    dead_letters_.push(stored, targets, outcome, work);
    if (outcome.refused > 0) {
        outcome.ack = false;
        exchange.nacked.fetch_add(1, std::memory_order_relaxed);
    }
    if (!work.empty()) dead_letters_.route(work);
    return outcome;
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::make_publisher(std::string_view exchange) -> publisher {
    shared_lock lock(topology_);
    return publisher(this, exchanges_.slot(exchanges_.get(exchange).index));
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::set_routing_cache_capacity(std::size_t entries)
    requires(!Policy::thread_safe)
{
    routing_cache_capacity_ = entries;
    exchanges_.for_each([&](exchange_node& x) {
        if (x.impl) x.impl->set_cache_capacity(entries);
    });
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::set_return_handler(return_handler handler) {
    std::shared_ptr<const return_handler> replaced = handler ? std::make_shared<const return_handler>(std::move(handler)) : nullptr;
    unique_lock lock(topology_);
    std::swap(return_handler_, replaced); // the old one, perhaps its last reference, goes after the lock
}

// ---------------------------------------------------------------------------------------
// observation

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::exchange_stats(std::string_view name) const -> exchange_counters {
    shared_lock lock(topology_);
    return exchanges_.get(name).counters();
}

template <message_type Message, threading_policy Policy>
topology_snapshot basic_broker<Message, Policy>::snapshot() const {
    shared_lock lock(topology_);
    return detail::take_snapshot(exchanges_, queues_, bindings_);
}

// ---------------------------------------------------------------------------------------
// consuming

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::try_get(std::string_view queue, ack_mode mode) -> std::optional<delivery> {
    auto q = find_queue_ref(queue);
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    auto got = q->try_get(mode, dead);
    dead_letters_.route_from(*q, dead);
    return got;
}

template <message_type Message, threading_policy Policy>
template <class Rep, class Period>
    requires Policy::thread_safe
auto basic_broker<Message, Policy>::try_get_for(std::string_view queue, std::chrono::duration<Rep, Period> timeout,
                                                ack_mode mode) -> std::optional<delivery> {
    auto q = find_queue_ref(queue);
    // Through a pass, not this broker: another thread may destroy the broker during the wait.
    return q->try_get_for(timeout, mode, [&q](dead_letters& dead) {
        if (auto pass = q->pass_to_router()) pass->route_from(*q, dead);
    });
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::subscribe(std::string_view queue, callback fn, consumer_options options)
    -> subscription {
    WARREN_ASSERT(static_cast<bool>(fn), "subscribe needs a callback");
    detail::check_length(options.tag, "consumer tag");
    detail::ref_ptr<queue_type> target = find_queue_ref(queue);
    const std::uint64_t id = next_consumer_id_.fetch_add(1, std::memory_order_relaxed) + 1;
    // Like RabbitMQ's amq.ctag-<22 characters>; the consumer id keeps it unique. The odd
    // serials are ours, so a tag never repeats a queue name.
    if (options.tag.empty()) options.tag = detail::generated_name("amq.ctag-", name_seed_, 2 * id + 1);
    std::string tag = options.tag;
    target->add_consumer(id, std::move(options), std::move(fn));
    return subscription(this, std::move(target), id, std::move(tag));
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::consumer_ended(queue_type& queue, dead_letters& dead, bool last_consumer_gone) noexcept {
    dead_letters_.route_from(queue, dead);
    if (!last_consumer_gone || !queue.options().auto_delete) return;
    const detail::deferred_release::scope releases_after_unlock;
    unique_lock lock(topology_);
    // Another thread may have subscribed since the last consumer left: then the queue is in
    // use again and stays, as in RabbitMQ. The check and the closing are one step, so no
    // consumer is ever cancelled here (and no on_cancel can throw into this noexcept path).
    if (const auto index = queues_.slot_of(queue); index && queue.close_if_unused()) remove_queue_locked(*index);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::set_error_handler(error_handler handler) {
    dispatcher_.set_error_handler(std::move(handler));
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::expire() {
    detail::ref_ptr<typename queue_table::walk_list> list;
    {
        shared_lock lock(topology_);
        list = queues_.walk();
    }
    const clock::time_point now = clock_->now();
    const auto result = dispatcher_.expire(*list, now);
    if (result.unused_queues) { // x-expires: delete the queues unused for too long
        const detail::deferred_release::scope releases_after_unlock;
        unique_lock lock(topology_);
        for (const auto& queue : list->queues) {
            if (!queue) continue;
            const auto index = queues_.slot_of(*queue);
            // Still unused, checked as it closes: a consumer that subscribed meanwhile
            // keeps it, so x-expires never cancels one.
            if (index && queue->close_if_unused(now)) remove_queue_locked(*index);
        }
    }
    return result.expired;
}

template <message_type Message, threading_policy Policy>
template <class Clock, class Duration>
std::size_t basic_broker<Message, Policy>::dispatch_until(std::chrono::time_point<Clock, Duration> deadline,
                                                          std::size_t max_messages) {
    static_assert(requires { Clock::now(); } && Clock::is_steady,
                  "dispatch_until takes a deadline on a monotonic chrono clock such as std::chrono::steady_clock: "
                  "a frame budget is wall time, while the broker's clock (warren::clock) ages messages and may be "
                  "simulation time");
    return dispatch_some(max_messages, [deadline] { return Clock::now() >= deadline; });
}

template <message_type Message, threading_policy Policy>
template <class Rep, class Period>
std::size_t basic_broker<Message, Policy>::dispatch_for(std::chrono::duration<Rep, Period> budget,
                                                        std::size_t max_messages) {
    const auto now = std::chrono::steady_clock::now();
    // Saturating: a NaN or negative budget makes the deadline now, which delivers nothing.
    return dispatch_until(detail::saturating_add(now, budget), max_messages);
}

template <message_type Message, threading_policy Policy>
template <class Stop>
std::size_t basic_broker<Message, Policy>::dispatch_some(std::size_t max_messages, Stop&& stop) {
    if (dispatcher_.time_matters()) expire(); // what RabbitMQ's timers would have done by now
    detail::ref_ptr<typename queue_table::walk_list> list;
    {
        shared_lock lock(topology_);
        list = queues_.walk();
    }
    return dispatcher_.run(*list, max_messages, std::forward<Stop>(stop));
}

} // namespace warren
