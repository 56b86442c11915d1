#pragma once
/// @file detail/routing/path_table.hpp
/// The topic trie's nodes in one flat table, found by a hash of their path from the root.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../../error.hpp"

namespace warren::detail {

/// The nodes of a topic trie below its root, each in a 16-byte slot of one open-addressing
/// table keyed by the hash of the node's path (the words, `*` and `#` that lead to it).
///
/// Why a path hash rather than (parent id, word id): a child's key is computed from its
/// parent's hash and the hash of the key's word, with no memory read, so the matcher never
/// needs a word's interned id to look for an edge (a word no pattern holds costs one probe
/// that meets a different tag, never a word-table lookup), and it can prefetch the slots a
/// key's literal path would visit before it walks. The hash only finds candidates: a slot
/// belongs to a lookup only if its parent's node id and its word also agree, so a hash
/// collision costs a probe, never a wrong match.
///
/// Each slot caches three flags of its node (has `*`, `#` and literal children), so a step
/// of the walk reads one slot and nothing else. Linear probing, backward-shift deletion,
/// at most half full (three quarters made wildcard routes at 1M bindings about twice as
/// slow: every failed probe of a `*` or `#` branch walks its cluster), halving when less
/// than an eighth full.
///
/// Thread safety: none; concurrent const lookups are safe.
class path_table {
public:
    /// Flags of a node, kept in its slot for the walk.
    enum flag : std::uint32_t { star_child = 1U << 29, hash_child = 1U << 30, literal_child = 1U << 31 };
    static constexpr std::uint32_t flag_bits = star_child | hash_child | literal_child;
    /// Node ids live in the low bits; 0 is the root, which is not in the table.
    static constexpr std::uint32_t max_node = ~flag_bits;

    struct slot {
        std::uint32_t tag = 0;    // the low half of the path hash
        std::uint32_t parent = 0; // the parent's node id
        std::uint32_t word = 0;   // the word id, or a wildcard's marker
        std::uint32_t node = 0;   // node id | flags; 0 marks an empty slot
        [[nodiscard]] std::uint32_t id() const noexcept { return node & max_node; }
        [[nodiscard]] std::uint32_t flags() const noexcept { return node & flag_bits; }
    };

    path_table() { slots_.assign(16, slot{}); }

    /// The path hash of the child of the node with path hash `parent` through a word (or
    /// wildcard) whose hash is `word`. A rotate and an xor, one cycle: words' hashes are
    /// well mixed already, and a walk computes one of these per step, each waiting for the
    /// last (a multiplying mix cost a fifth of a route at 1,000 bindings).
    [[nodiscard]] static constexpr std::uint64_t child_path(std::uint64_t parent, std::uint64_t word) noexcept {
        return ((parent << 23) | (parent >> 41)) ^ word;
    }
    /// The root's path hash.
    static constexpr std::uint64_t root_path = 0x243F6A8885A308D3ULL;

    /// The slot of the child of `parent` at path hash `path` whose word satisfies
    /// `word_matches(word id)`, or null.
    template <class WordMatches>
    [[nodiscard]] const slot* find(std::uint64_t path, std::uint32_t parent, WordMatches&& word_matches) const noexcept {
        const auto tag = static_cast<std::uint32_t>(path);
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = home(tag); ; i = (i + 1) & mask) {
            const slot& s = slots_[i];
            if (s.node == 0) return nullptr;
            if (s.tag == tag && s.parent == parent && word_matches(s.word)) return &s;
        }
    }
    /// The slot of the child of `parent` through word id `word`, or null.
    [[nodiscard]] const slot* find(std::uint64_t path, std::uint32_t parent, std::uint32_t word) const noexcept {
        return find(path, parent, [word](std::uint32_t w) { return w == word; });
    }
    /// Asks the memory system for the slot where a lookup of `path` starts.
    void prefetch(std::uint64_t path) const noexcept {
#if defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch(&slots_[home(static_cast<std::uint32_t>(path))]);
#else
        (void)path;
#endif
    }

    /// Adds node `node` (no flags yet) under `parent` through `word` at path hash `path`.
    void insert(std::uint64_t path, std::uint32_t parent, std::uint32_t word, std::uint32_t node) {
        if (node == 0 || node > max_node) [[unlikely]] {
            detail::raise(reply_code::resource_error, "topic_matcher: too many trie nodes");
        }
        if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
        place(slot{static_cast<std::uint32_t>(path), parent, word, node});
        ++size_;
    }
    /// Sets the flags of the node `node` at `path` to `flags`.
    void set_flags(std::uint64_t path, std::uint32_t node, std::uint32_t flags) noexcept {
        slot& s = slots_[index_of(path, node)];
        s.node = node | flags;
    }
    /// Removes node `node` at `path`.
    void erase(std::uint64_t path, std::uint32_t node) noexcept {
        std::size_t hole = index_of(path, node);
        const std::size_t mask = slots_.size() - 1;
        for (std::size_t i = (hole + 1) & mask; slots_[i].node != 0; i = (i + 1) & mask) {
            const std::size_t h = home(slots_[i].tag);
            if (((i - h) & mask) >= ((i - hole) & mask)) {
                slots_[hole] = slots_[i];
                hole = i;
            }
        }
        slots_[hole] = slot{};
        --size_;
        if (size_ * 8 < slots_.size() && slots_.size() > 16) rehash(capacity_for(size_));
    }

    /// Rewrites every slot's ids through `f(slot&)`, then rebuilds the table at the size
    /// its nodes need (ids may change; tags, and so places, do not).
    template <class F>
    void renumber(F&& f) {
        std::vector<slot> old = std::move(slots_);
        slots_.assign(capacity_for(size_), slot{});
        set_shift();
        for (slot& s : old) {
            if (s.node == 0) continue;
            f(s);
            place(s);
        }
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t memory_bytes() const noexcept { return slots_.capacity() * sizeof(slot); }

private:
    /// Fibonacci hashing of the tag: the top bits of the product pick the slot.
    [[nodiscard]] std::size_t home(std::uint32_t tag) const noexcept {
        return static_cast<std::size_t>((std::uint64_t{tag} * 0x9E3779B97F4A7C15ULL) >> shift_);
    }
    [[nodiscard]] std::size_t index_of(std::uint64_t path, std::uint32_t node) const noexcept {
        const auto tag = static_cast<std::uint32_t>(path);
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = home(tag);
        while (slots_[i].tag != tag || slots_[i].id() != node) i = (i + 1) & mask;
        return i;
    }
    static std::size_t capacity_for(std::size_t n) noexcept {
        std::size_t capacity = 16;
        while (capacity < n * 2 + 2) capacity *= 2;
        return capacity;
    }
    void place(slot s) noexcept {
        const std::size_t mask = slots_.size() - 1;
        std::size_t i = home(s.tag);
        while (slots_[i].node != 0) i = (i + 1) & mask;
        slots_[i] = s;
    }
    void rehash(std::size_t capacity) {
        std::vector<slot> old = std::move(slots_);
        slots_.assign(capacity, slot{});
        set_shift();
        for (const slot& s : old) {
            if (s.node != 0) place(s);
        }
    }
    void set_shift() noexcept {
        unsigned bits = 0;
        while ((std::size_t{1} << bits) < slots_.size()) ++bits;
        shift_ = 64 - bits;
    }

    std::vector<slot> slots_;
    std::size_t size_ = 0;
    unsigned shift_ = 60; // 64 - log2(16)
};

} // namespace warren::detail
