#pragma once
/// @file broker.hpp
/// basic_broker: exchanges and queues by name; declare, bind, publish, consume, dispatch.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "delivery.hpp"
#include "detail/broker/declare_rules.hpp"
#include "detail/broker/exchange_table.hpp"
#include "detail/broker/queue_table.hpp"
#include "detail/core/deferred_release.hpp"
#include "detail/core/ref_ptr.hpp"
#include "detail/core/saturate.hpp"
#include "detail/message/expiration.hpp"
#include "detail/message/message_node.hpp"
#include "detail/message/x_death.hpp"
#include "detail/routing/binding_graph.hpp"
#include "detail/routing/exchange_model.hpp"
#include "direct_exchange.hpp"
#include "error.hpp"
#include "exchange.hpp"
#include "fanout_exchange.hpp"
#include "field_table.hpp"
#include "fwd.hpp"
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
/// A mandatory message that no queue took, handed back to the return handler.
template <class Message>
struct basic_returned_message {
    reply_code code = reply_code::no_route;
    std::string reply_text;
    std::string exchange;
    Message message;
};

/// What a consumer callback threw, handed to the broker's error handler.
struct consumer_error {
    std::exception_ptr exception;
    std::string queue;
    std::string consumer_tag;
    std::uint64_t delivery_tag = 0;
};

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
class basic_broker : private basic_queue<Message, Policy>::host {
public:
    using message_type = Message;
    using policy_type = Policy;
    using queue_type = basic_queue<Message, Policy>;
    using delivery = basic_delivery<Message, Policy>;
    using subscription = basic_subscription<basic_broker>;
    using publisher = basic_publisher<basic_broker>;
    using callback = typename queue_type::callback_type;
    using error_handler = std::function<void(const consumer_error&)>;
    using returned_message = basic_returned_message<Message>;
    using return_handler = std::function<void(returned_message&)>;

