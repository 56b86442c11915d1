#pragma once
/// @file detail/queue/ready_store.hpp
/// ready_store: a queue's ready messages, by priority, each priority in arrival order.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../../clock.hpp"
#include "../core/deferred_release.hpp"
#include "../core/ref_ptr.hpp"
#include "../core/ring.hpp"

namespace warren::detail {

/// The messages a queue holds ready for delivery: one ring per priority level (a single
/// one without x-max-priority), each in arrival order, with the count and body bytes that
/// the length limits read. A requeued message goes back to its original position, as in
/// RabbitMQ's classic queues. Not thread-safe: the queue's lock guards it.
template <class Node>
class ready_store {
public:
    using time_point = clock::time_point;

    /// A ready message with what the queue knows of it.
    struct entry {
        ref_ptr<Node> message;
        std::uint64_t sequence; // arrival order, kept across requeues
        time_point expires;     // time_point::max() when it never expires
        bool redelivered;
    };

    /// A store with levels 0..max_priority.
    explicit ready_store(std::uint8_t max_priority) : levels_(std::size_t{max_priority} + 1) {}

    [[nodiscard]] std::size_t size() const noexcept { return count_; }
    [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
    /// The body bytes of the ready messages (x-max-length-bytes).
    [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

    /// Appends a message at its priority's end.
    void push(ref_ptr<Node> message, time_point expires) {
        auto& level = levels_[level_of(*message)];
        const std::size_t body_bytes = message->body_bytes;
        level.push_back(entry{std::move(message), next_sequence_, expires, false});
        ++next_sequence_;
        add(body_bytes); // once stored: a failed push changes nothing
    }

    /// Takes the next message to deliver: the oldest of the highest priority. Not empty.
    entry take_head() { return take_from(head_level()); }

    /// An entry for a message that does not stop here (it is handed straight to a
    /// consumer), numbered in arrival order all the same, so that a requeue puts it back
    /// in its place.
    [[nodiscard]] entry bypass(ref_ptr<Node> message, time_point expires) {
        return entry{std::move(message), next_sequence_++, expires, false};
    }

    /// Puts a message that was delivered back where it arrived, marked redelivered.
    void requeue(entry&& e) {
        e.redelivered = true;
        restore(std::move(e));
    }
    /// Puts a message back where it arrived, as it was: one handed to a consumer whose
    /// callback never saw it.
    void restore(entry&& e) {
        auto& level = levels_[level_of(*e.message)];
        std::size_t lo = 0;
        std::size_t hi = level.size();
        while (lo < hi) { // each level is sorted by sequence
            const std::size_t mid = lo + (hi - lo) / 2;
            if (level[mid].sequence < e.sequence) lo = mid + 1;
            else hi = mid;
        }
        const std::size_t body_bytes = e.message->body_bytes;
        level.insert(lo, std::move(e));
        add(body_bytes);
    }

    /// Takes the expired messages at the head and passes each to `expired`, as RabbitMQ
    /// does: only at the head, the next message a consumer would get, so a lower priority
    /// is reached only once every higher one is empty (rabbit_priority_queue:dropwhile),
    /// and a message whose TTL passed behind one that has not waits until it is the head.
    template <class OnExpired>
    void take_expired_heads(time_point now, OnExpired&& expired) {
        for (std::size_t level = levels_.size(); level-- > 0;) {
            auto& ready = levels_[level];
            while (!ready.empty() && is_expired(ready.front(), now)) expired(take_from(level).message);
            if (!ready.empty()) break;
        }
    }

    /// Drops every message, their references deferred (their bodies are user code);
    /// returns how many there were.
    std::size_t clear() {
        const std::size_t n = count_;
        for (auto& level : levels_) {
            while (!level.empty()) deferred_release::defer(std::move(level.pop_front().message));
        }
        count_ = 0;
        bytes_ = 0;
        return n;
    }

private:
    [[nodiscard]] std::size_t level_of(const Node& n) const noexcept {
        if (levels_.size() == 1) return 0; // no x-max-priority: the properties are not read
        const std::uint8_t p = n.properties().priority.value_or(0);
        return std::min<std::size_t>(p, levels_.size() - 1);
    }
    [[nodiscard]] std::size_t head_level() const noexcept {
        for (std::size_t level = levels_.size(); level-- > 0;) {
            if (!levels_[level].empty()) return level;
        }
        return 0;
    }
    [[nodiscard]] static bool is_expired(const entry& e, time_point now) noexcept {
        return e.expires != time_point::max() && e.expires <= now; // max: never (or saturated)
    }
    void add(std::size_t body_bytes) noexcept {
        ++count_;
        bytes_ += body_bytes;
    }
    entry take_from(std::size_t level) {
        entry e = levels_[level].pop_front();
        --count_;
        bytes_ -= e.message->body_bytes;
        return e;
    }

    std::vector<ring<entry>> levels_;
    std::size_t count_ = 0;
    std::size_t bytes_ = 0;
    std::uint64_t next_sequence_ = 0;
};

} // namespace warren::detail
