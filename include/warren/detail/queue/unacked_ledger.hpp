#pragma once
/// @file detail/queue/unacked_ledger.hpp
/// unacked_ledger: the deliveries of a queue that wait for an ack, by delivery tag.

#include <cstddef>
#include <cstdint>
#include <utility>

#include "../core/deferred_release.hpp"
#include "../core/ring.hpp"

namespace warren::detail {

/// The manual deliveries of a queue that are not settled yet, in ascending tag order
/// (tags are handed out in order, so lookups are binary searches). A settled record
/// stays in place, emptied, until the records before it are settled too. Not
/// thread-safe: the queue's lock guards it.
template <class Entry>
class unacked_ledger {
public:
    /// One delivery: its tag, who has it, and the ready entry to requeue it as.
    struct record {
        std::uint64_t tag;
        std::uint64_t owner; // consumer id, 0 for a get
        Entry entry;         // entry.message is empty once settled
        [[nodiscard]] bool settled() const noexcept { return !entry.message; }
    };

    /// Unsettled deliveries.
    [[nodiscard]] std::size_t count() const noexcept { return count_; }
    /// Records, settled ones not yet dropped included; indexes run to this.
    [[nodiscard]] std::size_t size() const noexcept { return records_.size(); }
    record& operator[](std::size_t i) noexcept { return records_[i]; }

    /// Records a delivery; `tag` is above every tag recorded before.
    void add(std::uint64_t tag, std::uint64_t owner, Entry&& entry) {
        records_.push_back(record{tag, owner, std::move(entry)});
        ++count_;
    }

    /// The index of the unsettled delivery `tag`, or size() if there is none.
    [[nodiscard]] std::size_t find(std::uint64_t tag) const noexcept {
        std::size_t lo = 0;
        std::size_t hi = records_.size();
        while (lo < hi) {
            const std::size_t mid = lo + (hi - lo) / 2;
            if (records_[mid].tag < tag) lo = mid + 1;
            else hi = mid;
        }
        if (lo < records_.size() && records_[lo].tag == tag && !records_[lo].settled()) return lo;
        return records_.size();
    }

    /// Settles record `i` and gives back its entry.
    Entry settle(std::size_t i) noexcept {
        --count_;
        return std::move(records_[i].entry);
    }

    /// Drops the settled records at the front.
    void drop_settled_front() {
        while (!records_.empty() && records_.front().settled()) records_.pop_front();
    }

    /// Drops every record, the messages' references deferred; returns how many were unsettled.
    std::size_t clear() {
        const std::size_t n = count_;
        while (!records_.empty()) deferred_release::defer(std::move(records_.pop_front().entry.message));
        count_ = 0;
        return n;
    }

private:
    ring<record> records_;
    std::size_t count_ = 0;
};

} // namespace warren::detail