    /// Makes a broker with the default exchange and amq.direct, amq.fanout, amq.topic,
    /// amq.headers and amq.match declared, as RabbitMQ has them. Time (TTLs, x-expires)
    /// comes from the steady clock.
    basic_broker() : basic_broker(steady_clock::instance()) {}
    /// Makes a broker whose time comes from `time`, e.g. a manual_clock, which must
    /// outlive it.
    explicit basic_broker(const clock& time);
    /// Deletes every queue (their consumers end) and exchange. Virtual only because the
    /// class has a virtual function (its queues' host): clang warns when a unique_ptr
    /// deletes a non-final class that has one and no virtual destructor.
    virtual ~basic_broker();
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
        return publish_named(exchange, msg, options).routed;
    }
    /// Publishes a copy of `msg`.
    [[nodiscard]] std::size_t publish(std::string_view exchange, const Message& msg, publish_options options = {}) {
        Message copy(msg);
        return publish_named(exchange, copy, options).routed;
    }
    /// Publishes as publish() does and reports what a publisher in AMQP confirm mode
    /// learns: ack, or nack when a queue refused the message at its length limit
    /// (x-overflow reject-publish or reject-publish-dlx). A mandatory message that no queue
    /// took has gone to the return handler before this returns, as basic.return comes
    /// before basic.ack. Errors as for publish().
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, Message&& msg, publish_options options = {}) {
        return publish_named(exchange, msg, options);
    }
    /// Publishes a copy of `msg` and reports the confirm.
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, const Message& msg,
                                                 publish_options options = {}) {
        Message copy(msg);
        return publish_named(exchange, copy, options);
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
    std::size_t dispatch(std::size_t max_messages = std::numeric_limits<std::size_t>::max());
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
    [[nodiscard]] std::size_t message_count(std::string_view queue) const {
        auto q = find_queue_ref(queue);
        q->expire();
        return q->message_count();
    }
    /// Consumers of `queue`. Unknown queue: not_found.
    [[nodiscard]] std::size_t consumer_count(std::string_view queue) const { return find_queue_ref(queue)->consumer_count(); }
    /// The counters of `queue`, after removing expired ones at its head. They are kept
    /// under the queue's own lock, so reading them costs publishing nothing. Unknown queue:
    /// not_found.
    [[nodiscard]] queue_counters queue_stats(std::string_view queue) const {
        auto q = find_queue_ref(queue);
        q->expire();
        return q->counters();
    }
    /// The counters of `exchange`. Unknown exchange: not_found.
    [[nodiscard]] exchange_counters exchange_stats(std::string_view exchange) const;
    /// A copy of the topology: exchanges, queues (with their counters), bindings and
    /// consumers. Render it with to_dot(). Thread-safe under multi_threaded.
    [[nodiscard]] topology_snapshot snapshot() const;
    /// Broker-wide counters: dead letters that found no way on.
    [[nodiscard]] broker_counters stats() const {
        return {dead_letters_without_exchange_.load(std::memory_order_relaxed),
                dead_letter_cycles_.load(std::memory_order_relaxed)};
    }

private:
    friend publisher;
    friend subscription;
    using exchange_node = detail::exchange_node<Policy>;

    using queue_table = detail::queue_table<queue_type, Policy>;
    using queue_list = typename queue_table::walk_list;
    using node_type = detail::message_node<Message, Policy>;
    using shared_lock = std::shared_lock<typename Policy::shared_mutex>;
    using unique_lock = std::unique_lock<typename Policy::shared_mutex>;
    using ended_consumers = typename queue_type::ended_consumers;


    using dead_letters = typename queue_type::dead_letters;
    /// A dead letter and the queue it comes from, waiting to be routed.
    struct pending_dead_letter {
        detail::ref_ptr<queue_type> from;
        detail::ref_ptr<node_type> message;
        death_reason reason;
        std::uint32_t hops = 0; // dead letters this one descends from in the same operation
    };
    /// How many times in a row one operation's dead letters may cause further dead letters
    /// (a queue refusing one at its limit, or dropping its head for it). RabbitMQ bounces a
    /// rejected message between full reject-publish-dlx queues in the background until one
    /// has room; warren routes synchronously, so it ends such a chain here and counts the
    /// message in stats().dead_letter_cycles.
    static constexpr std::uint32_t max_dead_letter_hops = 64;

    /// Publishes `msg`, moving from it. (The public overloads take it by rvalue or copy
    /// it, so a message is moved once on its way into the queue.)
    confirmation publish_named(std::string_view exchange, Message& msg, publish_options options);
    confirmation publish_to(exchange_node& exchange, Message& msg, publish_options options);
    /// Routes and pushes into the queues routed to; an unroutable message stays in `msg` for the caller to return.
    /// The stored message goes to `stored`, which the caller keeps until its lock is released.
    confirmation route_and_push(exchange_node& exchange, Message& msg, detail::ref_ptr<node_type>& stored);
    confirmation finish_publish(confirmation outcome, exchange_node& exchange, Message& msg, publish_options options);
    /// Pushes `node` into the queues in `targets`; dead letters this causes join `work`.
    void push_to_queues(const detail::ref_ptr<node_type>& node, const std::vector<destination>& targets,
                 confirmation& outcome, std::vector<pending_dead_letter>& work, const field_table* cycle_check,
                 std::uint32_t hops = 0);
    /// Routes dead letters (and those they cause in turn) through their dead-letter
    /// exchanges, and empties `work`, deferring the references it held. Topology lock held
    /// (shared).
    void route_dead_letters(std::vector<pending_dead_letter>& work);
    void dead_letter(queue_type& from, dead_letters& letters) override;
    void route(const exchange_node& exchange, const routing_view& view, std::vector<destination>& out) const;
    /// Several bindings may lead to one queue; it gets the message once.
    static void one_copy_per_queue(std::vector<destination>& targets) {
        if (targets.size() < 2) return;
        std::sort(targets.begin(), targets.end());
        targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
    }
    void delete_auto_delete_queue(queue_type& queue) noexcept;
    bool run_callback(typename queue_type::pending_callback& pending, queue_type& queue);
    /// Delivers until `max_messages`, no consumer can take more, or `stop()` says so.
    template <class Stop>
    std::size_t dispatch_some(std::size_t max_messages, Stop&& stop);
    /// Runs the on_cancel of each consumer a deleted queue ended, every one even if some
    /// throw; see delete_queue for where their errors go. No lock held.
    void notify_cancelled(const std::string& queue, const ended_consumers& ended);
    /// Hands `failure` to the error handler, or rethrows it without one.
    void report(std::exception_ptr failure, const std::string& queue, const std::string& consumer_tag,
                std::uint64_t delivery_tag);

    /// Binds (`add`) or unbinds what `target()` names, under the topology lock, to exchange
    /// `source`: the checks and lookups of the four bind and unbind members, in RabbitMQ's
    /// order.
    template <class Target>
    void change_binding(bool add, std::string_view source, bool names_default_exchange, Target&& target,
                        std::string_view key, const field_table& arguments);
    void add_binding(destination target, exchange_node& source, std::string_view key, const field_table& args);
    void remove_binding(destination target, exchange_node& source, std::string_view key, const field_table& args);
    /// The binding's exchange forgets it; it is already out of the graph.
    void forget_binding(exchange_node& source, const detail::binding& b);
    void drop_incoming(destination target);
    void drop_outgoing(exchange_node& exchange);
    void delete_exchange_locked(exchange_node& exchange);
    /// Removes a closed queue from the broker's tables; its reference is deferred.
    void remove_queue_locked(std::uint32_t index);
    void maybe_auto_delete(exchange_node& exchange);

    [[nodiscard]] detail::ref_ptr<queue_type> find_queue_ref(std::string_view name) const;
    void add_exchange(std::string_view name, std::string_view type, const exchange_options& options) {
        (void)exchanges_.add(name, type, options, routing_cache_capacity_);
    }
    [[nodiscard]] std::string generate_name(std::string_view prefix, std::uint64_t serial) const;


    const clock* clock_;
    mutable typename Policy::shared_mutex topology_;
    detail::exchange_table<Policy> exchanges_;
    queue_table queues_;
    detail::binding_graph bindings_;
    // Copied under the lock as one reference, called without it; the replaced ones are
    // destroyed after it is released.
    std::shared_ptr<const error_handler> error_handler_;
    std::shared_ptr<const return_handler> return_handler_;
    // A cached route writes to the cache, so only a single-threaded broker has one.
    std::size_t routing_cache_capacity_ = Policy::thread_safe ? 0 : default_routing_cache_capacity;
    typename Policy::template atomic<std::uint64_t> next_consumer_id_{0};
    typename Policy::template atomic<std::size_t> dispatch_cursor_{0}; // where the next round starts
    // dispatch() applies time only when something can expire.
    typename Policy::template atomic<std::size_t> timed_queues_{0}; // with x-message-ttl or x-expires
    typename Policy::template atomic<bool> expiring_messages_{false}; // one with an expiration was published
    typename Policy::template atomic<std::uint64_t> dead_letters_without_exchange_{0};
    typename Policy::template atomic<std::uint64_t> dead_letter_cycles_{0};
    std::uint64_t name_counter_ = 0;
    std::uint64_t name_seed_;
};

