#pragma once
/// @file publisher.hpp
/// basic_publisher: a handle that publishes to one exchange without a name lookup.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "detail/core/ref_ptr.hpp"
#include "detail/message/outgoing_message.hpp"
#include "detail/routing/route_memo.hpp"
#include "options.hpp"

namespace warren {

/// What a publish came to, as a publisher in AMQP confirm mode learns it.
struct confirmation {
    /// basic.ack (true) or basic.nack (false): nack when a queue refused the message at its
    /// length limit (x-overflow reject-publish or reject-publish-dlx).
    bool ack = true;
    /// Queues that accepted the message.
    std::size_t routed = 0;
    /// Queues that refused it at their length limit.
    std::size_t refused = 0;
    /// Mandatory and routed to no queue: handed to the return handler (before the ack).
    bool returned = false;
};

/// Publishes to the exchange it was made for. The exchange is resolved once, when the
/// handle is made, so publishing through it does no name lookup. If the exchange is
/// deleted, publishing throws not_found (404) even if one of the same name is declared
/// again: make a new publisher for the new exchange. Under single_threaded it also
/// remembers the route of the last key it published (where the route follows from the key:
/// direct, fanout and topic exchanges bound to queues) and replays it, with no routing,
/// for as long as the topology does not change.
/// @code
/// auto logs = broker.make_publisher("logs");
/// logs.publish({.routing_key = "kern.info", .body = "booted"});
/// logs.publish("kern.info", "booted");   // the same message, without a basic_message
/// @endcode
/// Thread safety: under multi_threaded, publish() is thread-safe. The broker must outlive
/// its publishers.
template <class Broker>
class basic_publisher {
public:
    using message_type = typename Broker::message_type;
    using body_type = typename message_type::body_type;

    basic_publisher() noexcept = default;

    /// Routes `msg` and returns how many queues got it (0: unroutable; with
    /// `options.mandatory` it then goes to the broker's return handler).
    [[nodiscard]] std::size_t publish(message_type&& msg, publish_options options = {}) const {
        return publish_confirmed(std::move(msg), options).routed;
    }
    /// Publishes a copy of `msg`.
    [[nodiscard]] std::size_t publish(const message_type& msg, publish_options options = {}) const {
        return publish_confirmed(message_type(msg), options).routed;
    }
    /// Publishes and reports the confirm: see basic_broker::publish_confirmed.
    [[nodiscard]] confirmation publish_confirmed(message_type&& msg, publish_options options = {}) const {
        auto parts = outgoing::of(msg);
        return broker_->publish_to(exchange_.get(), {}, parts, options, memo());
    }
    /// Publishes a copy of `msg` and reports the confirm.
    [[nodiscard]] confirmation publish_confirmed(const message_type& msg, publish_options options = {}) const {
        return publish_confirmed(message_type(msg), options);
    }

    /// Publishes a message of `routing_key` and `body` with no properties, without
    /// building a basic_message: see basic_broker::publish(exchange, routing_key, body).
    /// Under single_threaded, a key equal to the one published last reuses its route (see
    /// the class comment). Returns how many queues got it. Errors: the exchange deleted
    /// not_found, internal access_refused, a key over 255 bytes precondition_failed.
    /// Thread-safe under multi_threaded.
    [[nodiscard]] std::size_t publish(std::string_view routing_key, body_type body, publish_options options = {}) const {
        return publish_confirmed(routing_key, std::move(body), options).routed;
    }
    /// Publishes a message of `routing_key` and `body` and reports the confirm: see
    /// basic_broker::publish_confirmed. Errors as for publish(). Thread-safe under
    /// multi_threaded.
    [[nodiscard]] confirmation publish_confirmed(std::string_view routing_key, body_type body,
                                                 publish_options options = {}) const {
        outgoing parts{routing_key, body, nullptr};
        return broker_->publish_to(exchange_.get(), {}, parts, options, memo());
    }

    /// Publishes one message of `routing_key` and no properties per element of `bodies`,
    /// moving from each: routed once and pushed with one lock per queue for the whole batch
    /// (see basic_broker::publish_many, whose rules it follows). Under single_threaded the
    /// route is remembered as for publish(). Returns how many deliveries to queues it made.
    /// Thread-safe under multi_threaded.
    [[nodiscard]] std::size_t publish_many(std::string_view routing_key, std::span<body_type> bodies,
                                           publish_options options = {}) const {
        return broker_->publish_many_to(exchange_.get(), {}, routing_key, bodies, options, memo());
    }

    /// The exchange's name.
    [[nodiscard]] const std::string& exchange() const noexcept { return exchange_->name; }
    /// Whether this handle was made by a broker.
    [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(exchange_); }

private:
    friend Broker;
    using node = typename Broker::exchange_node;
    using outgoing = detail::outgoing_message<body_type>;
    basic_publisher(Broker* owner, detail::ref_ptr<node> exchange) noexcept
        : broker_(owner), exchange_(std::move(exchange)) {}

    /// The remembered route; none under multi_threaded, where publish() runs on many threads.
    [[nodiscard]] detail::route_memo* memo() const noexcept {
        if constexpr (Broker::policy_type::thread_safe) return nullptr;
        else return &memo_;
    }

    Broker* broker_ = nullptr;
    detail::ref_ptr<node> exchange_;
    mutable detail::route_memo memo_; // single_threaded: one thread publishes
};

} // namespace warren
