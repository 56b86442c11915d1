#pragma once
/// @file options.hpp
/// The option structs of basic_broker: how exchanges, queues and consumers are declared,
/// how a queue is deleted and a message published; and ack_mode.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "field_table.hpp"

namespace warren {

/// How a consumer or a get settles what it receives.
enum class ack_mode : std::uint8_t {
    automatic, ///< settled the moment it is handed out (AMQP no-ack)
    manual,    ///< stays unacknowledged until ack, nack or reject
};

/// How an exchange is declared. Redeclaring an exchange with different options is refused.
struct exchange_options {
    /// Accepted for compatibility with RabbitMQ topologies; one process keeps nothing on disk.
    bool durable = false;
    /// Deleted when its last binding (as a source) goes away, once it has had one.
    bool auto_delete = false;
    /// Only other exchanges may publish to it: publishing directly is access_refused (403).
    bool internal = false;
    /// Exchange arguments; kept and compared on redeclare.
    field_table arguments{};

    friend bool operator==(const exchange_options&, const exchange_options&) = default;
};

/// How a queue is declared. Redeclaring a queue with different options is refused.
struct queue_options {
    /// Accepted for compatibility with RabbitMQ topologies; one process keeps nothing on disk.
    bool durable = false;
    /// One process is one AMQP connection, so an exclusive queue is simply one that lives
    /// until it is deleted or the broker goes away.
    bool exclusive = false;
    /// Deleted when its last consumer goes away, once it has had one.
    bool auto_delete = false;
    /// RabbitMQ's `x-` arguments (see queue_arguments and docs/semantics.md):
    /// x-message-ttl, x-expires, x-max-length, x-max-length-bytes, x-overflow,
    /// x-dead-letter-exchange, x-dead-letter-routing-key, x-max-priority,
    /// x-single-active-consumer. Others (x-queue-type, ...) are kept and have no effect.
    field_table arguments{};

    friend bool operator==(const queue_options&, const queue_options&) = default;
};

/// Conditions for delete_queue, as AMQP queue.delete has them.
struct queue_delete_options {
    /// Refuse (precondition_failed) if the queue has consumers.
    bool if_unused = false;
    /// Refuse (precondition_failed) if the queue has ready messages.
    bool if_empty = false;
};

/// How a consumer subscribes.
struct consumer_options {
    /// Its tag; empty means the broker generates one.
    std::string tag{};
    /// automatic: settled when handed out; manual: the callback acks, nacks or rejects.
    ack_mode ack = ack_mode::automatic;
    /// Most unacknowledged messages it holds at once (manual mode); 0 means no limit.
    std::uint16_t prefetch = 0;
    /// The only consumer of its queue while it lasts.
    bool exclusive = false;
    /// RabbitMQ's consumer priority (`x-priority`): a queue serves its highest-priority
    /// consumers that can take a message, round robin among equals.
    std::int32_t priority = 0;
    /// Its callback runs inside the publish that delivers to it, as a signal's slot would,
    /// rather than at the next dispatch(): the publisher returns once it has run. A publish
    /// from inside such a callback runs its own synchronous receivers nested, up to
    /// basic_broker::max_synchronous_depth; deeper, they wait for dispatch(). It is never
    /// re-entered: a message published to it from its own
    /// callback (directly or through a chain) waits for dispatch(), as do messages that
    /// reach it other than by a publish (a requeue, a dead letter of an ack or an expiry,
    /// messages that waited ready while it had no credit). See docs/semantics.md.
    bool synchronous = false;
    /// Run when the broker ends the subscription because delete_queue deleted its queue
    /// (AMQP's basic.cancel from the server), after the broker's locks are released. Not run
    /// when the subscription ends itself or the broker is destroyed. If it throws, the
    /// other consumers' on_cancel still run; see basic_broker::delete_queue.
    std::function<void()> on_cancel{};
};

/// RabbitMQ's direct reply-to pseudo-queue: subscribe to it to be a reply consumer, name it
/// in a request's reply_to to have the broker write in the consumer's address (see
/// basic_broker::subscribe).
inline constexpr std::string_view direct_reply_to_queue = "amq.rabbitmq.reply-to";

/// Flags of one publish, as AMQP basic.publish has them.
struct publish_options {
    /// An unroutable message goes back to the return handler (reply 312 NO_ROUTE)
    /// instead of being dropped.
    bool mandatory = false;
    /// RabbitMQ's direct reply-to: the consumer tag of the subscription to
    /// "amq.rabbitmq.reply-to" whose address the broker writes into the reply_to of a
    /// message that sets reply_to = "amq.rabbitmq.reply-to" (warren has no channels, so
    /// the tag says which requester asks). Empty: the only such subscription. Read only
    /// for such a message; see basic_broker::subscribe.
    std::string_view reply_consumer{};
};

} // namespace warren
