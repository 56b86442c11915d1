#pragma once
/// @file detail/routing/binding_graph.hpp
/// The bindings of a broker: which exchange routes to which queue or exchange, under which
/// key and arguments.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../exchange.hpp"
#include "../../field_table.hpp"
#include "../core/hash_index.hpp"

namespace warren::detail {

/// One binding: exchange `source` routes to `target` what matches `key` and `arguments`.
struct binding {
    std::uint32_t source; ///< the exchange's index
    destination target;
    std::string key;
    field_table arguments;
};

/// The bindings of a broker, as a graph: each binding is found by what it is in O(1) (bind
/// is idempotent, unbind finds its binding), and the bindings from one exchange or to one
/// destination are listed in time linear in their number, so deleting either end costs
/// what its bindings cost, whatever the other counts. Each binding lives in its own
/// allocation, linked into the list of its source and the list of its target, so memory
/// follows the bindings up and down. It keeps the graph only: the broker tells the
/// exchanges' routing tables.
///
/// Thread safety: none; the broker uses it under its topology lock.
class binding_graph {
public:
    binding_graph() = default;
    binding_graph(const binding_graph&) = delete;
    binding_graph& operator=(const binding_graph&) = delete;
    ~binding_graph() {
        for (record* r : from_) {
            while (r != nullptr) delete std::exchange(r, r->next_from);
        }
    }

    /// Whether the binding exists.
    [[nodiscard]] bool contains(const binding& b) const noexcept { return find(b) != nullptr; }

    /// Adds `b`, which must not exist yet.
    void add(binding b) {
        const std::uint64_t h = hash(b);
        auto r = std::make_unique<record>(record{std::move(b), h});
        // What may throw comes first, so that a failure leaves the graph as it was.
        (void)head(from_, r->b.source);
        (void)head(to_, r->b.target.bits());
        index_.insert(h, r.get());
        link(*r);
        (void)r.release();
        ++size_;
    }

    /// Removes the binding equal to `b`; returns whether there was one.
    bool remove(const binding& b) {
        record* r = find(b);
        if (r == nullptr) return false;
        erase(r);
        return true;
    }

    /// Calls `f(const binding&)` for each binding from exchange `source`.
    template <class F>
    void for_each_from(std::uint32_t source, F&& f) const {
        if (source >= from_.size()) return;
        for (const record* r = from_[source]; r != nullptr; r = r->next_from) f(r->b);
    }
    /// Removes every binding from exchange `source`, and returns them.
    std::vector<binding> take_from(std::uint32_t source) {
        std::vector<binding> out;
        while (source < from_.size() && from_[source] != nullptr) out.push_back(take(from_[source]));
        return out;
    }
    /// Removes every binding to `target`, and returns them.
    std::vector<binding> take_to(destination target) {
        std::vector<binding> out;
        while (target.bits() < to_.size() && to_[target.bits()] != nullptr) out.push_back(take(to_[target.bits()]));
        return out;
    }

    /// Number of bindings.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
    struct record {
        binding b;
        std::uint64_t hash;
        record* prev_from = nullptr;
        record* next_from = nullptr;
        record* prev_to = nullptr;
        record* next_to = nullptr;
    };

    static std::uint64_t hash(const binding& b) noexcept {
        std::uint64_t h = mix64((std::uint64_t{b.source} << 32) | b.target.bits());
        h = combine_hash(h, std::hash<std::string_view>{}(b.key));
        return combine_hash(h, hash_value(b.arguments));
    }
    [[nodiscard]] record* find(const binding& b) const noexcept {
        record* const* found = index_.find(hash(b), [&](const record* r) {
            return r->b.source == b.source && r->b.target == b.target && r->b.key == b.key &&
                   r->b.arguments == b.arguments;
        });
        return found == nullptr ? nullptr : *found;
    }

    /// Puts `r` at the front of its source's and its target's lists (their heads exist).
    void link(record& r) noexcept {
        record*& from = from_[r.b.source];
        record*& to = to_[r.b.target.bits()];
        r.next_from = from;
        if (from != nullptr) from->prev_from = &r;
        from = &r;
        r.next_to = to;
        if (to != nullptr) to->prev_to = &r;
        to = &r;
    }
    void unlink(record& r) noexcept {
        (r.prev_from != nullptr ? r.prev_from->next_from : from_[r.b.source]) = r.next_from;
        if (r.next_from != nullptr) r.next_from->prev_from = r.prev_from;
        (r.prev_to != nullptr ? r.prev_to->next_to : to_[r.b.target.bits()]) = r.next_to;
        if (r.next_to != nullptr) r.next_to->prev_to = r.prev_to;
    }
    void erase(record* r) {
        (void)index_.erase(r->hash, [&](const record* x) { return x == r; });
        unlink(*r);
        delete r;
        --size_;
    }
    binding take(record* r) {
        binding b = std::move(r->b); // the source and target stay, for unlink
        erase(r);
        return b;
    }
    /// The list head for `at`, growing the table of heads if needed.
    static record*& head(std::vector<record*>& heads, std::size_t at) {
        if (at >= heads.size()) heads.resize(at + 1, nullptr);
        return heads[at];
    }

    hash_index<record*> index_;
    std::vector<record*> from_; // by source exchange index: its bindings' list
    std::vector<record*> to_;   // by target destination bits: its bindings' list
    std::size_t size_ = 0;
};

} // namespace warren::detail
