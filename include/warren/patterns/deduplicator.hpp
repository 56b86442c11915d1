#pragma once
/// @file patterns/deduplicator.hpp
/// basic_deduplicator: the message ids a consumer has already handled, so that a
/// redelivered message is not handled twice (the idempotent consumer pattern).

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "../clock.hpp"
#include "../policy.hpp"

namespace warren {

/// How many handled ids a deduplicator remembers, and for how long.
struct deduplicator_options {
    /// Handled ids kept at most; the oldest is forgotten first (0: no limit).
    std::size_t capacity = 100'000;
    /// A handled id is forgotten this long after it was handled (on the deduplicator's
    /// clock). Pick it longer than a message can take to come back: its queue's TTL, or how
    /// long a consumer may hold it unacknowledged.
    clock::duration retention = clock::duration::max();
};

/// What try_begin() found for an id.
enum class claim : std::uint8_t {
    first,       ///< never seen (or forgotten): handle it, then complete() or abandon() it
    duplicate,   ///< handled already: settle the message without handling it again
    in_progress, ///< being handled right now (by another thread): try again later
};

/// Remembers which message ids were handled. A consumer calls try_begin(id) before
/// handling a message; on claim::first it handles it and calls complete(id), or abandon(id)
/// if handling failed (so that the redelivery is handled); on claim::duplicate it acks the
/// message unhandled. Redelivery happens (a consumer that dies before its ack, a requeue,
/// a publisher that publishes again after a lost confirm); this makes it harmless.
///
/// Only handled ids are forgotten (the oldest once `capacity` is reached, any once older
/// than `retention`); an id in progress stays until completed or abandoned. An empty id is
/// never remembered (try_begin returns claim::first each time): give messages ids.
/// @code
/// warren::deduplicator seen;
/// broker.subscribe("payments", [&](warren::delivery& d) {
///     const std::string id = d.properties().message_id.value_or("");
///     if (seen.try_begin(id) == warren::claim::first) {
///         try { charge(d.body()); } catch (...) { seen.abandon(id); d.reject(true); throw; }
///         seen.complete(id);
///     }
///     d.ack();
/// }, {.ack = warren::ack_mode::manual});
/// @endcode
/// Thread safety: with Policy = multi_threaded every member is thread-safe (one mutex);
/// with single_threaded, one thread at a time. The clock must outlive the deduplicator.
template <class Policy = single_threaded>
class basic_deduplicator {
public:
    /// Remembers ids as `options` says, reading time from `time`.
    explicit basic_deduplicator(deduplicator_options options = {},
                                const warren::clock& time = steady_clock::instance())
        : options_(options), clock_(&time) {}

    /// Claims `id` for handling, or says why not (see warren::claim).
    [[nodiscard]] claim try_begin(std::string_view id) {
        if (id.empty()) return claim::first;
        const std::scoped_lock lock(mutex_);
        forget_expired();
        auto found = ids_.find(id);
        if (found == ids_.end()) {
            ids_.emplace(std::string(id), entry{});
            return claim::first;
        }
        return found->second.handled ? claim::duplicate : claim::in_progress;
    }

    /// Records `id` as handled: try_begin(id) says claim::duplicate from now on (until
    /// forgotten). An id that was not claimed is recorded too.
    void complete(std::string_view id) {
        if (id.empty()) return;
        const std::scoped_lock lock(mutex_);
        auto found = ids_.find(id);
        if (found == ids_.end()) found = ids_.emplace(std::string(id), entry{}).first;
        if (found->second.handled) return;
        found->second = entry{.handled = true, .sequence = ++sequence_};
        handled_order_.push_back({found->first, sequence_, clock_->now()});
        while (options_.capacity != 0 && handled_order_.size() > options_.capacity) forget_oldest();
    }

    /// Gives up the claim on `id` (handling failed): the next try_begin(id) says
    /// claim::first. Forgets a handled id too.
    void abandon(std::string_view id) {
        const std::scoped_lock lock(mutex_);
        if (auto found = ids_.find(id); found != ids_.end()) ids_.erase(found);
    }

    /// Whether `id` is handled or in progress.
    [[nodiscard]] bool contains(std::string_view id) const {
        const std::scoped_lock lock(mutex_);
        return ids_.find(id) != ids_.end();
    }

    /// Ids remembered, handled or in progress.
    [[nodiscard]] std::size_t size() const {
        const std::scoped_lock lock(mutex_);
        return ids_.size();
    }

private:
    struct entry {
        bool handled = false;
        std::uint64_t sequence = 0; ///< which handled_order_ record is current
    };
    struct handled_record {
        std::string id;
        std::uint64_t sequence;
        clock::time_point at;
    };
    struct text_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view text) const noexcept { return std::hash<std::string_view>{}(text); }
    };

    // The front record is forgotten unless its id was abandoned or handled again since (a
    // newer sequence): then the record is stale and only dropped.
    void forget_oldest() {
        const handled_record& oldest = handled_order_.front();
        if (auto found = ids_.find(oldest.id); found != ids_.end() && found->second.sequence == oldest.sequence) {
            ids_.erase(found);
        }
        handled_order_.pop_front();
    }

    void forget_expired() {
        if (options_.retention == clock::duration::max()) return;
        const clock::time_point now = clock_->now();
        while (!handled_order_.empty() && now - handled_order_.front().at >= options_.retention) forget_oldest();
    }

    deduplicator_options options_;
    const warren::clock* clock_;
    mutable typename Policy::mutex mutex_;
    std::unordered_map<std::string, entry, text_hash, std::equal_to<>> ids_;
    std::deque<handled_record> handled_order_;
    std::uint64_t sequence_ = 0;
};

/// A deduplicator for one thread (warren::broker's consumers).
using deduplicator = basic_deduplicator<single_threaded>;
/// A deduplicator shared by consumers on several threads (warren::concurrent_broker's).
using concurrent_deduplicator = basic_deduplicator<multi_threaded>;

} // namespace warren
