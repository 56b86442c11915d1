#pragma once
/// @file detail/routing/destination_counts.hpp
/// Destinations with a count each, in a dense array for routing and found in O(1).

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "../../exchange.hpp"
#include "../core/hash_index.hpp"

namespace warren::detail {

/// The destinations an exchange (or one key of it) routes to, each with the number of
/// bindings that keep it there. Routing walks a dense array; adding and removing find a
/// destination by a linear scan while there are few, and through a hash index once there
/// are many (20,000 queues on one fanout key), so both stay O(1) whatever the count.
/// Removing moves the last destination into the hole: the order of the array is not the
/// order of binding (the broker delivers to a route's queues in its own order).
///
/// Thread safety: a value type.
class destination_counts {
public:
    /// One more binding to `d`.
    void add(destination d) {
        if (std::uint32_t* count = find(d)) {
            ++*count;
            return;
        }
        entries_.push_back({d, 1});
        if (!index_.empty()) {
            index_.insert(hash(d), static_cast<std::uint32_t>(entries_.size() - 1));
        } else if (entries_.size() > scan_limit) {
            build_index();
        }
    }
    /// One binding less to `d`; returns false if it had none.
    bool remove(destination d) {
        const std::size_t at = position(d);
        if (at == entries_.size()) return false;
        if (--entries_[at].count > 0) return true;
        const std::size_t last = entries_.size() - 1;
        if (!index_.empty()) {
            (void)index_.erase(hash(d), [&](std::uint32_t p) { return p == at; });
            if (at != last) {
                std::uint32_t* moved = index_.find(hash(entries_[last].target), [&](std::uint32_t p) { return p == last; });
                *moved = static_cast<std::uint32_t>(at);
            }
        }
        entries_[at] = entries_[last];
        entries_.pop_back();
        if (!index_.empty() && entries_.size() < scan_limit / 2) index_.clear(); // few again: scan
        if (entries_.size() * 4 < entries_.capacity() && entries_.capacity() > 2 * scan_limit) {
            entries_.shrink_to_fit(); // memory follows the bindings down
        }
        return true;
    }
    /// Adds every destination to `out`.
    void route(destination_list& out) const {
        for (const entry& e : entries_) out.add(e.target);
    }

    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    [[nodiscard]] bool empty() const noexcept { return entries_.empty(); }
    /// Bytes held.
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return entries_.capacity() * sizeof(entry) + index_.memory_bytes();
    }

private:
    /// Up to this many, a scan of the array is faster than hashing.
    static constexpr std::size_t scan_limit = 16;
    struct entry {
        destination target;
        std::uint32_t count;
    };
    static std::uint64_t hash(destination d) noexcept { return mix64(d.bits()); }

    [[nodiscard]] std::size_t position(destination d) const noexcept {
        if (index_.empty()) {
            for (std::size_t i = 0; i < entries_.size(); ++i) {
                if (entries_[i].target == d) return i;
            }
            return entries_.size();
        }
        const std::uint32_t* p = index_.find(hash(d), [&](std::uint32_t at) { return entries_[at].target == d; });
        return p == nullptr ? entries_.size() : *p;
    }
    std::uint32_t* find(destination d) noexcept {
        const std::size_t at = position(d);
        return at == entries_.size() ? nullptr : &entries_[at].count;
    }
    void build_index() {
        for (std::size_t i = 0; i < entries_.size(); ++i) index_.insert(hash(entries_[i].target), static_cast<std::uint32_t>(i));
    }

    std::vector<entry> entries_;
    hash_index<std::uint32_t> index_; // empty while there are few
};

} // namespace warren::detail
