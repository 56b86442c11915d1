#pragma once
/// @file patterns/rpc_client.hpp
/// rpc_client: request/reply over a broker (RabbitMQ tutorial 6), built on the public
/// broker API only. A request carries reply_to and a correlation_id; the reply comes back
/// to the client's exclusive reply queue, or with direct reply-to straight to its reply
/// consumer, and finds its call by the correlation_id.

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "../broker.hpp"
#include "../clock.hpp"
#include "../config.hpp"
#include "../error.hpp"
#include "../message.hpp"
#include "../options.hpp"

namespace warren {

/// The outcome of one RPC call: the reply (an owning copy: routing key, body, properties)
/// or the error that ended the call (a timeout, an unroutable request).
/// @code
/// client.call("", "rpc_queue", "30", std::chrono::seconds(1), [](warren::rpc_result<> r) {
///     if (r.ok()) std::cout << r.reply().body; else std::cout << r.error().what();
/// });
/// @endcode
/// Thread safety: a value type.
template <class Message = message>
class rpc_result {
public:
    /// A call answered by `reply`.
    explicit rpc_result(Message reply) : outcome_(std::in_place_index<0>, std::move(reply)) {}
    /// A call ended by `failure`.
    explicit rpc_result(warren::error failure) : outcome_(std::in_place_index<1>, std::move(failure)) {}

    /// Whether the call was answered.
    [[nodiscard]] bool ok() const noexcept { return outcome_.index() == 0; }
    /// The reply. Precondition: ok().
    [[nodiscard]] const Message& reply() const& noexcept {
        WARREN_ASSERT(ok(), "rpc_result::reply() of a failed call");
        return *std::get_if<0>(&outcome_);
    }
    /// The reply, to move from. Precondition: ok().
    [[nodiscard]] Message& reply() & noexcept {
        WARREN_ASSERT(ok(), "rpc_result::reply() of a failed call");
        return *std::get_if<0>(&outcome_);
    }
    /// What ended the call. Precondition: !ok().
    [[nodiscard]] const warren::error& error() const noexcept {
        WARREN_ASSERT(!ok(), "rpc_result::error() of an answered call");
        return *std::get_if<1>(&outcome_);
    }
    /// The reply, moved out; throws the error if the call failed.
    Message take() {
        if (!ok()) detail::raise(error());
        return std::move(*std::get_if<0>(&outcome_));
    }

private:
    std::variant<Message, warren::error> outcome_;
};

/// How the reply queue's consumer gets its replies.
enum class rpc_replies : std::uint8_t {
    /// synchronous on a thread-safe broker (concurrent_broker), dispatched on warren::broker.
    by_policy,
    /// Replies wait for broker.dispatch(), as any consumer's messages do.
    dispatched,
    /// Replies are taken inside the publish that sends them (consumer_options::synchronous):
    /// a blocking call_for needs no thread that dispatches.
    synchronous,
};

/// How an rpc_client is made.
struct rpc_client_options {
    /// Whether the reply queue's consumer is synchronous (see rpc_replies).
    rpc_replies replies = rpc_replies::by_policy;
    /// RabbitMQ's direct reply-to: no reply queue is declared; the client consumes the
    /// pseudo-queue "amq.rabbitmq.reply-to" and its requests carry reply_to =
    /// "amq.rabbitmq.reply-to", which the broker rewrites to the client's address. Replies
    /// are then at most once: one that comes after the client is destroyed is dropped (the
    /// server's publish routes to nothing), and one whose callback throws is not delivered
    /// again.
    bool direct_reply_to = false;
};

namespace detail {
/// No locking, for a single-threaded broker's client.
struct rpc_null_lock {
    void lock() noexcept {}
    void unlock() noexcept {}
};
} // namespace detail

/// An RPC client: sends requests with reply_to and a correlation_id, and hands each reply
/// to its call.
///
/// The constructor declares an exclusive, server-named reply queue (`amq.gen-...`) and
/// subscribes to it with automatic acks; with rpc_client_options::direct_reply_to it
/// declares nothing and consumes RabbitMQ's pseudo-queue `amq.rabbitmq.reply-to` instead
/// (see basic_broker::subscribe), each request naming the client's consumer tag in
/// publish_options::reply_consumer, so any number of clients share one broker.
/// Each form of call takes a body and a routing key, or a whole request message whose
/// routing key and properties are kept (the client sets only reply_to and correlation_id).
/// Correlation ids are reply_queue(), a dot and a counter, so they are unique per client;
/// a reply whose id this client never issued is ignored (unknown_replies()), a reply to a
/// call that already ended (timed out, or answered before) is dropped (late_replies()).
///
/// Timeouts are measured on the broker's clock (basic_broker::time_source()), so with a
/// warren::manual_clock they follow simulation time and tests are deterministic. An overdue call fails with a warren::error (resource_error) when
/// expire() runs, when any reply arrives, and in the blocking calls.
///
/// Destroying the client ends its subscription first (under concurrent_broker this waits
/// for a reply callback running on another thread), then drops the pending calls without
/// running their callbacks (a future of call_async() then holds std::future_error
/// broken_promise), then deletes the reply queue. No callback runs after the destructor.
/// The broker must outlive the client.
/// @code
/// warren::broker broker;
/// warren::rpc_client client(broker);  // or (broker, {.direct_reply_to = true})
/// client.call("", "rpc_queue", "30", std::chrono::seconds(1), [](warren::rpc_result<> r) { ... });
/// broker.dispatch();                    // the server answers, then the callback runs
/// auto reply = client.call_and_wait("", "rpc_queue", "10", std::chrono::seconds(1));
/// warren::message request{.routing_key = "rpc_queue", .body = "10"};
/// request.properties.message_id = "order-7";  // kept; reply_to and correlation_id are the client's
/// auto again = client.call_and_wait("", std::move(request), std::chrono::seconds(1));
/// @endcode
/// Thread safety: with concurrent_broker every member is thread-safe except the destructor
/// (no call may be running); with warren::broker, owner thread only.
template <class Broker>
    requires std::copy_constructible<typename Broker::body_type>
class rpc_client {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    using result = rpc_result<message_type>;
    /// What receives a call's outcome.
    using reply_handler = std::function<void(result)>;

