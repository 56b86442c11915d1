#pragma once
/// @file broker.hpp
/// basic_broker: exchanges and queues by name; declare, bind, publish, consume, dispatch.
/// The facade: each member checks, locks and hands the work to one of the components
/// under detail/broker/ (docs/architecture.md draws them). Over 600 lines for a reason:
/// it is the whole public class with its documentation (about 200 lines), and the member
/// definitions stay out of the class so that the compiled mode (compiled.hpp) stops
/// instantiation here; about 480 lines are code.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "clock.hpp"
#include "delivery.hpp"
#if !defined(WARREN_COMPILED_LIB)
// The built-in exchange types, which the constructor registers; in the compiled mode the
// constructor is in the library, and these headers are for the programs that use them.
#    include "direct_exchange.hpp"
#    include "fanout_exchange.hpp"
#    include "headers_exchange.hpp"
#    include "topic_exchange.hpp"
#else
namespace warren {
class direct_exchange;
class fanout_exchange;
class headers_exchange;
class topic_exchange;
} // namespace warren
#endif
#include "detail/broker/dead_letter_router.hpp"
#include "detail/broker/declare_rules.hpp"
#include "detail/broker/direct_reply_to.hpp"
#include "detail/broker/dispatcher.hpp"
#include "detail/broker/publish_path.hpp"
#include "detail/broker/snapshot.hpp"
#include "detail/broker/virtual_host.hpp"
#include "detail/core/deferred_release.hpp"
#include "detail/core/function_ref.hpp"
#include "detail/core/saturate.hpp"
#include "handlers.hpp"
#include "options.hpp"
#include "policy.hpp"
#include "publisher.hpp"
#include "queue.hpp"
#include "queue_handle.hpp"
#include "stats.hpp"
#include "subscription.hpp"
#include "topology.hpp"
#include "typed_callback.hpp"

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
    using body_type = typename Message::body_type;
    using policy_type = Policy;
    using queue_type = basic_queue<Message, Policy>;
    using delivery = basic_delivery<Message, Policy>;
    using subscription = basic_subscription<basic_broker>;
    using publisher = basic_publisher<basic_broker>;
    using queue_handle = basic_queue_handle<basic_broker>;
    using callback = typename queue_type::callback_type;
    using error_handler = typename detail::dispatcher<Message, Policy>::error_handler;
    using returned_message = basic_returned_message<Message>;
    using return_handler = typename detail::publish_path<Message, Policy>::return_handler;

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
    void register_exchange_type() {
        unique_lock lock(topology_);
        vhost_.exchanges().template register_type<E>();
    }

    /// Declares an exchange. Redeclaring with the same type and options does nothing; with
    /// others it is precondition_failed (406). An unknown type is command_invalid (503); a
    /// name starting with `amq.` or empty is access_refused (403).
    void declare_exchange(std::string_view name, std::string_view type, const exchange_options& options = {});
    /// Whether an exchange of that name exists (a passive declare).
    [[nodiscard]] bool has_exchange(std::string_view name) const {
        shared_lock lock(topology_);
        return vhost_.exchanges().find(name) != nullptr;
    }
    /// Deletes an exchange and its bindings. Deleting one that does not exist does
    /// nothing, as in RabbitMQ. With `if_unused`, refuses (406) while it has bindings.
    void delete_exchange(std::string_view name, bool if_unused = false);

    /// Declares a queue and returns its name; an empty name gets a generated one
    /// (`amq.gen-...`). Redeclaring with the same options does nothing; with others it is
    /// precondition_failed (406). As in RabbitMQ, declaring "amq.rabbitmq.reply-to", or a
    /// reply address while its requester consumes, creates nothing and returns the name
    /// (whatever the options); a reply address whose requester left is not_found.
    std::string declare_queue(std::string_view name = {}, const queue_options& options = {});
    /// Whether a queue of that name exists (a passive declare). The direct reply-to
    /// pseudo-queue "amq.rabbitmq.reply-to" always does, and a reply address
    /// ("amq.rabbitmq.reply-to.<token>") while its requester consumes: RabbitMQ's way for a
    /// responder to check that the requester is still there before working for it.
    [[nodiscard]] bool has_queue(std::string_view name) const {
        if (name == direct_reply_to_queue) return true;
        shared_lock lock(topology_);
        return vhost_.queue_slots().contains(name);
    }
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
                    const field_table& arguments = {}) {
        change_binding(true, exchange, exchange.empty(), destination::kind::queue, queue, binding_key, arguments);
    }
    /// Removes a binding; removing one that does not exist does nothing.
    void unbind_queue(std::string_view queue, std::string_view exchange, std::string_view binding_key = {},
                      const field_table& arguments = {}) {
        change_binding(false, exchange, exchange.empty(), destination::kind::queue, queue, binding_key, arguments);
    }
    /// Binds exchange `destination` to exchange `source`: what `source` routes there,
    /// `destination` routes on. Cycles are allowed; a queue still gets one copy.
    void bind_exchange(std::string_view destination, std::string_view source, std::string_view binding_key = {},
                       const field_table& arguments = {}) {
        change_binding(true, source, source.empty() || destination.empty(), destination::kind::exchange, destination,
                       binding_key, arguments);
    }
    /// Removes an exchange-to-exchange binding; a missing one does nothing.
    void unbind_exchange(std::string_view destination, std::string_view source, std::string_view binding_key = {},
                         const field_table& arguments = {}) {
        change_binding(false, source, source.empty() || destination.empty(), destination::kind::exchange, destination,
                       binding_key, arguments);
    }

    // -- publishing ----------------------------------------------------------------------

    /// Routes `msg` through `exchange` ("" is the default exchange) and returns how many
    /// queues got it; 0 means it was unroutable, and with `options.mandatory` it then goes
    /// to the return handler (after the topology lock is released, so the handler may use
    /// the broker). Alternate exchanges are followed as in RabbitMQ; a message an alternate
    /// exchange routes counts as routed. Unknown exchange: not_found (404); internal
    /// exchange: access_refused (403); key over 255 bytes: precondition_failed.
    [[nodiscard]] std::size_t publish(std::string_view exchange, Message&& msg, publish_options options = {}) {
        return publish_confirmed(exchange, std::move(msg), options).routed;
    }
    /// Publishes a copy of `msg`.
    [[nodiscard]] std::size_t publish(std::string_view exchange, const Message& msg, publish_options options = {}) {
        return publish_confirmed(exchange, Message(msg), options).routed;
    }
    /// Publishes as publish() does and reports what a publisher in AMQP confirm mode
    /// learns: ack, or nack when a queue refused the message at its length limit
    /// (x-overflow reject-publish or reject-publish-dlx). A mandatory message that no queue
    /// took has gone to the return handler before this returns, as basic.return comes
    /// before basic.ack. Errors as for publish().
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, Message&& msg, publish_options options = {}) {
        auto parts = outgoing::of(msg);
        return publish_to(nullptr, exchange, parts, options);
    }
    /// Publishes a copy of `msg` and reports the confirm.
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, const Message& msg,
                                                 publish_options options = {}) {
        return publish_confirmed(exchange, Message(msg), options);
    }
    /// Publishes a message of `routing_key` and `body` with no properties, as
    /// publish(exchange, msg) does, without building a basic_message: the key is read in
    /// place and stored after the message (no allocation of its own, at any length up to
    /// 255 bytes), and `body` is moved into the stored message once, only when it is
    /// routed. A mandatory message that no queue took goes to the return handler as a
    /// basic_message. Returns how many queues got it. Errors as for publish(exchange, msg):
    /// unknown exchange not_found, internal exchange access_refused, a key over 255 bytes
    /// precondition_failed; what the body's move throws leaves nothing stored. Thread-safe
    /// under multi_threaded.
    [[nodiscard]] std::size_t publish(std::string_view exchange, std::string_view routing_key, body_type body,
                                      publish_options options = {}) {
        return publish_confirmed(exchange, routing_key, std::move(body), options).routed;
    }
    /// Publishes a message of `routing_key` and `body` as publish(exchange, routing_key,
    /// body) does and reports the confirm, as publish_confirmed(exchange, msg) does.
    /// Errors as for publish(). Thread-safe under multi_threaded.
    [[nodiscard]] confirmation publish_confirmed(std::string_view exchange, std::string_view routing_key, body_type body,
                                                 publish_options options = {}) {
        outgoing parts{routing_key, body, nullptr};
        return publish_to(nullptr, exchange, parts, options);
    }
    /// Publishes one message of `routing_key` and no properties per element of `bodies`,
    /// in order, moving from each, as that many publish(exchange, routing_key, body) calls
    /// would, but routed once and with one lock per queue for the whole batch (and, under
    /// multi_threaded, one topology lock). Returns how many deliveries to queues it made
    /// (the sum of what each publish() would return). Mandatory messages that no queue took
    /// go to the return handler one by one, in order. Dead letters the batch causes (a
    /// queue dropping its head at its length limit) are routed once all are pushed, queue by
    /// queue, as RabbitMQ's queues dead-letter apart from the channel's publishes. Errors as
    /// for publish(), before any body is moved; a failure to allocate moves some bodies and
    /// publishes none. Thread-safe under multi_threaded.
    [[nodiscard]] std::size_t publish_many(std::string_view exchange, std::string_view routing_key,
                                           std::span<body_type> bodies, publish_options options = {}) {
        return publish_many_to(nullptr, exchange, routing_key, bodies, options);
    }
    /// A publisher for `exchange`, which resolves it once. Unknown exchange: not_found.
    [[nodiscard]] publisher make_publisher(std::string_view exchange) {
        shared_lock lock(topology_);
        const auto& exchanges = vhost_.exchanges();
        return publisher(this, exchanges.slot(exchanges.get(exchange).index));
    }

    // -- consuming -----------------------------------------------------------------------

    /// Takes the next message of `queue`, as AMQP basic.get does, or nothing if it is
    /// empty. With ack_mode::manual the delivery must be settled. Unknown queue: not_found.
    [[nodiscard]] std::optional<delivery> try_get(std::string_view queue, ack_mode mode = ack_mode::automatic);

    /// Like try_get, but waits up to `timeout` for a message. multi_threaded only.
    template <class Rep, class Period>
        requires Policy::thread_safe
    [[nodiscard]] std::optional<delivery> try_get_for(std::string_view queue, std::chrono::duration<Rep, Period> timeout,
                                                      ack_mode mode = ack_mode::automatic) {
        auto q = find_queue_ref(queue);
        // Through the gate, not this broker: another thread may destroy the broker meanwhile.
        return q->try_get_for(timeout, mode, [&q](dead_letters& dead) { detail::route_through_gate(*q, dead); });
    }

    /// A handle that takes from `queue` with no name lookup (see basic_queue_handle).
    /// Unknown queue: not_found.
    [[nodiscard]] queue_handle make_queue_handle(std::string_view queue) const { return queue_handle(find_queue_ref(queue)); }

    /// Subscribes `fn` to `queue`. The callback runs inside dispatch(); the subscription
    /// lasts as long as the returned handle. An empty tag gets a generated one.
    ///
    /// RabbitMQ's direct reply-to: subscribing to the pseudo-queue "amq.rabbitmq.reply-to"
    /// (which is never declared) makes a reply consumer. A message published with reply_to
    /// = "amq.rabbitmq.reply-to" then has it rewritten to this consumer's address,
    /// "amq.rabbitmq.reply-to.<token>" (the handle's queue()); a responder publishes its
    /// reply to the default exchange with that routing key, and the reply goes to this
    /// callback alone. warren has no channels, so the consumer tag stands for the channel:
    /// the publish names the tag in publish_options::reply_consumer, or names none when
    /// there is a single reply consumer. Replies are at most once: settled as they are
    /// handed out (a callback that throws does not get its reply again), never requeued,
    /// and dropped once the subscription ends (then publishing to its address routes to
    /// nothing, and a new subscription gets a new address). Refused, as RabbitMQ refuses
    /// them (precondition_failed): ack_mode::manual ("reply consumer cannot acknowledge"),
    /// a second reply consumer with the same tag ("reply consumer already set"), and
    /// publishing reply_to = "amq.rabbitmq.reply-to" with no reply consumer, or naming a
    /// tag that has none ("fast reply consumer does not exist") or, with several, naming
    /// none. The pseudo-queue and the addresses cannot be bound to, got from (try_get),
    /// purged or counted (not_found), deleting them does nothing, and they do not appear in
    /// snapshot(). consumer_options::synchronous works as for a queue; exclusive, prefetch
    /// and priority mean nothing for a reply consumer.
    [[nodiscard]] subscription subscribe(std::string_view queue, callback fn, consumer_options options = {});
    /// Subscribes `fn`, which takes one alternative `Event` of a std::variant body, as
    /// `fn(const Event&)` or `fn(const Event&, delivery&)`: one index test per message; a
    /// message holding another alternative is rejected and reported (see typed_callback).
    template <class Event, class Fn>
        requires alternative_of<Event, typename Message::body_type> && event_handler<Fn, Event, delivery>
    [[nodiscard]] subscription subscribe(std::string_view queue, Fn fn, consumer_options options = {}) {
        return subscribe(queue, typed_callback<Event, delivery>(std::move(fn)), std::move(options));
    }

    /// Runs consumer callbacks for up to `max_messages` ready messages; returns how many
    /// were delivered. See the class comment for the order and for throwing callbacks.
    /// Applies time first (see expire()) when a queue can hold expiring messages or has
    /// x-expires.
    std::size_t dispatch(std::size_t max_messages = std::numeric_limits<std::size_t>::max()) {
        return dispatch_some(max_messages, {});
    }
    /// Like dispatch(), but also stops once `deadline` has passed on its own clock:
    /// std::chrono::steady_clock, or any monotonic chrono clock the caller passes. A frame
    /// budget is wall time, independent of the broker's clock, which ages messages and may
    /// be simulation time (a warren::clock time point does not compile here). The clock is
    /// read before each delivery, so a frame's drain overruns its deadline by at most one
    /// callback; a deadline already past delivers nothing.
    template <class Clock, class Duration>
    std::size_t dispatch_until(std::chrono::time_point<Clock, Duration> deadline,
                               std::size_t max_messages = std::numeric_limits<std::size_t>::max()) {
        static_assert(requires { Clock::now(); } && Clock::is_steady,
                      "dispatch_until takes a deadline on a monotonic chrono clock such as std::chrono::steady_clock: "
                      "a frame budget is wall time, while the broker's clock (warren::clock) ages messages and may "
                      "be simulation time");
        return dispatch_some(max_messages, [deadline] { return Clock::now() >= deadline; });
    }
    /// dispatch_until(std::chrono::steady_clock::now() + budget), the sum saturating: a
    /// budget of hours::max() is no time limit, a negative or NaN one delivers nothing.
    template <class Rep, class Period>
    std::size_t dispatch_for(std::chrono::duration<Rep, Period> budget,
                             std::size_t max_messages = std::numeric_limits<std::size_t>::max()) {
        // Saturating: a NaN or negative budget makes the deadline now, which delivers nothing.
        return dispatch_until(detail::saturating_add(std::chrono::steady_clock::now(), budget), max_messages);
    }

    /// Applies the passage of time: removes the expired messages at the heads of queues
    /// (dead-lettering them where the queue has a dead-letter exchange) and deletes the
    /// queues unused for longer than their x-expires. RabbitMQ does this on timers; warren
    /// does it here, in dispatch(), and for a queue whenever it is read (try_get,
    /// message_count, queue_stats). Returns how many messages expired.
    std::size_t expire();

    /// Routing keys each topic exchange remembers the route of, by default.
    static constexpr std::size_t default_routing_cache_capacity = 1024;
    /// How deeply publishes from synchronous callbacks (consumer_options::synchronous)
    /// nest on one thread; the synchronous receivers of a publish deeper than that wait for
    /// dispatch(), so the stack stays bounded.
    static constexpr std::size_t max_synchronous_depth = detail::max_synchronous_depth;

    /// Sizes the routing cache of every exchange whose type has one (topic), now and for
    /// exchanges declared later; 0 turns caching off. single_threaded only: a cached route
    /// writes to the cache. Owner thread.
    void set_routing_cache_capacity(std::size_t entries)
        requires(!Policy::thread_safe)
    {
        routing_cache_capacity_ = entries;
        vhost_.exchanges().for_each([&](exchange_node& x) {
            if (x.impl) x.impl->set_cache_capacity(entries);
        });
    }

    /// What the routing caches of all exchanges did since they were last sized, summed:
    /// lookups, hits, admissions, and routes that went past a cache stepping aside (see
    /// topic_matcher::set_cache_capacity). single_threaded only. Owner thread.
    [[nodiscard]] topic_cache_stats routing_cache_stats() const
        requires(!Policy::thread_safe)
    {
        topic_cache_stats total;
        vhost_.exchanges().for_each([&](const exchange_node& x) {
            if (x.impl) total += x.impl->cache_stats();
        });
        return total;
    }

    /// Gives back the memory kept for reusing message nodes on the calling thread. Under
    /// single_threaded each thread keeps the nodes of the messages it let go of, as many
    /// as it ever had in flight at once, so a frame loop stops allocating once warm;
    /// each dispatch() then applies an idle rule: beyond twice the most nodes in flight
    /// since the previous dispatch() plus 4,096, the nodes it keeps are freed. shrink()
    /// frees them all now. (The pool is the thread's, shared by its brokers whose nodes
    /// have the same size.) Under multi_threaded, where messages are freed on other
    /// threads than the ones that made them, each thread keeps fewer than 128 nodes per
    /// size and passes them on 64 at a time through a depot of at most 65,536, shared by
    /// every thread: shrink() frees the calling thread's and the depot's.
    void shrink() noexcept { node_type::shrink_pool(); }

    /// Where mandatory messages that no queue took go. Without a handler they are dropped
    /// (publish() returned 0 for them). The handler replaced is destroyed after the
    /// broker's locks are released.
    void set_return_handler(return_handler handler);

    /// Where exceptions from consumer callbacks and on_cancel notifications go. Without a
    /// handler (the default), dispatch() and delete_queue() rethrow them. The handler
    /// replaced is destroyed after the broker's locks are released.
    void set_error_handler(error_handler handler);

    // -- observation ---------------------------------------------------------------------

    /// The clock the broker reads time from (the one it was made with, or the steady
    /// clock), for code that must agree with its TTLs, e.g. rpc_client's timeouts.
    /// Thread-safe.
    [[nodiscard]] const clock& time_source() const noexcept { return *clock_; }
    /// Ready messages in `queue`, after removing expired ones at its head. Unknown queue:
    /// not_found.
    [[nodiscard]] std::size_t message_count(std::string_view queue) const;
    /// Consumers of `queue`. Unknown queue: not_found.
    [[nodiscard]] std::size_t consumer_count(std::string_view queue) const { return find_queue_ref(queue)->consumer_count(); }
    /// The counters of `queue`, after removing expired ones at its head. They are kept
    /// under the queue's own lock, so reading them costs publishing nothing. Unknown queue:
    /// not_found.
    [[nodiscard]] queue_counters queue_stats(std::string_view queue) const;
    /// The counters of `exchange`. Unknown exchange: not_found.
    [[nodiscard]] exchange_counters exchange_stats(std::string_view exchange) const {
        shared_lock lock(topology_);
        return vhost_.exchanges().get(exchange).counters();
    }
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
    using node_type = detail::message_node<Message, Policy>;
    using vhost_type = detail::virtual_host<Message, Policy>;
    using router_type = detail::dead_letter_router<Message, Policy>;
    using dead_letters = typename queue_type::dead_letters;
    using shared_lock = std::shared_lock<typename Policy::shared_mutex>;
    using unique_lock = std::unique_lock<typename Policy::shared_mutex>;

    using outgoing = detail::outgoing_message<body_type>;
    using synchronous = typename detail::dead_letter_router<Message, Policy>::synchronous;
    /// Publishes `msg`, moving from its parts once it is routed (its body moved once into
    /// the stored message). `exchange` null: by name.
    confirmation publish_to(exchange_node* exchange, std::string_view name, outgoing& msg, publish_options options,
                            detail::route_memo* memo = nullptr);
    /// Publishes a batch (see publish_many). `exchange` null: by name.
    std::size_t publish_many_to(exchange_node* exchange, std::string_view name, std::string_view routing_key,
                                std::span<body_type> bodies, publish_options options, detail::route_memo* memo = nullptr);
    /// The exchange a publish goes to: `exchange`, unless it was deleted (not_found), or the
    /// one named `name` when `exchange` is null. Topology lock held (shared).
    detail::ref_ptr<exchange_node> publishing_exchange(exchange_node* exchange, std::string_view name) const;
    /// Binds (`add`) or unbinds the queue or exchange `target` to exchange `source`: the
    /// checks and lookups of the four bind and unbind members, in RabbitMQ's order.
    void change_binding(bool add, std::string_view source, bool names_default_exchange, destination::kind target_kind,
                        std::string_view target, std::string_view key, const field_table& arguments);
    /// The subscription of a consumer of `queue` ended: routes what that let go of and
    /// deletes an auto-delete queue that lost its last consumer.
    void consumer_ended(queue_type& queue, dead_letters& dead, bool last_consumer_gone) noexcept;
    /// Delivers until `max_messages`, no consumer can take more, or `stop()` (if given) says so.
    std::size_t dispatch_some(std::size_t max_messages, detail::function_ref<bool()> stop);
    /// Calls `f(cursor)` for a change that may compact the queue list, keeping the
    /// dispatcher's cursor on the same queue. Topology lock held (unique).
    template <class F>
    void moving_cursor(F&& f) {
        const std::size_t before = dispatcher_.cursor();
        std::size_t cursor = before;
        f(cursor);
        if (cursor != before) dispatcher_.move_cursor(cursor);
    }
    /// Removes the expired heads of `queue` and routes their dead letters.
    void expire_heads(queue_type& queue) const;
    /// The queue named `name`; not_found if none, and for the direct reply-to names, which
    /// name no queue a user may take from or count.
    [[nodiscard]] detail::ref_ptr<queue_type> find_queue_ref(std::string_view name) const {
        if (detail::names_direct_reply_to(name)) [[unlikely]] {
            detail::raise(reply_code::not_found, "no queue " + detail::quoted(name));
        }
        shared_lock lock(topology_);
        return vhost_.find_queue(name);
    }
    /// subscribe() to "amq.rabbitmq.reply-to": a reply consumer, on a private auto-delete
    /// queue named by its address (see subscribe).
    subscription subscribe_direct_reply_to(callback fn, consumer_options options);
    /// A publish's reply_to of "amq.rabbitmq.reply-to" becomes the address of the reply
    /// consumer `options` names, in RabbitMQ's order: after the exchange's checks, before
    /// routing. Topology lock held (shared).
    void rewrite_direct_reply_to(const exchange_node& exchange, outgoing& msg, const publish_options& options) const {
        std::optional<std::string>& reply_to = msg.set_properties->reply_to;
        if (*reply_to != direct_reply_to_queue) return;
        detail::check_length(msg.routing_key, "routing key");
        publishing_.check_not_internal(exchange);
        *reply_to = direct_replies_.resolve(options.reply_consumer);
    }
    /// The queue named `name` (not_found if none), its expired heads removed.
    [[nodiscard]] detail::ref_ptr<queue_type> expired_queue(std::string_view name) const {
        auto queue = find_queue_ref(name);
        expire_heads(*queue);
        return queue;
    }

    const clock* clock_;
    mutable typename Policy::shared_mutex topology_; // guards the virtual host
    vhost_type vhost_{*clock_, &dead_letters_, detail::name_seed(this)};
    // Observers that apply time (message_count) route dead letters.
    mutable router_type dead_letters_{*clock_, topology_, vhost_.exchanges(), vhost_.queue_slots()};
    detail::dispatcher<Message, Policy> dispatcher_{dead_letters_};
    detail::publish_path<Message, Policy> publishing_{vhost_.exchanges(), vhost_.queue_slots(), dead_letters_};
    // A cached route writes to the cache, so only a single-threaded broker has one.
    std::size_t routing_cache_capacity_ = Policy::thread_safe ? 0 : default_routing_cache_capacity;
    typename Policy::template atomic<std::uint64_t> next_consumer_id_{0};
    detail::direct_reply_consumers direct_replies_; // guarded by topology_
};

