#pragma once
/// @file delivery.hpp
/// basic_delivery: a message handed to a consumer, with its envelope and settlement.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "detail/core/deferred_release.hpp"
#include "detail/core/ref_ptr.hpp"
#include "detail/core/shared_text.hpp"
#include "detail/message/message_node.hpp"
#include "error.hpp"
#include "fwd.hpp"
#include "message.hpp"
#include "options.hpp"
#include "policy.hpp"
#include "properties.hpp"

namespace warren {

template <class Message, threading_policy Policy>
class basic_queue;

/// A message delivered from a queue, with its AMQP envelope (exchange, routing key,
/// redelivered flag, delivery tag, consumer tag).
///
/// In manual ack mode the delivery settles its message with ack(), nack() or reject();
/// settling twice, or settling an automatic delivery, throws precondition_failed (406)
/// "unknown delivery tag", as RabbitMQ does. Move it out of a callback to settle later.
/// The message itself stays readable as long as the delivery lives, through body(),
/// routing_key() and properties(); there is no basic_message to hand out, since the stored
/// message keeps those parts apart (the key after the node, the properties only when set).
/// @code
/// broker.subscribe("tasks", [](warren::delivery& d) {
///     work(d.body());
///     d.ack();
/// }, {.ack = warren::ack_mode::manual, .prefetch = 1});
/// @endcode
/// Thread safety: one delivery is used by one thread at a time; settling is thread-safe
/// with respect to the queue under multi_threaded.
template <class Message, threading_policy Policy>
class basic_delivery {
public:
    using message_type = Message;
    using body_type = typename Message::body_type;

    basic_delivery(basic_delivery&& other) noexcept
        : node_(std::move(other.node_)), queue_(std::move(other.queue_)), tag_(other.tag_),
          redelivered_(other.redelivered_), consumer_tag_(std::move(other.consumer_tag_)) {}
    basic_delivery& operator=(basic_delivery&& other) noexcept {
        node_ = std::move(other.node_);
        queue_ = std::move(other.queue_);
        tag_ = other.tag_;
        redelivered_ = other.redelivered_;
        consumer_tag_ = std::move(other.consumer_tag_);
        return *this;
    }
    basic_delivery(const basic_delivery&) = delete;
    basic_delivery& operator=(const basic_delivery&) = delete;
    ~basic_delivery() = default;

    /// The body. Owner thread.
    [[nodiscard]] const body_type& body() const noexcept { return node_->body; }
    /// The routing key it was published with, valid as long as the delivery (or a delivery
    /// of the same message) lives: the stored message keeps it without a std::string.
    /// Owner thread.
    [[nodiscard]] std::string_view routing_key() const noexcept { return node_->routing_key(); }
    /// Its AMQP properties, headers included; a message that set none reads as a
    /// default-constructed warren::properties (one shared object: the stored message keeps
    /// no properties of its own then). Owner thread.
    [[nodiscard]] const warren::properties& properties() const noexcept { return node_->properties(); }
    /// The exchange it was published to ("" for the default exchange).
    [[nodiscard]] const std::string& exchange() const noexcept { return node_->exchange_name(); }
    /// Whether it was delivered before and returned to the queue.
    [[nodiscard]] bool redelivered() const noexcept { return redelivered_; }
    /// Its tag, unique within its queue.
    [[nodiscard]] std::uint64_t delivery_tag() const noexcept { return tag_; }
    /// The consumer it went to; empty for a message taken with try_get.
    [[nodiscard]] const std::string& consumer_tag() const noexcept {
        return consumer_tag_ ? consumer_tag_->value : detail::empty_text();
    }
    /// Whether this delivery still has to be acked, nacked or rejected.
    [[nodiscard]] bool pending() const noexcept { return static_cast<bool>(queue_); }

    /// Acknowledges the message: the queue forgets it. With `multiple`, also every earlier
    /// unacknowledged delivery of the same consumer. Throws precondition_failed when
    /// nothing is pending.
    void ack(bool multiple = false);
    /// Negatively acknowledges: back to the queue (redelivered) if `requeue`, else dropped
    /// (dead-lettered where the queue has a dead-letter exchange). `multiple` as for ack.
    void nack(bool multiple = false, bool requeue = true);
    /// Rejects this one message; `requeue` as for nack.
    void reject(bool requeue = true) { nack(false, requeue); }

private:
    friend class basic_queue<Message, Policy>;
    using node = detail::message_node<Message, Policy>;
    using queue = basic_queue<Message, Policy>;

    using text = detail::shared_text<Policy>;

    basic_delivery(detail::ref_ptr<node> n, detail::ref_ptr<queue> q, std::uint64_t tag,
                   bool redelivered, detail::ref_ptr<text> consumer_tag)
        : node_(std::move(n)), queue_(std::move(q)), tag_(tag), redelivered_(redelivered),
          consumer_tag_(std::move(consumer_tag)) {}

    detail::ref_ptr<node> node_;
    detail::ref_ptr<queue> queue_; // set while a manual delivery is unsettled
    std::uint64_t tag_ = 0;
    bool redelivered_ = false;
    detail::ref_ptr<text> consumer_tag_; // empty for a get
};

} // namespace warren

// ack() and nack() settle with the queue, and a nack without requeue hands the message it
// rejects to the dead-letter router. Both headers come here, at the end, so that this header
// alone gives a delivery that can be settled. (queue.hpp includes this header first;
// #pragma once ends the circle either way.)
#include "detail/broker/dead_letter_router.hpp"
#include "detail/broker/route_through_gate.hpp"

namespace warren {

template <class Message, threading_policy Policy>
void basic_delivery<Message, Policy>::ack(bool multiple) {
    if (!queue_) detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag_));
    const detail::deferred_release::scope releases_after_unlock; // perhaps the message's last reference
    auto q = std::move(queue_);
    typename queue::dead_letters none; // an ack lets nothing go
    q->settle(tag_, multiple, true, false, none);
}

template <class Message, threading_policy Policy>
void basic_delivery<Message, Policy>::nack(bool multiple, bool requeue) {
    if (!queue_) detail::raise(reply_code::precondition_failed, "unknown delivery tag " + std::to_string(tag_));
    const detail::deferred_release::scope releases_after_unlock;
    auto q = std::move(queue_);
    typename queue::dead_letters dead;
    q->settle(tag_, multiple, false, requeue, dead);
    detail::route_through_gate(*q, dead); // the broker may be gone: then they are dropped
}

} // namespace warren