    /// Declares the reply queue and subscribes to it, or with direct reply-to subscribes to
    /// "amq.rabbitmq.reply-to". Timeouts are read from the broker's clock
    /// (basic_broker::time_source()).
    explicit rpc_client(Broker& owner, rpc_client_options options = {})
        : broker_(owner), clock_(owner.time_source()), direct_(options.direct_reply_to) {
        const bool synchronous = options.replies == rpc_replies::synchronous ||
                                 (options.replies == rpc_replies::by_policy && Broker::policy_type::thread_safe);
        // No reply can come before the first request, which follows the prefix being set.
        if (direct_) {
            subscription_ = broker_.subscribe(
                direct_reply_to_queue, [this](delivery& d) { on_reply(d); }, {.synchronous = synchronous});
            reply_queue_ = subscription_.queue(); // the address the broker writes into reply_to
        } else {
            reply_queue_ = owner.declare_queue("", {.exclusive = true});
            subscription_ = broker_.subscribe(
                reply_queue_, [this](delivery& d) { on_reply(d); }, {.synchronous = synchronous});
        }
        prefix_ = reply_queue_ + ".";
    }
    /// Ends the subscription, drops the pending calls and deletes the reply queue (with
    /// direct reply-to there is none: replies to the client's address are dropped from then
    /// on).
    ~rpc_client() {
        subscription_.release();
        {
            std::map<std::uint64_t, pending_call> dropped;
            {
                std::lock_guard guard(lock_);
                dropped.swap(pending_);
                deadlines_.clear();
            }
        } // the callbacks, user objects, are destroyed with no lock held
        if (direct_) return;
        WARREN_TRY {
            (void)broker_.delete_queue(reply_queue_);
        }
        WARREN_CATCH_ALL { // nothing to do about it in a destructor; the queue stays
        }
    }
    rpc_client(const rpc_client&) = delete;
    rpc_client& operator=(const rpc_client&) = delete;

