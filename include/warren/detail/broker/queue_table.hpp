#pragma once
/// @file detail/broker/queue_table.hpp
/// The broker's queues: found by name or by slot (a binding names its queue by slot), and
/// listed in declaration order for dispatch() and expire() to walk without the topology lock.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../config.hpp"
#include "../../error.hpp"
#include "../../policy.hpp"
#include "../core/deferred_release.hpp"
#include "../core/name_map.hpp"
#include "../core/ref_ptr.hpp"

namespace warren::detail {

/// Queues by name, by slot and in declaration order. Not thread-safe: the broker's topology
/// lock guards it, except the list that walk() hands out, which is immutable once handed.
template <class Queue, threading_policy Policy>
class queue_table {
public:
    /// The queues in declaration order. A deleted queue leaves a null entry until they are
    /// a third or more, then the list is compacted. Changed in place while nothing else
    /// holds it, copied first otherwise (a dispatch in progress keeps walking the list it
    /// took), so declaring and deleting cost O(1) amortised.
    struct walk_list : ref_counted<Policy> {
        std::vector<ref_ptr<Queue>> queues;
        std::size_t deleted = 0; // null entries
    };

    queue_table() : list_(make_ref<walk_list>()) {}

    /// The slot of the queue named `name`, or nothing.
    [[nodiscard]] std::optional<std::uint32_t> find(std::string_view name) const {
        auto it = by_name_.find(name);
        if (it == by_name_.end()) return std::nullopt;
        return it->second;
    }
    /// The slot of the queue named `name`; not_found (404) if there is none.
    [[nodiscard]] std::uint32_t index_of(std::string_view name) const {
        auto it = by_name_.find(name);
        if (it == by_name_.end()) raise(reply_code::not_found, "no queue " + detail::quoted(name));
        return it->second;
    }
    /// Whether a queue is named `name`.
    [[nodiscard]] bool contains(std::string_view name) const { return by_name_.contains(name); }
    /// The slot of `queue` if the table holds it (under its name: not deleted, not replaced
    /// by a queue of the same name), or nothing.
    [[nodiscard]] std::optional<std::uint32_t> slot_of(const Queue& queue) const {
        auto it = by_name_.find(std::string_view(queue.name()));
        if (it == by_name_.end() || slots_[it->second].get() != &queue) return std::nullopt;
        return it->second;
    }
    /// The queue in slot `index`: a reference to keep, or empty if the slot is free.
    [[nodiscard]] const ref_ptr<Queue>& slot(std::uint32_t index) const { return slots_[index]; }

    /// The current list, to walk with no lock held.
    [[nodiscard]] ref_ptr<walk_list> walk() const { return list_; }
    /// The current list, read under the topology lock.
    [[nodiscard]] const walk_list& list() const { return *list_; }

    /// Adds `queue` under its name, at the end of the list; returns its slot.
    std::uint32_t add(ref_ptr<Queue> queue) {
        walk_list& list = writable_list();
        const std::uint32_t index = take_slot(slots_, free_);
        slots_[index] = queue;
        if (position_.size() < slots_.size()) position_.resize(slots_.size());
        position_[index] = list.queues.size();
        by_name_.emplace(queue->name(), index);
        list.queues.push_back(std::move(queue));
        return index;
    }

    /// Removes the queue in slot `index` and hands back the table's reference, for the
    /// caller to let go of once its locks are released. `cursor`, where dispatch() goes on
    /// in the list, is moved with the queue it points at if the list is compacted.
    [[nodiscard]] ref_ptr<Queue> remove(std::uint32_t index, std::size_t& cursor) {
        ref_ptr<Queue> queue = std::move(slots_[index]);
        free_.push_back(index);
        by_name_.erase(by_name_.find(std::string_view(queue->name())));
        walk_list& list = writable_list();
        ref_ptr<Queue>& entry = list.queues[position_[index]];
        WARREN_ASSERT(entry == queue, "the queue list is out of step with the queue table");
        deferred_release::defer(std::move(entry)); // null now: skipped by walkers
        ++list.deleted;
        if (list.deleted * 3 >= list.queues.size()) compact(list, cursor);
        return queue;
    }

private:
    /// The list, uniquely held so that it may be changed in place.
    walk_list& writable_list() {
        // Nothing else can take a reference meanwhile: walk() is called under the topology
        // lock, which the caller holds exclusively.
        if (!list_->unique()) {
            auto copy = make_ref<walk_list>();
            copy->queues.reserve(list_->queues.size() + 1);
            copy->queues = list_->queues; // deleted entries too: positions stay
            copy->deleted = list_->deleted;
            std::swap(copy, list_);
            deferred_release::defer(std::move(copy)); // a dispatch in progress holds it
        }
        return *list_;
    }

    void compact(walk_list& list, std::size_t& cursor) {
        // The cursor counts the live queues before it, so it keeps its place.
        std::size_t live_before_cursor = 0;
        std::size_t kept = 0;
        for (std::size_t i = 0; i < list.queues.size(); ++i) {
            if (!list.queues[i]) continue;
            if (i < cursor) ++live_before_cursor;
            position_[by_name_.find(std::string_view(list.queues[i]->name()))->second] = kept;
            list.queues[kept++] = std::move(list.queues[i]);
        }
        list.queues.resize(kept);
        if (list.queues.size() * 4 < list.queues.capacity()) list.queues.shrink_to_fit();
        list.deleted = 0;
        cursor = live_before_cursor;
    }

    name_map<std::uint32_t> by_name_;
    std::vector<ref_ptr<Queue>> slots_;  // by index; empty when free
    std::vector<std::size_t> position_;  // by index: where the queue is in the list
    std::vector<std::uint32_t> free_;
    ref_ptr<walk_list> list_;
};

} // namespace warren::detail