// ---------------------------------------------------------------------------------------
// construction

template <message_type Message, threading_policy Policy>
basic_broker<Message, Policy>::basic_broker(const clock& time)
    : clock_(&time), name_seed_(std::random_device{}()) {
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
    std::vector<ended_consumers> ended;
    // Closed queues refuse pushes and gets, so subscriptions and deliveries that outlive
    // the broker stay harmless.
    for (const auto& queue : queues_.list().queues) {
        if (!queue) continue; // deleted
        ended.push_back(queue->close()); // no basic.cancel: the broker itself goes away
        queue->detach_host();            // waits for a hand-over of dead letters in progress
    }
    exchanges_.for_each([](exchange_node& x) { x.deleted = true; });
}

template <message_type Message, threading_policy Policy>
template <exchange_type E>
void basic_broker<Message, Policy>::register_exchange_type() {
    unique_lock lock(topology_);
    exchanges_.template register_type<E>();
}

template <message_type Message, threading_policy Policy>
std::string basic_broker<Message, Policy>::generate_name(std::string_view prefix, std::uint64_t serial) const {
    // RabbitMQ's generated names look like amq.gen-<22 characters>; so do ours.
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string name(prefix);
    // splitmix64: each name owns three steps of the sequence, so every character carries
    // fresh bits, and distinct serials give distinct names.
    std::uint64_t state = name_seed_ + 0x9E3779B97F4A7C15ULL * 3 * serial;
    std::uint64_t x = 0;
    for (int i = 0; i < 22; ++i) {
        if (i % 10 == 0) { // fresh bits every ten characters
            state += 0x9E3779B97F4A7C15ULL;
            x = state;
            x ^= x >> 30;
            x *= 0xBF58476D1CE4E5B9ULL;
            x ^= x >> 27;
            x *= 0x94D049BB133111EBULL;
            x ^= x >> 31;
        }
        name += alphabet[x & 63U];
        x >>= 6;
    }
    return name;
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
    const destination self(destination::kind::exchange, exchange.index);
    drop_outgoing(exchange);
    drop_incoming(self);
    // Publishers may keep the node alive, marked deleted; else it goes once the lock is
    // released, with its exchange type (user code).
    detail::deferred_release::defer(exchanges_.remove(exchange));
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::maybe_auto_delete(exchange_node& exchange) {
    if (exchange.unused_auto_delete()) delete_exchange_locked(exchange);
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
    while (actual.empty() || queues_.contains(actual)) actual = generate_name("amq.gen-", 2 * ++name_counter_);
    (void)queues_.add(detail::make_ref<queue_type>(actual, options, *clock_, static_cast<typename queue_type::host*>(this)));
    if (parsed.message_ttl || parsed.expires) timed_queues_.fetch_add(1, std::memory_order_relaxed);
    return actual;
}

template <message_type Message, threading_policy Policy>
bool basic_broker<Message, Policy>::has_queue(std::string_view name) const {
    shared_lock lock(topology_);
    return queues_.contains(name);
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::find_queue_ref(std::string_view name) const -> detail::ref_ptr<queue_type> {
    shared_lock lock(topology_);
    return queues_.slot(queues_.index_of(name));
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
        if (queue) queue->expire();
    }
    ended_consumers ended;
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
    notify_cancelled(queue_name, ended); // AMQP's basic.cancel, outside the lock
    return dropped;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::remove_queue_locked(std::uint32_t index) {
    const queue_arguments& args = queues_.slot(index)->arguments();
    if (args.message_ttl || args.expires) timed_queues_.fetch_sub(1, std::memory_order_relaxed);
    drop_incoming(destination(destination::kind::queue, index));
    const std::size_t cursor = dispatch_cursor_.load(std::memory_order_relaxed);
    std::size_t moved = cursor;
    detail::deferred_release::defer(queues_.remove(index, moved));
    if (moved != cursor) dispatch_cursor_.store(moved, std::memory_order_relaxed); // the list was compacted
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::notify_cancelled(const std::string& queue, const ended_consumers& ended) {
    std::vector<std::pair<std::exception_ptr, const std::string*>> failures;
    for (const auto& c : ended) {
        if (!c->options.on_cancel) continue;
        try {
            c->options.on_cancel();
        } catch (...) {
            failures.emplace_back(std::current_exception(), &c->options.tag);
        }
    }
    if (failures.empty()) return;
    std::shared_ptr<const error_handler> handler;
    {
        shared_lock lock(topology_);
        handler = error_handler_;
    }
    if (!handler) std::rethrow_exception(failures.front().first); // every on_cancel has run
    for (const auto& [failure, tag] : failures) (*handler)(consumer_error{failure, queue, *tag, 0});
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::purge_queue(std::string_view name) {
    auto queue = find_queue_ref(name);
    queue->expire(); // expired heads are not purged: RabbitMQ's TTL timer removed them
    return queue->purge();
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
    if (add) add_binding(to, from, key, arguments);
    else remove_binding(to, from, key, arguments);
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

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::add_binding(destination target, exchange_node& source, std::string_view key,
                                                const field_table& args) {
    detail::binding b{source.index, target, std::string(key), args};
    if (bindings_.contains(b)) return; // the same binding: nothing to do
    // The exchange may refuse the arguments; nothing has changed yet, and if recording the
    // binding fails the exchange forgets it again, so a refusal leaves no trace.
    source.impl->bind(target, key, args);
    try {
        bindings_.add(std::move(b));
    } catch (...) {
        source.impl->unbind(target, key, args);
        throw;
    }
    ++source.binding_count;
    if (target.type() == destination::kind::exchange) ++source.exchange_targets;
    source.had_binding = true;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::forget_binding(exchange_node& source, const detail::binding& b) {
    source.impl->unbind(b.target, b.key, b.arguments);
    --source.binding_count;
    if (b.target.type() == destination::kind::exchange) --source.exchange_targets;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::remove_binding(destination target, exchange_node& source, std::string_view key,
                                                   const field_table& args) {
    const detail::binding b{source.index, target, std::string(key), args};
    if (!bindings_.remove(b)) return; // removing one that does not exist does nothing
    forget_binding(source, b);
    maybe_auto_delete(source);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::drop_incoming(destination target) {
    for (const detail::binding& b : bindings_.take_to(target)) {
        const detail::ref_ptr<exchange_node>& source = exchanges_.slot(b.source);
        if (!source) continue;
        forget_binding(*source, b);
        maybe_auto_delete(*source);
    }
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::drop_outgoing(exchange_node& exchange) {
    // The exchange is going: its routing table goes with it, so only the graph is told.
    (void)bindings_.take_from(exchange.index);
    exchange.binding_count = 0;
    exchange.exchange_targets = 0;
}

// ---------------------------------------------------------------------------------------
// publishing

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::route(const exchange_node& exchange, const routing_view& view,
                                          std::vector<destination>& out) const {
    out.clear();
    if (exchange.name.empty()) { // the default exchange: the queue named by the key
        if (const auto index = queues_.find(view.routing_key)) out.push_back(destination(destination::kind::queue, *index));
        return;
    }
    thread_local destination_list found;
    detail::destination_list_access::clear(found);
    if (exchange.exchange_targets == 0 && exchange.alternate.empty()) {
        // Bound to queues only: one exchange's own route is the answer.
        exchange.impl->route(view, found);
        out = detail::destination_list_access::storage(found);
        one_copy_per_queue(out);
        return;
    }
    // Walk the exchanges the message reaches, as RabbitMQ's rabbit_exchange:route does:
    // each exchange at most once (that ends cycles), and an exchange whose own bindings
    // match nothing hands the message to its alternate exchange, if that exists.
    thread_local std::vector<std::uint32_t> seen;
    thread_local std::vector<std::uint32_t> pending;
    seen.assign(1, exchange.index);
    pending.assign(1, exchange.index);
    auto visit_once = [](std::uint32_t index) {
        if (std::find(seen.begin(), seen.end(), index) != seen.end()) return;
        seen.push_back(index);
        pending.push_back(index);
    };
    while (!pending.empty()) {
        const exchange_node& x = *exchanges_.slot(pending.back());
        pending.pop_back();
        const std::size_t before = found.size();
        x.impl->route(view, found);
        if (found.size() == before) {
            if (!x.alternate.empty()) {
                if (const exchange_node* alternate = exchanges_.find(x.alternate)) visit_once(alternate->index);
            }
            continue;
        }
        for (std::size_t i = before; i < found.size(); ++i) {
            const destination d = found[i];
            if (d.type() == destination::kind::queue) out.push_back(d);
            else visit_once(d.index());
        }
    }
    one_copy_per_queue(out);
}

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::publish_named(std::string_view exchange, Message& msg,
                                                         publish_options options) {
    // What the publish lets go of (messages dropped or dead-lettered on its way, perhaps
    // the stored message itself) goes once the lock is released.
    const detail::deferred_release::scope releases_after_unlock;
    detail::ref_ptr<exchange_node> node;
    detail::ref_ptr<node_type> stored;
    confirmation outcome;
    {
        shared_lock lock(topology_);
        node = exchanges_.slot(exchanges_.get(exchange).index);
        outcome = route_and_push(*node, msg, stored);
    }
    return finish_publish(outcome, *node, msg, options);
}

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::publish_to(exchange_node& exchange, Message& msg, publish_options options) {
    const detail::deferred_release::scope releases_after_unlock;
    detail::ref_ptr<node_type> stored;
    confirmation outcome;
    {
        shared_lock lock(topology_);
        if (exchange.deleted) detail::raise(reply_code::not_found, "no exchange " + detail::quoted(exchange.name));
        outcome = route_and_push(exchange, msg, stored);
    }
    return finish_publish(outcome, exchange, msg, options);
}

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::finish_publish(confirmation outcome, exchange_node& exchange, Message& msg,
                                                           publish_options options) {
    // A message some queue refused was routed: it is nacked, never returned.
    if (outcome.routed > 0 || outcome.refused > 0 || !options.mandatory) return outcome;
    std::shared_ptr<const return_handler> handler;
    {
        shared_lock lock(topology_);
        handler = return_handler_;
    }
    exchange.returned.fetch_add(1, std::memory_order_relaxed);
    outcome.returned = true;
    if (handler) {
        returned_message returned{reply_code::no_route, "NO_ROUTE", exchange.name, std::move(msg)};
        (*handler)(returned);
    }
    return outcome;
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
    {
        unique_lock lock(topology_);
        std::swap(return_handler_, replaced);
    } // the old handler, perhaps its last reference, goes here: after the lock
}

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::route_and_push(exchange_node& exchange, Message& msg,
                                                           detail::ref_ptr<node_type>& stored) {
    detail::check_length(msg.routing_key, "routing key");
    detail::validate_table(msg.properties.headers, "message headers");
    if (exchange.options.internal) {
        detail::raise(reply_code::access_refused,
                      "cannot publish to internal exchange " + detail::quoted(exchange.name));
    }
    std::optional<std::chrono::milliseconds> ttl; // RabbitMQ checks it before routing
    if (msg.properties.expiration) {
        ttl = detail::parse_expiration(*msg.properties.expiration);
        if (!expiring_messages_.load(std::memory_order_relaxed)) expiring_messages_.store(true, std::memory_order_relaxed);
    }
    exchange.published.fetch_add(1, std::memory_order_relaxed);
    thread_local std::vector<destination> targets;
    route(exchange, routing_view{msg.routing_key, msg.properties}, targets);
    confirmation outcome;
    if (targets.empty()) {
        exchange.unroutable.fetch_add(1, std::memory_order_relaxed);
        return outcome;
    }
    // One immutable node, shared by every queue that gets the message.
    stored = detail::make_ref<node_type>(std::move(msg), exchange.shared_name, ttl);
    thread_local std::vector<pending_dead_letter> work;
    work.clear();
    push_to_queues(stored, targets, outcome, work, nullptr);
    if (outcome.refused > 0) {
        outcome.ack = false;
        exchange.nacked.fetch_add(1, std::memory_order_relaxed);
    }
    if (!work.empty()) route_dead_letters(work);
    return outcome;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::push_to_queues(const detail::ref_ptr<node_type>& node,
                                                   const std::vector<destination>& targets, confirmation& outcome,
                                                   std::vector<pending_dead_letter>& work, const field_table* cycle_check,
                                                   std::uint32_t hops) {
    thread_local dead_letters dead;
    for (const destination d : targets) {
        const detail::ref_ptr<queue_type>& queue = queues_.slot(d.index());
        if (cycle_check != nullptr && detail::is_dead_letter_cycle(*cycle_check, queue->name())) {
            // A fully automatic dead-letter cycle: RabbitMQ drops the message for this queue.
            dead_letter_cycles_.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        dead.clear();
        switch (queue->push(node, dead)) {
        case queue_type::push_result::accepted: ++outcome.routed; break;
        case queue_type::push_result::refused: ++outcome.refused; break;
        case queue_type::push_result::closed: break;
        }
        for (auto& letter : dead) {
            work.push_back(pending_dead_letter{queue, std::move(letter.message), letter.reason, hops});
        }
    }
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::route_dead_letters(std::vector<pending_dead_letter>& work) {
    if constexpr (std::is_copy_constructible_v<Message>) {
        std::vector<destination> targets;
        // In order, so dead letters reach their queues in the order they died; routing one
        // may add more (a full queue dropping its head), which join the end.
        for (std::size_t i = 0; i < work.size(); ++i) {
            // Its references (the message, perhaps the last one, and its queue) go once
            // the lock is released.
            struct release_later {
                pending_dead_letter& l;
                ~release_later() {
                    detail::deferred_release::defer(std::move(l.message));
                    detail::deferred_release::defer(std::move(l.from));
                }
            };
            pending_dead_letter letter = std::move(work[i]);
            const release_later keep_until_unlocked{letter};
            if (letter.hops >= max_dead_letter_hops) {
                dead_letter_cycles_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            const queue_arguments& args = letter.from->arguments();
            exchange_node* found = exchanges_.find(*args.dead_letter_exchange);
            if (found == nullptr) {
                dead_letters_without_exchange_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            exchange_node& dlx = *found;
            // rabbit_dead_letter:make_msg: x-death, the dead-letter routing key, no expiration.
            const Message& original = letter.message->message;
            Message copy = original;
            detail::record_death(copy.properties.headers,
                                 {letter.reason, letter.from->name(), letter.message->exchange_name(), original.routing_key,
                                  clock_->unix_seconds(), original.properties.expiration});
            copy.properties.expiration.reset();
            if (args.dead_letter_routing_key) {
                copy.routing_key = *args.dead_letter_routing_key;
                copy.properties.headers.erase("CC");
            }
            dlx.published.fetch_add(1, std::memory_order_relaxed);
            // The copy is stored before it is routed, so that whatever becomes of it (no
            // route, every queue refusing it) it is let go of after the lock, as a copy of
            // a user's body is user code.
            auto node = detail::make_ref<node_type>(std::move(copy), dlx.shared_name);
            route(dlx, routing_view{node->message.routing_key, node->message.properties}, targets);
            if (targets.empty()) {
                dlx.unroutable.fetch_add(1, std::memory_order_relaxed);
            } else {
                confirmation ignored;
                push_to_queues(node, targets, ignored, work, &node->message.properties.headers, letter.hops + 1);
            }
            detail::deferred_release::defer(std::move(node));
        }
    } else {
        (void)work; // declare_queue refuses dead-letter exchanges for move-only messages
    }
    work.clear(); // every entry was moved from
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::dead_letter(queue_type& from, dead_letters& letters) {
    std::vector<pending_dead_letter> work;
    work.reserve(letters.size());
    for (auto& letter : letters) {
        work.push_back(pending_dead_letter{detail::ref_ptr<queue_type>(&from), std::move(letter.message), letter.reason});
    }
    letters.clear();
    shared_lock lock(topology_);
    route_dead_letters(work);
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::exchange_stats(std::string_view name) const -> exchange_counters {
    shared_lock lock(topology_);
    return exchanges_.get(name).counters();
}

template <message_type Message, threading_policy Policy>
topology_snapshot basic_broker<Message, Policy>::snapshot() const {
    shared_lock lock(topology_);
    topology_snapshot out;
    exchanges_.for_each([&](const exchange_node& x) {
        out.exchanges.push_back({x.name, x.type, x.options.durable, x.options.auto_delete, x.options.internal,
                                 x.options.arguments, x.counters()});
        bindings_.for_each_from(x.index, [&](const detail::binding& b) {
            const bool to_exchange = b.target.type() == destination::kind::exchange;
            const std::string& name =
                to_exchange ? exchanges_.slot(b.target.index())->name : queues_.slot(b.target.index())->name();
            out.bindings.push_back({x.name, name, to_exchange, b.key, b.arguments});
        });
    });
    std::sort(out.exchanges.begin(), out.exchanges.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    std::sort(out.bindings.begin(), out.bindings.end(), [](const auto& a, const auto& b) {
        return std::tie(a.source, a.destination, a.key) < std::tie(b.source, b.destination, b.key);
    });
    for (const auto& q : queues_.list().queues) {
        if (!q) continue; // deleted
        out.queues.push_back({q->name(), q->options(), q->counters()});
        for (const auto& [id, options] : q->consumer_list()) {
            out.consumers.push_back({q->name(), options.tag, options.ack, options.prefetch, options.exclusive,
                                     options.priority, q->is_active_consumer(id)});
        }
    }
    return out;
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::expire() {
    detail::ref_ptr<queue_list> list;
    {
        shared_lock lock(topology_);
        list = queues_.walk();
    }
    std::size_t expired = 0;
    bool unused = false;
    const clock::time_point now = clock_->now();
    for (const auto& queue : list->queues) {
        if (!queue) continue; // deleted
        if (queue->may_expire()) expired += queue->expire();
        unused = unused || queue->unused_too_long(now);
    }
    if (unused) { // x-expires: delete the queues unused for too long
        const detail::deferred_release::scope releases_after_unlock;
        unique_lock lock(topology_);
        for (const auto& queue : list->queues) {
            if (!queue) continue;
            const auto index = queues_.slot_of(*queue);
            if (!index) continue;
            // Still unused, checked as it closes: a consumer that subscribed meanwhile
            // keeps it, so x-expires never cancels one.
            if (queue->close_if_unused(now)) remove_queue_locked(*index);
        }
    }
    return expired;
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::make_publisher(std::string_view exchange) -> publisher {
    shared_lock lock(topology_);
    return publisher(this, exchanges_.slot(exchanges_.get(exchange).index));
}

// ---------------------------------------------------------------------------------------
// consuming

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::try_get(std::string_view queue, ack_mode mode) -> std::optional<delivery> {
    return find_queue_ref(queue)->try_get(mode);
}

template <message_type Message, threading_policy Policy>
template <class Rep, class Period>
    requires Policy::thread_safe
auto basic_broker<Message, Policy>::try_get_for(std::string_view queue, std::chrono::duration<Rep, Period> timeout,
                                                ack_mode mode) -> std::optional<delivery> {
    return find_queue_ref(queue)->try_get_for(timeout, mode);
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
    if (options.tag.empty()) options.tag = generate_name("amq.ctag-", 2 * id + 1);
    std::string tag = options.tag;
    target->add_consumer(id, std::move(options), std::move(fn));
    return subscription(this, std::move(target), id, std::move(tag));
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::delete_auto_delete_queue(queue_type& queue) noexcept {
    const detail::deferred_release::scope releases_after_unlock;
    unique_lock lock(topology_);
    // Another thread may have subscribed since the last consumer left: then the queue is in
    // use again and stays, as in RabbitMQ. The check and the closing are one step, so no
    // consumer is ever cancelled here (and no on_cancel can throw into this noexcept path).
    if (const auto index = queues_.slot_of(queue); index && queue.close_if_unused()) {
        remove_queue_locked(*index);
    }
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::set_error_handler(error_handler handler) {
    std::shared_ptr<const error_handler> replaced = handler ? std::make_shared<const error_handler>(std::move(handler)) : nullptr;
    {
        unique_lock lock(topology_);
        std::swap(error_handler_, replaced);
    } // the old handler, perhaps its last reference, goes here: after the lock
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::report(std::exception_ptr failure, const std::string& queue,
                                           const std::string& consumer_tag, std::uint64_t delivery_tag) {
    std::shared_ptr<const error_handler> handler;
    {
        shared_lock lock(topology_);
        handler = error_handler_;
    }
    if (!handler) std::rethrow_exception(failure);
    (*handler)(consumer_error{std::move(failure), queue, consumer_tag, delivery_tag});
}

template <message_type Message, threading_policy Policy>
bool basic_broker<Message, Policy>::run_callback(typename queue_type::pending_callback& pending, queue_type& queue) {
    std::exception_ptr failure;
    try {
        pending.target->callback(pending.delivery);
    } catch (...) {
        failure = std::current_exception();
    }
    const std::uint64_t tag = pending.delivery.delivery_tag();
    if (failure && pending.delivery.pending()) {
        pending.delivery.reject(false); // see the class comment: no endless redelivery
    }
    queue.finish(*pending.target);
    if (failure) report(std::move(failure), queue.name(), pending.target->options.tag, tag);
    return true;
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::dispatch(std::size_t max_messages) {
    return dispatch_some(max_messages, [] { return false; });
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
    if (timed_queues_.load(std::memory_order_relaxed) > 0 || expiring_messages_.load(std::memory_order_relaxed)) {
        expire(); // what RabbitMQ's timers would have done by now
    }
    detail::ref_ptr<queue_list> list;
    {
        shared_lock lock(topology_);
        list = queues_.walk();
    }
    const std::size_t n = list->queues.size();
    if (n == 0) return 0;
    // Rounds go on from the queue after the last one served, so a small budget per call
    // (one frame's worth) still reaches every queue in turn.
    std::size_t next = dispatch_cursor_.load(std::memory_order_relaxed) % n;
    std::size_t delivered = 0;
    std::size_t idle = 0; // queues in a row that had nothing to deliver
    while (delivered < max_messages && idle < n) {
        if (stop()) break;
        queue_type* queue = list->queues[next].get();
        next = next + 1 == n ? 0 : next + 1;
        auto pending = queue == nullptr ? std::nullopt : queue->next_callback(); // null: deleted
        if (!pending) {
            ++idle;
            continue;
        }
        idle = 0;
        ++delivered;
        dispatch_cursor_.store(next, std::memory_order_relaxed);
        run_callback(*pending, *queue);
    }
    return delivered;
}

} // namespace warren