    /// Sends `body` to `exchange` with `routing_key`, reply_to and a fresh correlation_id,
    /// and returns that id. `on_reply` runs once with the reply or with the error that ended
    /// the call: a timeout after `timeout` on the broker's clock, or no_route (312) before
    /// call() returns when no queue took the request. It runs where the reply is consumed
    /// (inside dispatch(), or inside the server's publish with synchronous replies), or in
    /// whatever fails the call (expire(), a later reply's arrival). Its exceptions go where
    /// a consumer callback's go (the broker's error handler, or out of dispatch() / the
    /// publish), or out of expire(); the call is removed before it runs. Errors of the
    /// publish (unknown exchange) are thrown, with nothing pending. Thread-safe on
    /// concurrent_broker.
    std::string call(std::string_view exchange, std::string_view routing_key, body_type body, clock::duration timeout,
                     reply_handler on_reply) {
        return call(exchange, make_request(routing_key, std::move(body)), timeout, std::move(on_reply));
    }
    /// call() of a whole request message: its routing key and properties (message_id,
    /// headers, type, expiration, ...) are sent as given, except reply_to and
    /// correlation_id, which the client sets, overwriting any the message carries. Errors
    /// name the message's routing key. Thread-safe on concurrent_broker.
    /// @code
    /// warren::message request{.routing_key = "rpc_queue", .body = "30"};
    /// request.properties.message_id = "order-7";
    /// request.properties.headers.set("tenant", "acme");
    /// client.call("", std::move(request), std::chrono::seconds(1), [](warren::rpc_result<> r) { ... });
    /// @endcode
    std::string call(std::string_view exchange, message_type request, clock::duration timeout, reply_handler on_reply) {
        WARREN_ASSERT(static_cast<bool>(on_reply), "rpc_client::call needs a reply handler");
        return send(exchange, std::move(request), timeout, std::move(on_reply)).correlation_id;
    }

    /// call() with the outcome in a future: get() returns the reply or throws the
    /// warren::error that ended the call. The timeout is applied by expire(), by a reply's
    /// arrival or by a blocking call, so someone must call expire() for a future that
    /// gets no reply. concurrent_broker only. Thread-safe.
    [[nodiscard]] std::future<message_type> call_async(std::string_view exchange, std::string_view routing_key,
                                                       body_type body, clock::duration timeout)
        requires Broker::policy_type::thread_safe
    {
        return call_async(exchange, make_request(routing_key, std::move(body)), timeout);
    }
    /// call_async() of a whole request message (its properties kept but reply_to and
    /// correlation_id, as call() says). concurrent_broker only. Thread-safe.
    [[nodiscard]] std::future<message_type> call_async(std::string_view exchange, message_type request,
                                                       clock::duration timeout)
        requires Broker::policy_type::thread_safe
    {
        auto promise = std::make_shared<std::promise<message_type>>();
        auto future = promise->get_future();
        (void)send(exchange, std::move(request), timeout, [promise](result r) {
            if (r.ok()) {
                promise->set_value(std::move(r.reply()));
            } else {
                promise->set_exception(std::make_exception_ptr(r.error()));
            }
        });
        return future;
    }

    /// Sends as call() does and blocks until the reply, which it returns, or until
    /// `timeout` has passed on the broker's clock, when it throws the timeout error (and a
    /// reply coming later is counted late). Replies must reach the client meanwhile:
    /// through its synchronous consumer (the default on concurrent_broker), or another
    /// thread's dispatch(). It checks the clock at least every 10 ms of wall time, so with a
    /// manual_clock it returns once another thread advances the clock past the deadline.
    /// Throws no_route when no queue took the request. concurrent_broker only. Thread-safe.
    message_type call_for(std::string_view exchange, std::string_view routing_key, body_type body,
                          clock::duration timeout)
        requires Broker::policy_type::thread_safe
    {
        return call_for(exchange, make_request(routing_key, std::move(body)), timeout);
    }
    /// call_for() of a whole request message (its properties kept but reply_to and
    /// correlation_id, as call() says). concurrent_broker only. Thread-safe.
    message_type call_for(std::string_view exchange, message_type request, clock::duration timeout)
        requires Broker::policy_type::thread_safe
    {
        struct waiter {
            std::mutex mutex;
            std::condition_variable done;
            std::optional<result> outcome;
        };
        auto w = std::make_shared<waiter>();
        const sent call = send(exchange, std::move(request), timeout, [w](result r) {
            {
                std::lock_guard guard(w->mutex);
                w->outcome.emplace(std::move(r));
            }
            w->done.notify_all();
        });
        for (;;) {
            {
                std::unique_lock guard(w->mutex);
                const clock::duration left = call.deadline - clock_.now();
                const auto slice = std::min<clock::duration>(std::max(left, clock::duration::zero()),
                                                             std::chrono::milliseconds(10));
                w->done.wait_for(guard, slice, [&] { return w->outcome.has_value(); });
                if (w->outcome) return w->outcome->take();
            }
            if (clock_.now() >= call.deadline) expire_call(call.id);
        }
    }

