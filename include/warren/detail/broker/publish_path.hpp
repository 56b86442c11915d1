#pragma once
/// @file detail/broker/publish_path.hpp
/// publish_path: one published message's way: checked, routed, stored once, pushed into
/// the queues routed to, and returned to the return handler when mandatory and unroutable.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../error.hpp"
#include "../../handlers.hpp"
#include "../../publisher.hpp"
#include "../../routing_key.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/shared_handler.hpp"
#include "../message/expiration.hpp"
#include "../message/message_node.hpp"
#include "../message/outgoing_message.hpp"
#include "dead_letter_router.hpp"
#include "exchange_table.hpp"
#include "router.hpp"

namespace warren::detail {

/// Publishes into the broker's tables: the checks RabbitMQ makes before routing (key
/// length, headers, internal exchange, expiration), route(), one node for every queue that
/// gets the message, the dead letters that pushing causes, and basic.return.
///
/// It owns the return handler and whether a message with an expiration was ever published
/// (dispatch applies time only then). Thread safety: publish() is thread-safe under
/// multi_threaded, the caller holding the topology lock (shared) for route_and_push().
template <class Message, class Policy>
class publish_path {
public:
    using router_type = dead_letter_router<Message, Policy>;
    using node_type = message_node<Message, Policy>;
    using outgoing = outgoing_message<typename Message::body_type>;
    using exchange_node_type = exchange_node<Policy>;
    using returned_message = basic_returned_message<Message>;
    using return_handler = std::function<void(returned_message&)>;

    publish_path(const exchange_table<Policy>& exchanges, const typename router_type::queues& queues,
                 router_type& dead_letters) noexcept
        : exchanges_(&exchanges), queues_(&queues), dead_letters_(&dead_letters) {}

    /// Refuses what AMQP cannot carry: a short-string property over 255 bytes (no client
    /// could encode it, so RabbitMQ never sees one, and the bridge could not forward it) or
    /// a headers table validate_table refuses. precondition_failed, naming the property.
    static void validate_properties(const properties& p) {
        const std::pair<const std::optional<std::string>*, std::string_view> short_strings[] = {
            {&p.content_type, "property content_type"}, {&p.content_encoding, "property content_encoding"},
            {&p.correlation_id, "property correlation_id"}, {&p.reply_to, "property reply_to"},
            {&p.expiration, "property expiration"},     {&p.message_id, "property message_id"},
            {&p.type, "property type"},                 {&p.user_id, "property user_id"},
            {&p.app_id, "property app_id"}};
        for (const auto& [value, what] : short_strings) {
            if (*value) check_length(**value, what);
        }
        validate_table(p.headers, "message headers");
    }

    /// Routes `msg` and pushes it into the queues routed to; an unroutable message stays in
    /// the caller's parts for return(). The stored message goes to `stored`, which the
    /// caller keeps until its lock is released. With a `memo` (a single-threaded
    /// publisher's), a key routed under the same topology `version` before reuses that
    /// route, and a route that follows from the key alone is remembered. Topology lock held
    /// (shared).
    confirmation route_and_push(exchange_node_type& exchange, outgoing& msg, ref_ptr<node_type>& stored,
                                route_memo* memo = nullptr, std::uint64_t version = 0) {
        check_length(msg.routing_key, "routing key");
        if (msg.set_properties != nullptr) validate_properties(*msg.set_properties);
        check_not_internal(exchange);
        std::optional<std::chrono::milliseconds> ttl; // RabbitMQ checks it before routing
        if (msg.set_properties != nullptr && msg.set_properties->expiration) {
            ttl = parse_expiration(*msg.set_properties->expiration);
            if (!expiring_seen_.load(std::memory_order_relaxed)) expiring_seen_.store(true, std::memory_order_relaxed);
        }
        exchange.published.fetch_add(1, std::memory_order_relaxed);
        thread_local std::vector<destination> routed;
        const std::vector<destination>& targets = route_of(exchange, msg, memo, version, routed);
        confirmation outcome;
        if (targets.empty()) {
            exchange.unroutable.fetch_add(1, std::memory_order_relaxed);
            return outcome;
        }
        // One immutable node, shared by every queue that gets the message.
        stored = node_type::make(msg.routing_key, msg.body, msg.set_properties, exchange.shared_name, ttl);
        thread_local typename router_type::jobs work;
        work.clear();
        dead_letters_->push(stored, targets, outcome, work);
        if (nack_if_refused(outcome)) exchange.nacked.fetch_add(1, std::memory_order_relaxed);
        if (!work.empty()) dead_letters_->route(work);
        return outcome;
    }

