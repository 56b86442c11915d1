#pragma once
/// @file subscription.hpp
/// basic_subscription: the RAII handle of one consumer.

#include <cstdint>
#include <string>
#include <utility>

#include "detail/core/deferred_release.hpp"
#include "detail/core/ref_ptr.hpp"

namespace warren {

/// Keeps a consumer subscribed while it lives. Destroying it, or calling release(), ends
/// the subscription: the consumer's unacknowledged messages go back to the queue, and an
/// auto-delete queue that loses its last consumer is deleted. Move-only.
///
/// Under multi_threaded, ending a subscription waits for its callback if that callback is
/// running on another thread, so state the callback uses may be destroyed right after
/// (also when its queue was deleted meanwhile). A callback may end its own subscription,
/// and may own it: a handle kept in the callback's captures is ended cleanly when the
/// queue is deleted or the broker destroyed (the broker destroys callbacks with no lock held).
/// @code
/// auto sub = broker.subscribe("logs", [](warren::delivery& d) { std::cout << d.body(); });
/// broker.dispatch();
/// sub.release();
/// @endcode
/// Thread safety: one handle is used by one thread at a time.
template <class Broker>
class basic_subscription {
public:
    using queue_type = typename Broker::queue_type;

    /// An empty handle, subscribed to nothing.
    basic_subscription() noexcept = default;
    basic_subscription(basic_subscription&& other) noexcept
        : broker_(std::exchange(other.broker_, nullptr)), queue_(std::move(other.queue_)),
          consumer_id_(std::exchange(other.consumer_id_, 0)), tag_(std::move(other.tag_)) {}
    basic_subscription& operator=(basic_subscription&& other) noexcept {
        if (this != &other) {
            release();
            broker_ = std::exchange(other.broker_, nullptr);
            queue_ = std::move(other.queue_);
            consumer_id_ = std::exchange(other.consumer_id_, 0);
            tag_ = std::move(other.tag_);
        }
        return *this;
    }
    basic_subscription(const basic_subscription&) = delete;
    basic_subscription& operator=(const basic_subscription&) = delete;
    ~basic_subscription() { release(); }

    /// Ends the subscription now. Does nothing if it already ended.
    void release() noexcept {
        if (!queue_) return;
        const detail::deferred_release::scope releases_after_unlock; // the consumer and its callback
        auto target = std::move(queue_);
        typename queue_type::dead_letters dead; // what returning its messages let go of
        const auto result = target->cancel(consumer_id_, dead);
        // A deleted queue (or a destroyed broker, which deletes them all) reports nothing
        // cancelled, so the broker is only told while it exists.
        if (result.cancelled) broker_->consumer_ended(*target, dead, result.last_consumer_gone);
        broker_ = nullptr;
    }

    /// Whether it is still consuming: false after release() or once its queue was deleted.
    [[nodiscard]] bool active() const { return queue_ && !queue_->closed(); }
    /// The consumer tag.
    [[nodiscard]] const std::string& tag() const noexcept { return tag_; }
    /// The queue's name, or empty for an empty handle.
    [[nodiscard]] std::string queue() const { return queue_ ? queue_->name() : std::string(); }

private:
    friend Broker;
    basic_subscription(Broker* owner, detail::ref_ptr<queue_type> target, std::uint64_t consumer_id, std::string tag)
        : broker_(owner), queue_(std::move(target)), consumer_id_(consumer_id), tag_(std::move(tag)) {}

    Broker* broker_ = nullptr;
    detail::ref_ptr<queue_type> queue_;
    std::uint64_t consumer_id_ = 0;
    std::string tag_;
};

} // namespace warren