    /// Sends as call() does and dispatches the broker until the reply, which it returns,
    /// or until `timeout` has passed on the broker's clock, when it throws the timeout
    /// error. dispatch() runs every consumer's callbacks, as the Python client's
    /// process_data_events() does. It never hangs: once a dispatch() delivers nothing, only
    /// time can bring a reply (a TTL's dead letter), so with a clock that stands still
    /// (a manual_clock nobody advances) it fails at once with the timeout error, and with
    /// a moving clock it polls every millisecond until the deadline. Throws no_route when
    /// no queue took the request; an exception out of dispatch() leaves nothing pending.
    /// warren::broker only. Owner thread.
    message_type call_and_wait(std::string_view exchange, std::string_view routing_key, body_type body,
                               clock::duration timeout)
        requires(!Broker::policy_type::thread_safe)
    {
        return call_and_wait(exchange, make_request(routing_key, std::move(body)), timeout);
    }
    /// call_and_wait() of a whole request message (its properties kept but reply_to and
    /// correlation_id, as call() says). warren::broker only. Owner thread.
    message_type call_and_wait(std::string_view exchange, message_type request, clock::duration timeout)
        requires(!Broker::policy_type::thread_safe)
    {
        std::optional<result> outcome;
        const sent call = send(exchange, std::move(request), timeout,
                               [&outcome](result r) { outcome.emplace(std::move(r)); });
        // The handler refers to `outcome`: it must not stay pending past this frame.
        struct forget {
            rpc_client& client;
            std::uint64_t id;
            ~forget() { client.drop_call(id); }
        } const forget_on_exit{*this, call.id};
        clock::time_point seen = clock_.now();
        for (;;) {
            if (outcome) return outcome->take();
            if (clock_.now() >= call.deadline) {
                expire_call(call.id);
                continue;
            }
            if (broker_.dispatch() != 0) continue;
            if (outcome) continue;
            const clock::time_point now = clock_.now();
            if (now == seen) { // nothing to deliver and time stands still: no reply can come
                fail_call(call.id, "got no reply: nothing left to deliver and the clock stands still");
                continue;
            }
            seen = now;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

    /// Fails the calls whose timeout has passed on the broker's clock, each with its
    /// timeout error, and returns how many. Their callbacks run here; if some throw, every
    /// one still runs and the first exception is rethrown. Thread-safe on
    /// concurrent_broker.
    std::size_t expire() {
        std::vector<ended_call> ended;
        {
            std::lock_guard guard(lock_);
            take_overdue(clock_.now(), ended);
        }
        return run_all(std::move(ended));
    }

    /// Where replies are published (with the default exchange): the reply queue's name,
    /// the reply_to of every request; with direct reply-to the client's address
    /// (`amq.rabbitmq.reply-to.<token>`), which the broker writes into each request's
    /// reply_to in place of `amq.rabbitmq.reply-to`. Thread-safe.
    [[nodiscard]] const std::string& reply_queue() const noexcept { return reply_queue_; }
    /// Whether the client uses direct reply-to. Thread-safe.
    [[nodiscard]] bool direct_reply_to() const noexcept { return direct_; }
    /// Calls waiting for their reply. Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t pending() const {
        std::lock_guard guard(lock_);
        return pending_.size();
    }
    /// Calls failed by their timeout so far. Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t timeouts() const {
        std::lock_guard guard(lock_);
        return timeouts_;
    }
    /// Replies dropped because their call had already ended (timed out, or answered
    /// before). Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t late_replies() const {
        std::lock_guard guard(lock_);
        return late_;
    }
    /// Replies ignored because this client never issued their correlation_id (or they had
    /// none). Thread-safe on concurrent_broker.
    [[nodiscard]] std::size_t unknown_replies() const {
        std::lock_guard guard(lock_);
        return unknown_;
    }

private:
    using lock_type = std::conditional_t<Broker::policy_type::thread_safe, std::mutex, detail::rpc_null_lock>;