    /// Routes a batch of `count` messages of one `routing_key` and no properties, whose
    /// bodies are `bodies`, once (as route_and_push routes one) and pushes them in order,
    /// each queue taking the whole batch under one lock. `stored` gets the nodes, which the
    /// caller keeps until its lock is released; `outcomes[i]` (zeroed by the caller) counts
    /// message i. The dead letters pushing causes are routed once all are pushed, queue by
    /// queue. Topology lock held (shared).
    void route_and_push_many(exchange_node_type& exchange, std::string_view routing_key,
                             typename Message::body_type* bodies, std::size_t count,
                             std::vector<ref_ptr<node_type>>& stored, confirmation* outcomes, route_memo* memo = nullptr,
                             std::uint64_t version = 0) {
        check_length(routing_key, "routing key");
        check_not_internal(exchange);
        if (count == 0) return;
        exchange.published.fetch_add(count, std::memory_order_relaxed);
        thread_local std::vector<destination> routed;
        const outgoing first{routing_key, bodies[0], nullptr};
        const std::vector<destination>& targets = route_of(exchange, first, memo, version, routed);
        if (targets.empty()) {
            exchange.unroutable.fetch_add(count, std::memory_order_relaxed);
            return;
        }
        stored.reserve(stored.size() + count); // before any body is moved: a failure here moves none
        const std::size_t first_stored = stored.size();
        for (std::size_t i = 0; i < count; ++i) {
            stored.push_back(node_type::make(routing_key, bodies[i], nullptr, exchange.shared_name));
        }
        thread_local typename router_type::jobs work;
        work.clear();
        dead_letters_->push_many(stored.data() + first_stored, count, targets, outcomes, work);
        std::uint64_t nacked = 0;
        for (std::size_t i = 0; i < count; ++i) nacked += nack_if_refused(outcomes[i]) ? 1 : 0;
        if (nacked > 0) exchange.nacked.fetch_add(nacked, std::memory_order_relaxed);
        if (!work.empty()) dead_letters_->route(work);
    }

    /// The route of `msg`: `memo`'s if it holds for this key and version, else routed into
    /// `out` (and remembered in `memo` when it follows from the key alone).
    WARREN_ALWAYS_INLINE const std::vector<destination>& route_of(const exchange_node_type& exchange, const outgoing& msg,
                                                                  route_memo* memo, std::uint64_t version,
                                                                  std::vector<destination>& out) {
        if (memo != nullptr && memo->version == version && memo->key == msg.routing_key) return memo->targets;
        route(*exchanges_, *queues_, exchange, routing_view{msg.routing_key, msg.properties()}, out);
        if (memo != nullptr && route_follows_key(exchange)) {
            memo->key = msg.routing_key;
            memo->targets = out;
            memo->version = version;
        }
        return out;
    }

    /// A publish that some queue refused at its length limit is confirmed with a nack:
    /// marks `outcome` so and returns true.
    static bool nack_if_refused(confirmation& outcome) noexcept {
        if (outcome.refused == 0) return false;
        outcome.ack = false;
        return true;
    }
    /// Refuses a publish to an internal exchange (access_refused), as RabbitMQ does.
    static void check_not_internal(const exchange_node_type& exchange) {
        if (exchange.options.internal) {
            raise(reply_code::access_refused, "cannot publish to internal exchange " + detail::quoted(exchange.name));
        }
    }

    /// Whether `outcome` of a publish with `mandatory` is a return: routed to no queue (a
    /// message some queue refused was routed: it is nacked, never returned).
    [[nodiscard]] static bool is_returned(const confirmation& outcome, bool mandatory) noexcept {
        return mandatory && outcome.routed == 0 && outcome.refused == 0;
    }
    /// basic.return: counts it and hands `msg`, made whole again, to the return handler, if
    /// any. No lock held, so the handler may use the broker.
    void return_message(exchange_node_type& exchange, outgoing& msg, confirmation& outcome) {
        exchange.returned.fetch_add(1, std::memory_order_relaxed);
        outcome.returned = true;
        const auto handler = handler_.get();
        if (!handler) return; // dropped: publish() returned 0 for it
        returned_message returned{reply_code::no_route, "NO_ROUTE", exchange.name, msg.template to_message<Message>()};
        (*handler)(returned);
    }
    /// Replaces the return handler (see shared_handler).
    void set_return_handler(return_handler handler) { handler_.set(std::move(handler)); }

    /// Whether a message with an expiration was ever published.
    [[nodiscard]] bool expiring_seen() const noexcept { return expiring_seen_.load(std::memory_order_relaxed); }

private:
    const exchange_table<Policy>* exchanges_;
    const typename router_type::queues* queues_;
    router_type* dead_letters_;
    typename Policy::template atomic<bool> expiring_seen_{false};
    shared_handler<return_handler, Policy> handler_;
};

} // namespace warren::detail
