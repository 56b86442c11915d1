#pragma once
/// @file patterns/rpc_server.hpp
/// rpc_server: serves requests from a queue (RabbitMQ tutorial 6), built on the public
/// broker API only. Each request's reply goes to its reply_to with its correlation_id.

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../broker.hpp"
#include "../config.hpp"
#include "../options.hpp"

namespace warren {

/// How an rpc_server consumes its request queue.
struct rpc_server_options {
    /// Requests it holds unacknowledged at once (0: no limit). The tutorial's 1 spreads
    /// requests over several servers of one queue.
    std::uint16_t prefetch = 1;
    /// A request whose handler threw goes back to the queue (true) or is rejected without
    /// requeue, dead-lettered where the queue has a dead-letter exchange (false).
    bool requeue_on_error = false;
    /// The consumer's tag; empty: generated.
    std::string tag{};
};

/// An RPC server: consumes a request queue with manual acks, runs a handler per request,
/// publishes its result to the default exchange with routing key = the request's
/// reply_to and the request's correlation_id, then acks the request.
///
/// The handler takes `const delivery&` and returns the reply's body, or a whole message
/// (its properties kept, its routing key and correlation_id replaced). A request without
/// reply_to is handled and acked with no reply (without_reply_to()). A reply that no queue
/// takes (the client is gone) still acks the request (unroutable_replies()). A handler
/// that throws, or a reply the broker refuses (say, an expiration that is not a number):
/// the request is rejected without requeue, or requeued with
/// rpc_server_options::requeue_on_error, then the exception goes on as a consumer
/// callback's does (to the broker's error handler, or out of dispatch()); the server
/// stays subscribed and serves the next request. The queue must exist.
/// @code
/// broker.declare_queue("rpc_queue");
/// warren::rpc_server server(broker, "rpc_queue", [](const warren::delivery& request) {
///     return std::to_string(fib(std::stoull(request.body())));
/// });
/// @endcode
/// Thread safety: the counters are thread-safe; the handler runs where dispatch() runs
/// (on several threads at once under concurrent_broker with several dispatchers and a
/// prefetch above 1, or none). Destroying the server ends its subscription (waiting for a
/// handler running on another thread); its unacknowledged requests go back to the queue.
/// The broker must outlive the server.
template <class Broker>
class rpc_server {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    /// The handler as stored: the reply message of a request.
    using handler = std::function<message_type(const delivery&)>;

    /// Subscribes to `queue`. `fn(const delivery&)` returns a body_type or a
    /// message_type. Unknown queue: not_found.
    template <class Fn>
        requires std::invocable<Fn&, const delivery&> &&
                 (std::convertible_to<std::invoke_result_t<Fn&, const delivery&>, body_type> ||
                  std::convertible_to<std::invoke_result_t<Fn&, const delivery&>, message_type>)
    rpc_server(Broker& owner, std::string_view queue, Fn fn, rpc_server_options options = {})
        : broker_(owner), handler_(wrap(std::move(fn))), requeue_on_error_(options.requeue_on_error) {
        subscription_ = broker_.subscribe(
            queue, [this](delivery& request) { serve(request); },
            {.tag = std::move(options.tag), .ack = ack_mode::manual, .prefetch = options.prefetch});
    }
    rpc_server(const rpc_server&) = delete;
    rpc_server& operator=(const rpc_server&) = delete;
    ~rpc_server() { subscription_.release(); }

    /// Requests handled and acked (replied to or not). Thread-safe.
    [[nodiscard]] std::size_t handled() const noexcept { return handled_.load(); }
    /// Replies published. Thread-safe.
    [[nodiscard]] std::size_t replies() const noexcept { return replies_.load(); }
    /// Requests handled that had no reply_to, so got no reply. Thread-safe.
    [[nodiscard]] std::size_t without_reply_to() const noexcept { return without_reply_to_.load(); }
    /// Replies that no queue took. Thread-safe.
    [[nodiscard]] std::size_t unroutable_replies() const noexcept { return unroutable_.load(); }
    /// Requests whose handler, or the publish of whose reply, threw. Thread-safe.
    [[nodiscard]] std::size_t failures() const noexcept { return failures_.load(); }
    /// The consumer's tag. Thread-safe.
    [[nodiscard]] const std::string& tag() const noexcept { return subscription_.tag(); }

private:
    template <class Fn>
    static handler wrap(Fn fn) {
        if constexpr (std::convertible_to<std::invoke_result_t<Fn&, const delivery&>, message_type>) {
            return handler(std::move(fn));
        } else {
            return [fn = std::move(fn)](const delivery& request) mutable {
                return message_type{.routing_key = {}, .body = fn(request)};
            };
        }
    }

    /// A failure anywhere (the handler, or publishing its reply) settles the request
    /// before the exception goes on.
    void serve(delivery& request) {
        WARREN_TRY {
            answer(request);
        }
        WARREN_CATCH_ALL {
            ++failures_;
            if (request.pending()) request.reject(requeue_on_error_);
            WARREN_RETHROW;
        }
    }

    void answer(delivery& request) {
        message_type reply = handler_(request);
        const auto& asked = request.properties();
        if (asked.reply_to) {
            reply.routing_key = *asked.reply_to;
            reply.properties.correlation_id = asked.correlation_id;
            if (broker_.publish("", std::move(reply)) == 0) {
                ++unroutable_;
            } else {
                ++replies_;
            }
        } else {
            ++without_reply_to_;
        }
        ++handled_;
        request.ack(); // after the reply: a server that dies before it leaves the request to another
    }

    Broker& broker_;
    handler handler_;
    bool requeue_on_error_;
    std::atomic<std::size_t> handled_{0};
    std::atomic<std::size_t> replies_{0};
    std::atomic<std::size_t> without_reply_to_{0};
    std::atomic<std::size_t> unroutable_{0};
    std::atomic<std::size_t> failures_{0};
    typename Broker::subscription subscription_; // last: ends before the members above
};

} // namespace warren