    struct pending_call {
        std::string exchange;
        std::string routing_key;
        clock::time_point deadline;
        clock::duration timeout;
        reply_handler on_reply;
    };
    struct ended_call {
        reply_handler on_reply;
        std::optional<result> outcome;
    };

    static clock::time_point deadline_after(clock::time_point now, clock::duration timeout) noexcept {
        if (timeout <= clock::duration::zero()) return now;
        if (timeout > clock::time_point::max() - now) return clock::time_point::max();
        return now + timeout;
    }

    static std::string duration_text(clock::duration d) {
        using std::chrono::milliseconds;
        if (d % milliseconds(1) == clock::duration::zero()) {
            return std::to_string(std::chrono::duration_cast<milliseconds>(d).count()) + " ms";
        }
        return std::to_string(d.count()) + " ns";
    }

    std::string correlation_id(std::uint64_t id) const { return prefix_ + std::to_string(id); }

    /// The error of a call that ended without its reply.
    warren::error failure(std::uint64_t id, const pending_call& call, std::string_view what) const {
        return warren::error(reply_code::resource_error,
                             "rpc call to exchange " + detail::quoted(call.exchange) + " with routing key " +
                                 detail::quoted(call.routing_key) + " (correlation_id " +
                                 detail::quoted(correlation_id(id)) + ") " + std::string(what) + " (timeout " +
                                 duration_text(call.timeout) + ")");
    }

    /// A request sent: its call's id, correlation id and deadline.
    struct sent {
        std::uint64_t id;
        std::string correlation_id;
        clock::time_point deadline;
    };

    static message_type make_request(std::string_view routing_key, body_type body) {
        return message_type{.routing_key = std::string(routing_key), .body = std::move(body)};
    }

    /// Registers the call, then publishes `request` with the client's reply_to and
    /// correlation_id: a synchronous server may reply inside the publish.
    sent send(std::string_view exchange, message_type request, clock::duration timeout, reply_handler on_reply) {
        std::uint64_t id = 0;
        clock::time_point deadline;
        {
            std::lock_guard guard(lock_);
            id = ++issued_;
            deadline = deadline_after(clock_.now(), timeout);
            pending_.emplace(id, pending_call{std::string(exchange), request.routing_key, deadline, timeout,
                                              std::move(on_reply)});
            deadlines_.emplace(deadline, id);
        }
        std::string cid = correlation_id(id);
        // Kept for the unroutable error: the publish takes the message.
        const std::string routing_key = request.routing_key;
        request.properties.reply_to = direct_ ? std::string(direct_reply_to_queue) : reply_queue_;
        request.properties.correlation_id = cid;
        // With direct reply-to the tag says which requester asks (warren has no channels).
        publish_options how;
        if (direct_) how.reply_consumer = subscription_.tag();
        std::size_t routed = 0;
        WARREN_TRY {
            routed = broker_.publish(exchange, std::move(request), how);
        }
        WARREN_CATCH_ALL {
            drop_call(id);
            WARREN_RETHROW;
        }
        if (routed == 0) {
            auto ended = take_call(id);
            if (ended) {
                ended->outcome.emplace(warren::error(
                    reply_code::no_route, "rpc request to exchange " + detail::quoted(exchange) +
                                              " with routing key " + detail::quoted(routing_key) + " was unroutable"));
                run_all({std::move(*ended)});
            }
        }
        return {id, std::move(cid), deadline};
    }

    /// Removes a pending call; lock held.
    std::optional<pending_call> extract(std::uint64_t id) {
        const auto it = pending_.find(id);
        if (it == pending_.end()) return std::nullopt;
        deadlines_.erase({it->second.deadline, id});
        pending_call call = std::move(it->second);
        pending_.erase(it);
        return call;
    }