// ---------------------------------------------------------------------------------------
// construction

template <message_type Message, threading_policy Policy>
basic_broker<Message, Policy>::basic_broker(const clock& time) : clock_(&time) {
    // Through `this`, so that the compiled mode's programs need only declare the types.
    this->template register_exchange_type<direct_exchange>();
    this->template register_exchange_type<fanout_exchange>();
    this->template register_exchange_type<topic_exchange>();
    this->template register_exchange_type<headers_exchange>();
    vhost_.add_predeclared_exchanges(routing_cache_capacity_);
}

template <message_type Message, threading_policy Policy>
basic_broker<Message, Policy>::~basic_broker() {
    // What the queues held (consumers with their callbacks, messages) is destroyed once
    // every queue is closed: a callback's captures may end subscriptions of other queues,
    // which then find them closed and touch nothing.
    const detail::deferred_release::scope releases_after_closing;
    const auto ended = vhost_.close_all();
}

// ---------------------------------------------------------------------------------------
// topology

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::declare_exchange(std::string_view name, std::string_view type, const exchange_options& options) {
    detail::check_length(name, "exchange name");
    detail::validate_table(options.arguments, "exchange arguments");
    unique_lock lock(topology_);
    vhost_.declare_exchange(name, type, options, routing_cache_capacity_);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::delete_exchange(std::string_view name, bool if_unused) {
    detail::check_exchange_deletable(name);
    const detail::deferred_release::scope releases_after_unlock; // the exchange type, user code
    unique_lock lock(topology_);
    vhost_.delete_exchange(name, if_unused);
}

template <message_type Message, threading_policy Policy>
std::string basic_broker<Message, Policy>::declare_queue(std::string_view name, const queue_options& options) {
    detail::check_length(name, "queue name");
    if (detail::names_direct_reply_to(name)) [[unlikely]] { // RabbitMQ: a passive declare, whatever the options
        if (!has_queue(name)) detail::raise(reply_code::not_found, "no queue " + detail::quoted(name));
        return std::string(name);
    }
    detail::validate_table(options.arguments, "queue arguments");
    const detail::deferred_release::scope releases_after_unlock; // a queue list a dispatch let go of
    unique_lock lock(topology_);
    return vhost_.declare_queue(name, options);
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::expire_heads(queue_type& queue) const {
    (void)dead_letters_.route_after(queue, [&](dead_letters& dead) { return queue.expire(dead); });
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::purge_queue(std::string_view name) {
    return expired_queue(name)->purge(); // expired heads are not purged: RabbitMQ's TTL timer removed them
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::delete_queue(std::string_view name, const queue_delete_options& options) {
    if (detail::names_direct_reply_to(name)) [[unlikely]] return 0; // not a queue: its consumer stays
    // Its messages, consumers and the queue itself go once the lock is released.
    const detail::deferred_release::scope releases_after_unlock;
    {
        // Expired heads go first, as RabbitMQ's TTL timer would have removed them (and
        // if_empty must not count them); not under the unique lock, which routing their
        // dead letters would need.
        detail::ref_ptr<queue_type> queue;
        {
            shared_lock lock(topology_);
            queue = vhost_.queue_or_null(name);
        }
        if (queue) expire_heads(*queue);
    }
    std::optional<typename vhost_type::closed_queue> closed;
    {
        unique_lock lock(topology_);
        moving_cursor([&](std::size_t& cursor) { closed = vhost_.delete_queue(name, options, cursor); });
    }
    if (!closed) return 0;
    dispatcher_.notify_cancelled(closed->name, closed->ended); // AMQP's basic.cancel, outside the lock
    return closed->dropped;
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::change_binding(bool add, std::string_view source, bool names_default_exchange,
                                                   destination::kind target_kind, std::string_view target,
                                                   std::string_view key, const field_table& arguments) {
    // RabbitMQ's order: the key and arguments, the default exchange, then the names, the
    // source first.
    if (add) {
        detail::check_length(key, "binding key");
        detail::validate_table(arguments, "binding arguments");
    }
    if (names_default_exchange) detail::refuse_default_exchange();
    const detail::deferred_release::scope releases_after_unlock; // an auto-deleted exchange
    unique_lock lock(topology_);
    exchange_node& from = vhost_.exchanges().get(source);
    if (target_kind == destination::kind::queue && detail::names_direct_reply_to(target)) [[unlikely]] {
        detail::raise(reply_code::not_found, "no queue " + detail::quoted(target)); // not a queue
    }
    const std::uint32_t index = target_kind == destination::kind::queue ? vhost_.queue_slots().index_of(target)
                                                                       : vhost_.exchanges().get(target).index;
    vhost_.change_binding(add, from, destination(target_kind, index), key, arguments);
}

// ---------------------------------------------------------------------------------------
// publishing

template <message_type Message, threading_policy Policy>
confirmation basic_broker<Message, Policy>::publish_to(exchange_node* exchange, std::string_view name, outgoing& msg,
                                                       publish_options options, detail::route_memo* memo) {
    confirmation outcome;
    {
        // What the publish lets go of (messages dropped or dead-lettered on its way,
        // perhaps the stored message itself) goes once the lock is released.
        const detail::deferred_release::scope releases_after_unlock;
        detail::ref_ptr<exchange_node> node;
        detail::ref_ptr<typename queue_type::node_type> stored;
        {
            shared_lock lock(topology_);
            node = publishing_exchange(exchange, name);
            if (msg.set_properties != nullptr && msg.set_properties->reply_to) [[unlikely]] {
                rewrite_direct_reply_to(*node, msg, options);
            }
            typename synchronous::collecting noting_synchronous_receivers(dispatcher_);
            outcome = publishing_.route_and_push(*node, msg, stored, memo, vhost_.version());
            noting_synchronous_receivers.keep();
        }
        if (publishing_.is_returned(outcome, options.mandatory)) publishing_.return_message(*node, msg, outcome);
    }
    synchronous::run(); // with no lock held and nothing left to release
    return outcome;
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::publishing_exchange(exchange_node* exchange, std::string_view name) const
    -> detail::ref_ptr<exchange_node> {
    if (exchange == nullptr) {
        const auto& exchanges = vhost_.exchanges();
        return exchanges.slot(exchanges.get(name).index);
    }
    if (exchange->deleted) detail::raise(reply_code::not_found, "no exchange " + detail::quoted(exchange->name));
    return detail::ref_ptr<exchange_node>(exchange);
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::publish_many_to(exchange_node* exchange, std::string_view name,
                                                           std::string_view routing_key, std::span<body_type> bodies,
                                                           publish_options options, detail::route_memo* memo) {
    // Per thread and used as stacks, so that once warm a batch allocates nothing: a return
    // handler may publish a batch of its own (on top, while this one's entries stay put).
    thread_local std::vector<confirmation> outcomes;
    thread_local std::vector<detail::ref_ptr<node_type>> stored;
    // Takes this batch's entries off both stacks however it ends; the stored nodes go with
    // no lock held (their bodies' destructors are user code).
    struct this_batch {
        std::size_t first_outcome, first_stored;
        void drop_stored() const {
            while (stored.size() > first_stored) stored.pop_back();
        }
        ~this_batch() {
            drop_stored();
            outcomes.resize(first_outcome);
        }
    } const batch{outcomes.size(), stored.size()};
    const std::size_t first_outcome = batch.first_outcome;
    outcomes.resize(first_outcome + bodies.size());
    std::size_t routed = 0;
    {
        const detail::deferred_release::scope releases_after_unlock;
        detail::ref_ptr<exchange_node> node;
        {
            shared_lock lock(topology_);
            node = publishing_exchange(exchange, name);
            typename synchronous::collecting noting_synchronous_receivers(dispatcher_);
            publishing_.route_and_push_many(*node, routing_key, bodies.data(), bodies.size(), stored,
                                            outcomes.data() + first_outcome, memo, vhost_.version());
            noting_synchronous_receivers.keep();
        }
        batch.drop_stored(); // nothing needs them once the lock is released; the returns read the bodies
        for (std::size_t i = 0; i < bodies.size(); ++i) {
            confirmation& outcome = outcomes[first_outcome + i]; // read anew: a handler's batch may move them
            routed += outcome.routed;
            if (publishing_.is_returned(outcome, options.mandatory)) {
                outgoing parts{routing_key, bodies[i], nullptr};
                confirmation returned = outcome;
                publishing_.return_message(*node, parts, returned);
            }
        }
    }
    synchronous::run(); // with no lock held and nothing left to release
    return routed;
}

// ---------------------------------------------------------------------------------------
// consuming

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::set_return_handler(return_handler handler) {
    publishing_.set_return_handler(std::move(handler));
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::try_get(std::string_view queue, ack_mode mode) -> std::optional<delivery> {
    auto q = find_queue_ref(queue);
    // Written out rather than through route_after, which would move the delivery once more.
    const detail::deferred_release::scope releases_after_unlock;
    dead_letters dead;
    auto got = q->try_get(mode, dead);
    dead_letters_.route_from(*q, dead);
    return got;
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::subscribe(std::string_view queue, callback fn, consumer_options options)
    -> subscription {
    WARREN_ASSERT(static_cast<bool>(fn), "subscribe needs a callback");
    detail::check_length(options.tag, "consumer tag");
    if (queue == direct_reply_to_queue) [[unlikely]] {
        return subscribe_direct_reply_to(std::move(fn), std::move(options));
    }
    detail::ref_ptr<queue_type> target = find_queue_ref(queue);
    const std::uint64_t id = next_consumer_id_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (options.tag.empty()) options.tag = vhost_.consumer_tag(id);
    std::string tag = options.tag;
    target->add_consumer(id, std::move(options), std::move(fn));
    return subscription(this, std::move(target), id, std::move(tag));
}

template <message_type Message, threading_policy Policy>
auto basic_broker<Message, Policy>::subscribe_direct_reply_to(callback fn, consumer_options options) -> subscription {
    // A reply is settled as it is handed out: there is no queue to return it to.
    if (options.ack != ack_mode::automatic) {
        detail::raise(reply_code::precondition_failed, "reply consumer cannot acknowledge");
    }
    const std::uint64_t id = next_consumer_id_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (options.tag.empty()) options.tag = vhost_.consumer_tag(id);
    options.exclusive = false; // its private queue has no other consumer anyway
    options.prefetch = 0;      // meaningless without acks
    std::string tag = options.tag;
    const std::string address = vhost_.reply_address(id);
    // If what follows throws, the private queue and its address go again (with the
    // topology lock taken anew: the lock below is released first).
    struct undo_unless_subscribed {
        basic_broker& broker;
        const std::string& address;
        bool made = false;
        bool subscribed = false;
        ~undo_unless_subscribed() {
            if (!made || subscribed) return;
            const detail::deferred_release::scope releases_after_unlock;
            unique_lock lock(broker.topology_);
            broker.direct_replies_.remove_address(address);
            broker.moving_cursor([&](std::size_t& cursor) { (void)broker.vhost_.delete_queue(address, {}, cursor); });
        }
    } undo{*this, address};
    detail::ref_ptr<queue_type> target;
    {
        const detail::deferred_release::scope releases_after_unlock;
        unique_lock lock(topology_);
        direct_replies_.check_free(tag);
        // auto_delete: it goes with its consumer (consumer_ended), and its address with it.
        target = vhost_.add_private_queue(address, {.auto_delete = true});
        undo.made = true;
        direct_replies_.add(tag, address);
    }
    // A request rewritten from here on is answered into the private queue, where the reply
    // waits for the consumer added next.
    target->add_consumer(id, std::move(options), std::move(fn));
    undo.subscribed = true;
    return subscription(this, std::move(target), id, std::move(tag));
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::consumer_ended(queue_type& queue, dead_letters& dead, bool last_consumer_gone) noexcept {
    dead_letters_.route_from(queue, dead);
    if (!last_consumer_gone || !queue.options().auto_delete) return;
    const detail::deferred_release::scope releases_after_unlock;
    unique_lock lock(topology_);
    // Another thread may have subscribed since the last consumer left: then the queue is in
    // use again and stays, as in RabbitMQ (no on_cancel can throw into this noexcept path).
    moving_cursor([&](std::size_t& cursor) { vhost_.delete_if_unused(queue, cursor); });
    // A direct reply-to consumer's private queue (which no one else can subscribe to) went
    // with it: replies to its address now route to nothing.
    if (detail::names_direct_reply_to(queue.name())) [[unlikely]] {
        direct_replies_.remove_address(queue.name());
    }
}

template <message_type Message, threading_policy Policy>
void basic_broker<Message, Policy>::set_error_handler(error_handler handler) {
    dispatcher_.set_error_handler(std::move(handler));
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::message_count(std::string_view queue) const {
    return expired_queue(queue)->message_count();
}

template <message_type Message, threading_policy Policy>
queue_counters basic_broker<Message, Policy>::queue_stats(std::string_view queue) const {
    return expired_queue(queue)->counters();
}

template <message_type Message, threading_policy Policy>
topology_snapshot basic_broker<Message, Policy>::snapshot() const {
    shared_lock lock(topology_);
    return detail::take_snapshot(vhost_.exchanges(), vhost_.queue_slots(), vhost_.bindings(),
                                 [](std::string_view queue) { return !detail::names_direct_reply_to(queue); });
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::expire() {
    detail::ref_ptr<typename vhost_type::queues::walk_list> list;
    {
        shared_lock lock(topology_);
        list = vhost_.queue_slots().walk();
    }
    const clock::time_point now = clock_->now();
    const auto result = dispatcher_.expire(*list, now);
    if (result.unused_queues) { // x-expires: delete the queues unused for too long
        const detail::deferred_release::scope releases_after_unlock;
        unique_lock lock(topology_);
        moving_cursor([&](std::size_t& cursor) { vhost_.delete_unused_queues(*list, now, cursor); });
    }
    return result.expired;
}

template <message_type Message, threading_policy Policy>
std::size_t basic_broker<Message, Policy>::dispatch_some(std::size_t max_messages, detail::function_ref<bool()> stop) {
    if (vhost_.has_timed_queues() || publishing_.expiring_seen()) expire(); // what RabbitMQ's timers would have done by now
    detail::ref_ptr<typename vhost_type::queues::walk_list> list;
    {
        shared_lock lock(topology_);
        list = vhost_.queue_slots().walk();
    }
    const std::size_t delivered = dispatcher_.run(*list, max_messages, stop);
    node_type::end_of_pool_period(); // the pool's idle rule (see shrink())
    return delivered;
}

} // namespace warren

// The compiled mode's declarations (nothing unless WARREN_COMPILED_LIB is defined).
#include "compiled.hpp"