    std::optional<ended_call> take_call(std::uint64_t id) {
        std::lock_guard guard(lock_);
        auto call = extract(id);
        if (!call) return std::nullopt;
        return ended_call{std::move(call->on_reply), std::nullopt};
    }

    /// Forgets a call without running its handler (destroyed with no lock held).
    void drop_call(std::uint64_t id) noexcept {
        std::optional<pending_call> dropped;
        std::lock_guard guard(lock_);
        dropped = extract(id);
        (void)dropped;
    }

    /// Ends call `id`, if still pending, with the error `what` (counted as a timeout) into
    /// `ended`; lock held.
    void time_out(std::uint64_t id, std::string_view what, std::vector<ended_call>& ended) {
        auto call = extract(id);
        if (!call) return;
        ++timeouts_;
        ended.push_back({std::move(call->on_reply), result(failure(id, *call, what))});
    }

    /// Fails one call with `what` if it is still pending (counted as a timeout).
    void fail_call(std::uint64_t id, std::string_view what) {
        std::vector<ended_call> ended;
        {
            std::lock_guard guard(lock_);
            time_out(id, what, ended);
        }
        (void)run_all(std::move(ended));
    }

    void expire_call(std::uint64_t id) { fail_call(id, "got no reply in time"); }

    /// Ends the calls overdue at `now` into `ended`; lock held.
    void take_overdue(clock::time_point now, std::vector<ended_call>& ended) {
        while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
            time_out(deadlines_.begin()->second, "got no reply in time", ended);
        }
    }

    /// Runs every handler with its outcome, no lock held; rethrows the first exception once
    /// all ran.
    static std::size_t run_all(std::vector<ended_call> ended) {
        std::exception_ptr first;
        for (auto& e : ended) {
            WARREN_TRY {
                e.on_reply(std::move(*e.outcome));
            }
            WARREN_CATCH_ALL {
                if (!first) first = std::current_exception();
            }
        }
        if (first) std::rethrow_exception(first);
        return ended.size();
    }

    /// The id a correlation id names, if this client could have issued it.
    std::optional<std::uint64_t> parse(const std::optional<std::string>& cid) const {
        if (!cid || !cid->starts_with(prefix_) || cid->size() == prefix_.size() || cid->size() > prefix_.size() + 19) {
            return std::nullopt;
        }
        std::uint64_t id = 0;
        for (std::size_t i = prefix_.size(); i < cid->size(); ++i) {
            const char c = (*cid)[i];
            if (c < '0' || c > '9' || (i == prefix_.size() && c == '0')) return std::nullopt;
            id = id * 10 + static_cast<std::uint64_t>(c - '0');
        }
        return id;
    }

    /// The reply queue's consumer: overdue calls fail first (a reply that comes after its
    /// deadline is late), then the reply's call gets it.
    void on_reply(delivery& d) {
        const clock::time_point now = clock_.now();
        const auto id = parse(d.properties().correlation_id);
        std::vector<ended_call> ended;
        {
            std::lock_guard guard(lock_);
            take_overdue(now, ended);
            std::optional<pending_call> call;
            if (id) call = extract(*id);
            if (call) {
                ended.push_back({std::move(call->on_reply),
                                 result(message_type{std::string(d.routing_key()), d.body(), d.properties()})});
            } else if (id && *id <= issued_) {
                ++late_;
            } else {
                ++unknown_;
            }
        }
        (void)run_all(std::move(ended));
    }

    Broker& broker_;
    const clock& clock_;
    bool direct_;
    std::string reply_queue_;
    std::string prefix_;
    mutable lock_type lock_; // guards what follows, up to the subscription
    std::uint64_t issued_ = 0;
    std::map<std::uint64_t, pending_call> pending_;
    std::set<std::pair<clock::time_point, std::uint64_t>> deadlines_;
    std::size_t timeouts_ = 0;
    std::size_t late_ = 0;
    std::size_t unknown_ = 0;
    typename Broker::subscription subscription_; // last: ends before the members above
};

} // namespace warren
