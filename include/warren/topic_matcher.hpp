#pragma once
/// @file topic_matcher.hpp
/// A standalone topic matcher with RabbitMQ's semantics, built for speed. Over 600 lines
/// for a reason: one data structure (the trie, its word ids, the route cache with its
/// admission rule, and the compaction that keeps memory following the bindings down),
/// fuzzed as a unit.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.hpp"
#include "detail/core/hash_index.hpp"
#include "detail/routing/flat_tables.hpp"
#include "detail/routing/path_table.hpp"
#include "routing_key.hpp"
#include "stats.hpp"

namespace warren {
namespace detail {

/// A set of (node, word position) pairs, cleared in O(1) by bumping a stamp, so the
/// matcher can remember where `#` already led without allocating per match once warm.
class visit_set {
public:
    /// Forgets everything; sizes the table for about `expected` insertions.
    void reset(std::size_t expected) {
        std::size_t want = 16;
        while (want < expected * 2) want *= 2;
        if (want > keys_.size()) {
            keys_.assign(want, 0);
            stamps_.assign(want, 0);
            stamp_ = 0;
        }
        if (++stamp_ == 0) { // wrapped: old stamps could look current
            std::fill(stamps_.begin(), stamps_.end(), 0U);
            stamp_ = 1;
        }
        used_ = 0;
    }
    /// Adds `key`; returns false if it was already there.
    bool insert(std::uint64_t key) {
        if ((used_ + 1) * 2 > keys_.size()) grow();
        const std::size_t mask = keys_.size() - 1;
        for (std::size_t i = mix(key) & mask;; i = (i + 1) & mask) {
            if (stamps_[i] != stamp_) {
                stamps_[i] = stamp_;
                keys_[i] = key;
                ++used_;
                return true;
            }
            if (keys_[i] == key) return false;
        }
    }

private:
    static std::size_t mix(std::uint64_t x) noexcept {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        return static_cast<std::size_t>(x);
    }
    void grow() {
        std::vector<std::uint64_t> live;
        for (std::size_t i = 0; i < keys_.size(); ++i) {
            if (stamps_[i] == stamp_) live.push_back(keys_[i]);
        }
        keys_.assign(keys_.size() * 2, 0);
        stamps_.assign(stamps_.size() * 2, 0);
        stamp_ = 1;
        used_ = 0;
        for (std::uint64_t k : live) insert(k);
    }

    std::vector<std::uint64_t> keys_;
    std::vector<std::uint32_t> stamps_;
    std::uint32_t stamp_ = 0;
    std::size_t used_ = 0;
};

} // namespace detail

/// Matches routing keys against topic binding keys, RabbitMQ's way: keys split on `.`,
/// `*` matches exactly one word (possibly empty), `#` matches zero or more words and may
/// stand anywhere in a pattern, the empty key is zero words.
///
/// Each (pattern, value) pair is counted, so inserting it twice needs two erases. `match`
/// reports a value once per pattern that matches; callers that want each value once
/// deduplicate (the broker does). Matching stays polynomial however many `#` a pattern
/// holds: each (`#` node, word position) pair is explored once per match.
///
/// How it is fast: the trie's nodes sit in one flat table found by the hash of their path
/// (detail::path_table), so a step reads one 16-byte slot; a key's words are hashed while
/// it is split and never looked up in the word table (a slot that matches on hash, parent
/// and word text settles a word's id for the rest of the match, and a word no pattern holds
/// only ever meets a probe that fails); the slots of the key's literal path are prefetched
/// before the walk, so in a large trie their cache misses overlap; per-thread scratch space
/// means a match allocates nothing once warm.
///
/// What it costs: insert and erase are O(words of the pattern), also for one pattern with
/// many values (a pattern's values are found through a hash index once it has more than a
/// few, when `std::hash<Value>` exists; by a scan otherwise). Memory follows the bindings
/// down: when most nodes, values or words are free, erase renumbers what is left into
/// tables of its size (O(live) work, at most once per halving, so O(1) per erase amortised).
/// @code
/// warren::topic_matcher<int> m;
/// m.insert("*.orange.*", 1);
/// m.insert("lazy.#", 2);
/// m.match("lazy.orange.fox", [](int v) { std::cout << v; });  // prints 1 and 2
/// @endcode
/// Thread safety: none; concurrent `match` calls are safe while nobody inserts or erases
/// and the cache is off.
template <class Value>
class topic_matcher {
public:
    topic_matcher() { nodes_.emplace_back(); }

    /// Adds `value` under `pattern`; returns true if the pair was not there before.
    bool insert(std::string_view pattern, const Value& value);
    /// Removes one count of `value` under `pattern`; returns false if it was not there.
    bool erase(std::string_view pattern, const Value& value);
    /// Calls `on_match(value)` for every (pattern, value) whose pattern matches `key`.
    template <class F>
    void match(std::string_view key, F&& on_match) const;

    /// Turns the routing cache on with room for `entries` routing keys (rounded up to a
    /// power of two), or off with 0, and resets cache_stats(). A hit answers a repeated key
    /// without walking the trie.
    ///
    /// The cache never costs much where it cannot help. Admission: a key is stored only
    /// when it misses a second time in a row at its place (a key seen once is routed and
    /// forgotten, so a stream of distinct keys never pays for copying them in). Stepping
    /// aside: every 1,024 lookups the cache checks its hit rate, and below one in five it
    /// is skipped for the next 65,536 routes, then sampled again (a miss costs about a
    /// tenth of a walk, so below a fifth the cache loses; sampling one window in 65 keeps
    /// its cost on such a workload near 1%). Once each entry has held
    /// its longest key and result, a refill allocates nothing.
    ///
    /// Inserting or erasing a pattern invalidates exactly the cached keys whose first word
    /// the pattern's first word could match: all keys for a pattern starting with `*` or
    /// `#`, only keys starting with that word for a literal one. With the cache on, match()
    /// writes to the cache: do not call it from several threads at once. Off by default.
    void set_cache_capacity(std::size_t entries);
    /// The cache's size in entries; 0 when it is off.
    [[nodiscard]] std::size_t cache_capacity() const noexcept { return cache_.size(); }
    /// What the cache did since set_cache_capacity: lookups, hits, admissions, bypasses.
    [[nodiscard]] const topic_cache_stats& cache_stats() const noexcept { return stats_; }

    /// Number of distinct (pattern, value) pairs.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// Bytes of memory the matcher holds (tables and arrays, not the allocator's overhead,
    /// not the routing cache).
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return words_.memory_bytes() + paths_.memory_bytes() + nodes_.capacity() * sizeof(node) +
               values_.capacity() * sizeof(value_entry) + free_nodes_.capacity() * sizeof(std::uint32_t) +
               free_values_.capacity() * sizeof(std::uint32_t) + value_index_.memory_bytes() +
               word_epochs_.capacity() * sizeof(std::uint32_t);
    }

private:
    static constexpr std::uint32_t none = UINT32_MAX;
    using slot = detail::path_table::slot;

    // Wildcards stand in the path table as words with these ids and hashes; no interned
    // word has these ids (ids count up from 1), and a literal word whose hash happens to
    // equal a wildcard's is told apart by its id.
    static constexpr std::uint32_t star_word = UINT32_MAX - 1;
    static constexpr std::uint32_t hash_word = UINT32_MAX - 2;
    static constexpr std::uint64_t star_token = 0x2A2A2A2A2A2A2A2AULL;
    static constexpr std::uint64_t hash_token = 0x2323232323232323ULL;

    struct node {
        std::uint32_t first_value = none; // head of this node's value list
        std::uint32_t values = 0;         // length of the value list
        std::uint32_t literal_children = 0;
        bool star = false; // has a child through `*`
        bool hash = false; // has a child through `#`
    };
    struct value_entry {
        Value value;
        std::uint32_t count;
        std::uint32_t next;
    };
    enum class word_kind : std::uint8_t { literal, star, hash };

    /// A word of the key being matched: where it is, its hash, and its interned id once a
    /// slot has shown which it is.
    struct key_word {
        const char* text;
        std::uint32_t size;
        std::uint32_t id; // `unresolved` until a slot's word equals it
        std::uint64_t hash;
    };
    static constexpr std::uint32_t unresolved = UINT32_MAX;

    struct match_scratch {
        std::vector<key_word> words; // the key's words; grows, never shrinks
        std::size_t key_words = 0;   // how many of them the current key has
        detail::visit_set seen;      // (`#` node, position) pairs explored
        bool seen_ready = false;     // `seen` is reset lazily: most keys meet no `#`
        bool in_use = false;
    };
    template <class F>
    void match_with(std::string_view key, F& on_match, match_scratch& s) const;
    /// This thread's scratch space. Not in match() itself: that is a template, and each
    /// callback type would get its own copy, so a nested match could not tell it is nested.
    static match_scratch& thread_scratch() noexcept {
        thread_local match_scratch s;
        return s;
    }

    /// Splits a pattern into words, normalised where that keeps the meaning (see body).
    static void parse(std::string_view pattern, std::vector<std::pair<word_kind, std::string_view>>& out);
    std::uint32_t new_node();
    static std::uint64_t token_hash(word_kind kind, std::string_view text) noexcept {
        return kind == word_kind::star ? star_token : kind == word_kind::hash ? hash_token : detail::hash_bytes(text);
    }
    /// The word id of a pattern word in the path table; `unknown` for a literal no pattern holds.
    [[nodiscard]] std::uint32_t pattern_word(word_kind kind, std::string_view text) const noexcept {
        return kind == word_kind::star ? star_word : kind == word_kind::hash ? hash_word : words_.find(text);
    }
    /// Copies node `at`'s child flags into its slot (or the root's), where the walk reads them.
    void sync_flags(std::uint32_t at, std::uint64_t path) noexcept {
        const node& n = nodes_[at];
        const std::uint32_t flags = (n.star ? detail::path_table::star_child : 0U) |
                                    (n.hash ? detail::path_table::hash_child : 0U) |
                                    (n.literal_children != 0 ? detail::path_table::literal_child : 0U);
        if (at == 0) {
            root_flags_ = flags;
        } else {
            paths_.set_flags(path, at, flags);
        }
    }

    /// Whether values can key a hash table: then a node with many finds them in O(1).
    static constexpr bool hashable_values = requires(const Value& v) {
        { std::hash<Value>{}(v) } -> std::convertible_to<std::size_t>;
    };
    /// A node with more values than this finds them through value_index_.
    static constexpr std::uint32_t scanned_values = 8;
    [[nodiscard]] bool indexed(const node& n) const noexcept { return hashable_values && n.values > scanned_values; }
    [[nodiscard]] static std::uint64_t value_hash(std::uint32_t at, const Value& v) noexcept {
        if constexpr (hashable_values) {
            return detail::combine_hash(detail::mix64(at), std::hash<Value>{}(v));
        } else {
            return at;
        }
    }
    /// The slot holding `value` among node `at`'s values, or `none`.
    [[nodiscard]] std::uint32_t find_value(std::uint32_t at, const Value& value) const noexcept;
    void add_value(std::uint32_t at, const Value& value);
    void remove_value(std::uint32_t at, std::uint32_t slot);
    /// Gives memory back once most nodes, values or words are free: see the class comment.
    [[nodiscard]] bool sparse() const noexcept {
        return (nodes_.size() >= 64 && free_nodes_.size() * 2 > nodes_.size()) ||
               (values_.size() >= 64 && free_values_.size() * 2 > values_.size()) || words_.sparse();
    }
    void compact();
    template <class F>
    void visit(std::uint32_t at, std::uint64_t path, std::uint32_t flags, std::size_t i, F& on_match,
               match_scratch& s) const;

    /// A cached routing result: the key, the values it matched, and the epochs it was
    /// computed under (see set_cache_capacity).
    struct cache_entry {
        std::uint64_t hash = 0;
        std::string key;
        std::uint32_t first_word = 0;
        std::uint32_t epoch = 0; // 0: empty
        std::uint32_t word_epoch = 0;
        std::uint64_t last_use = 0;
        std::vector<Value> values;
    };
    /// The admission and step-aside rules of set_cache_capacity.
    static constexpr std::uint32_t cache_window = 1024;
    static constexpr std::uint32_t cache_bypass_span = 64 * cache_window;
    template <class F>
    [[nodiscard]] bool match_cached(std::string_view key, F& on_match, match_scratch& shared) const;
    void invalidate(std::uint32_t first_word) noexcept;
    [[nodiscard]] std::uint32_t word_epoch(std::uint32_t word) const noexcept {
        return word < word_epochs_.size() ? word_epochs_[word] : 0;
    }

    detail::word_table words_;
    detail::path_table paths_;
    std::uint32_t root_flags_ = 0;
    mutable std::vector<cache_entry> cache_;    // pairs of entries; empty when off
    mutable std::vector<std::uint64_t> ghosts_; // per pair: the hash of the last key that missed
    mutable topic_cache_stats stats_;
    mutable std::uint32_t window_lookups_ = 0;
    mutable std::uint32_t window_hits_ = 0;
    mutable std::uint32_t bypass_left_ = 0;
    mutable std::uint64_t use_clock_ = 0;
    std::uint32_t epoch_ = 1;                // bumped when any cached key may change
    std::vector<std::uint32_t> word_epochs_; // bumped when keys starting with that word may
    std::vector<node> nodes_;
    std::vector<std::uint32_t> free_nodes_;
    std::vector<value_entry> values_;
    std::vector<std::uint32_t> free_values_;
    detail::hash_index<std::uint32_t> value_index_; // (node, value) -> slot, for nodes with many values
    std::size_t size_ = 0;
};

template <class Value>
void topic_matcher<Value>::parse(std::string_view pattern, std::vector<std::pair<word_kind, std::string_view>>& out) {
    out.clear();
    // Within a run of wildcards only the count of `*` and whether a `#` occurs matter, so
    // the run is written as its `*`s followed by at most one `#`: `#.#` becomes `#` and
    // `#.*` becomes `*.#`. Fewer `#` nodes, and each `#` last in its run, keep the trie
    // smaller and matching cheaper.
    std::size_t stars = 0;
    bool hash = false;
    auto flush_run = [&] {
        for (; stars > 0; --stars) out.emplace_back(word_kind::star, std::string_view("*"));
        if (hash) out.emplace_back(word_kind::hash, std::string_view("#"));
        hash = false;
    };
    for_each_word(pattern, [&](std::string_view w) {
        if (w == "*") {
            ++stars;
        } else if (w == "#") {
            hash = true;
        } else {
            flush_run();
            out.emplace_back(word_kind::literal, w);
        }
    });
    flush_run();
}

template <class Value>
std::uint32_t topic_matcher<Value>::new_node() {
    if (!free_nodes_.empty()) {
        const std::uint32_t id = free_nodes_.back();
        free_nodes_.pop_back();
        nodes_[id] = node{};
        return id;
    }
    nodes_.emplace_back();
    return static_cast<std::uint32_t>(nodes_.size() - 1);
}

template <class Value>
bool topic_matcher<Value>::insert(std::string_view pattern, const Value& value) {
    thread_local std::vector<std::pair<word_kind, std::string_view>> words;
    parse(pattern, words);
    std::uint32_t at = 0;
    std::uint64_t path = detail::path_table::root_path;
    for (const auto& [kind, text] : words) {
        const std::uint64_t child = detail::path_table::child_path(path, token_hash(kind, text));
        std::uint32_t word = pattern_word(kind, text);
        const slot* found = word == detail::word_table::unknown ? nullptr : paths_.find(child, at, word);
        std::uint32_t next;
        if (found != nullptr) {
            next = found->id();
        } else {
            next = new_node();
            if (kind == word_kind::literal) {
                // Each edge holds one use of its word, so the word lives as long as an edge does.
                const bool new_word = word == detail::word_table::unknown;
                word = words_.acquire(text);
                // A word new to the table changes what cached keys' first words resolve to.
                if (!cache_.empty() && new_word) invalidate(0);
            }
#if WARREN_EXCEPTIONS
            try {
                paths_.insert(child, at, word, next);
            } catch (...) {
                if (kind == word_kind::literal) (void)words_.release(word);
                free_nodes_.push_back(next);
                throw;
            }
#else
            paths_.insert(child, at, word, next); // a failure aborts
#endif
            node& parent = nodes_[at];
            if (kind == word_kind::star) {
                parent.star = true;
            } else if (kind == word_kind::hash) {
                parent.hash = true;
            } else {
                ++parent.literal_children;
            }
            sync_flags(at, path);
        }
        at = next;
        path = child;
    }
    if (const std::uint32_t slot_at = find_value(at, value); slot_at != none) {
        ++values_[slot_at].count;
        return false;
    }
    add_value(at, value);
    ++size_;
    if (!cache_.empty()) invalidate(words.empty() || words[0].first != word_kind::literal ? 0 : words_.find(words[0].second));
    return true;
}

template <class Value>
bool topic_matcher<Value>::erase(std::string_view pattern, const Value& value) {
    struct step {
        std::uint32_t parent;
        std::uint64_t parent_path;
        std::uint32_t word;
    };
    thread_local std::vector<std::pair<word_kind, std::string_view>> words;
    thread_local std::vector<step> path_taken;
    parse(pattern, words);
    path_taken.clear();
    std::uint32_t at = 0;
    std::uint64_t path = detail::path_table::root_path;
    for (const auto& [kind, text] : words) {
        const std::uint32_t word = pattern_word(kind, text);
        if (word == detail::word_table::unknown) return false;
        const std::uint64_t child = detail::path_table::child_path(path, token_hash(kind, text));
        const slot* found = paths_.find(child, at, word);
        if (found == nullptr) return false;
        path_taken.push_back(step{at, path, word});
        at = found->id();
        path = child;
    }
    const std::uint32_t slot_at = find_value(at, value);
    if (slot_at == none) return false;
    if (--values_[slot_at].count > 0) return true;
    remove_value(at, slot_at);
    --size_;
    if (!cache_.empty()) invalidate(words.empty() || words[0].first != word_kind::literal ? 0 : path_taken[0].word);
    // Prune nodes that no longer lead anywhere, from the leaf up.
    for (std::size_t depth = words.size(); depth > 0; --depth) {
        const node& n = nodes_[at];
        if (n.first_value != none || n.star || n.hash || n.literal_children != 0) break;
        const step taken = path_taken[depth - 1];
        paths_.erase(path, at);
        node& parent = nodes_[taken.parent];
        const word_kind kind = words[depth - 1].first;
        if (kind == word_kind::star) {
            parent.star = false;
        } else if (kind == word_kind::hash) {
            parent.hash = false;
        } else {
            --parent.literal_children;
            // A forgotten word's id may be reused: cached keys must resolve words again.
            if (words_.release(taken.word) && !cache_.empty()) invalidate(0);
        }
        free_nodes_.push_back(at);
        at = taken.parent;
        path = taken.parent_path;
        sync_flags(at, path);
    }
    if (sparse()) compact();
    return true;
}

template <class Value>
std::uint32_t topic_matcher<Value>::find_value(std::uint32_t at, const Value& value) const noexcept {
    const node& n = nodes_[at];
    if (indexed(n)) {
        const std::uint32_t* slot_at =
            value_index_.find(value_hash(at, value), [&](std::uint32_t s) { return values_[s].value == value; });
        return slot_at == nullptr ? none : *slot_at;
    }
    for (std::uint32_t v = n.first_value; v != none; v = values_[v].next) {
        if (values_[v].value == value) return v;
    }
    return none;
}

template <class Value>
void topic_matcher<Value>::add_value(std::uint32_t at, const Value& value) {
    std::uint32_t slot_at;
    if (!free_values_.empty()) {
        slot_at = free_values_.back();
        free_values_.pop_back();
        values_[slot_at] = value_entry{value, 1, nodes_[at].first_value};
    } else {
        slot_at = static_cast<std::uint32_t>(values_.size());
        values_.push_back(value_entry{value, 1, nodes_[at].first_value});
    }
    node& n = nodes_[at];
    n.first_value = slot_at;
    ++n.values;
    if (!indexed(n)) return;
    if (n.values == scanned_values + 1) { // just past the scan limit: index them all
        for (std::uint32_t v = n.first_value; v != none; v = values_[v].next) value_index_.insert(value_hash(at, values_[v].value), v);
    } else {
        value_index_.insert(value_hash(at, value), slot_at);
    }
}

template <class Value>
void topic_matcher<Value>::remove_value(std::uint32_t at, std::uint32_t slot_at) {
    node& n = nodes_[at];
    if (indexed(n)) {
        // O(1) in a singly linked list: the head's value moves into the freed slot, which
        // keeps its place, and the head goes.
        (void)value_index_.erase(value_hash(at, values_[slot_at].value), [&](std::uint32_t s) { return s == slot_at; });
        const std::uint32_t head = n.first_value;
        if (slot_at != head) {
            *value_index_.find(value_hash(at, values_[head].value), [&](std::uint32_t s) { return s == head; }) = slot_at;
            values_[slot_at].value = values_[head].value;
            values_[slot_at].count = values_[head].count;
        }
        n.first_value = values_[head].next;
        free_values_.push_back(head);
        if (--n.values == scanned_values) { // few again: found by a scan
            for (std::uint32_t v = n.first_value; v != none; v = values_[v].next) {
                (void)value_index_.erase(value_hash(at, values_[v].value), [&](std::uint32_t s) { return s == v; });
            }
        }
        return;
    }
    std::uint32_t* link = &n.first_value;
    while (*link != slot_at) link = &values_[*link].next;
    *link = values_[slot_at].next;
    free_values_.push_back(slot_at);
    --n.values;
}

template <class Value>
void topic_matcher<Value>::compact() {
    // New ids in the order of the old ones, so the root stays 0.
    auto renumber = [](std::size_t count, const std::vector<std::uint32_t>& free_ids) {
        std::vector<std::uint32_t> renamed(count, 0);
        for (const std::uint32_t id : free_ids) renamed[id] = none;
        std::uint32_t next = 0;
        for (auto& id : renamed) id = id == none ? none : next++;
        return renamed;
    };
    const std::vector<std::uint32_t> node_id = renumber(nodes_.size(), free_nodes_);
    const std::vector<std::uint32_t> value_id = renumber(values_.size(), free_values_);
    const std::vector<std::uint32_t> word_id = words_.compact();
    auto value_of = [&](std::uint32_t old) { return old == none ? none : value_id[old]; };

    std::vector<node> nodes;
    nodes.reserve(nodes_.size() - free_nodes_.size());
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (node_id[i] == none) continue;
        node n = nodes_[i];
        n.first_value = value_of(n.first_value);
        nodes.push_back(n);
    }
    std::vector<value_entry> values;
    values.reserve(values_.size() - free_values_.size());
    for (std::size_t i = 0; i < values_.size(); ++i) {
        if (value_id[i] == none) continue;
        values.push_back(std::move(values_[i]));
        values.back().next = value_of(values.back().next);
    }
    // Path hashes come from the words' text, so the slots keep their tags: only ids change.
    paths_.renumber([&](slot& s) {
        s.parent = node_id[s.parent];
        if (s.word != star_word && s.word != hash_word) s.word = word_id[s.word];
        s.node = node_id[s.id()] | s.flags();
    });
    nodes_ = std::move(nodes);
    values_ = std::move(values);
    std::vector<std::uint32_t>().swap(free_nodes_);
    std::vector<std::uint32_t>().swap(free_values_);
    value_index_.clear();
    for (std::uint32_t at = 0; at < nodes_.size(); ++at) {
        if (!indexed(nodes_[at])) continue;
        for (std::uint32_t v = nodes_[at].first_value; v != none; v = values_[v].next) {
            value_index_.insert(value_hash(at, values_[v].value), v);
        }
    }
    // Word ids changed under the cached keys: every entry is stale now.
    std::vector<std::uint32_t>().swap(word_epochs_);
    if (++epoch_ == 0) epoch_ = 1;
}

template <class Value>
void topic_matcher<Value>::set_cache_capacity(std::size_t entries) {
    std::size_t capacity = 0;
    if (entries > 0) {
        capacity = 2; // whole pairs
        while (capacity < entries) capacity *= 2;
    }
    cache_.clear();
    cache_.shrink_to_fit();
    cache_.resize(capacity);
    std::vector<std::uint64_t>(capacity / 2, 0).swap(ghosts_);
    stats_ = {};
    window_lookups_ = 0;
    window_hits_ = 0;
    bypass_left_ = 0;
}

template <class Value>
void topic_matcher<Value>::invalidate(std::uint32_t first_word) noexcept {
    // Word 0 (a pattern starting with `*` or `#`, the empty pattern, or a change in the
    // known words) may change any key's result; a literal first word only its own keys'.
    if (first_word == 0) {
        if (++epoch_ == 0) epoch_ = 1; // 0 marks empty entries
        return;
    }
    if (word_epochs_.size() <= first_word) word_epochs_.resize(words_.id_limit() + 1, 0);
    ++word_epochs_[first_word];
}

template <class Value>
template <class F>
void topic_matcher<Value>::match(std::string_view key, F&& on_match) const {
    // Scratch space is per thread, so concurrent matches need no lock and, once warm,
    // matching allocates nothing. A match started from inside on_match gets its own and
    // leaves the cache alone, whose entry the outer match is still filling.
    match_scratch& shared = thread_scratch();
    if (shared.in_use) {
        match_scratch nested;
        match_with(key, on_match, nested);
        return;
    }
    if (!cache_.empty() && match_cached(key, on_match, shared)) return;
    match_with(key, on_match, shared);
}

template <class Value>
template <class F>
bool topic_matcher<Value>::match_cached(std::string_view key, F& on_match, match_scratch& shared) const {
    if (bypass_left_ > 0) { // stepping aside: see set_cache_capacity
        --bypass_left_;
        ++stats_.bypassed;
        return false;
    }
    ++stats_.lookups;
    if (++window_lookups_ == cache_window) {
        if (window_hits_ * 5 < cache_window) bypass_left_ = cache_bypass_span;
        window_lookups_ = 0;
        window_hits_ = 0;
    }
    const std::uint64_t hash = detail::hash_bytes(key);
    // Two-way set associative: a key may sit in either entry of its pair, so two hot keys
    // that share a slot do not evict each other on every route.
    const std::size_t pair_at = static_cast<std::size_t>(hash) & (cache_.size() / 2 - 1);
    cache_entry* pair = &cache_[pair_at * 2];
    for (int way = 0; way < 2; ++way) {
        cache_entry& e = pair[way];
        if (e.hash == hash && e.epoch == epoch_ && e.word_epoch == word_epoch(e.first_word) &&
            e.key.size() == key.size() && detail::equal_bytes(e.key.data(), key.data(), key.size())) {
            e.last_use = ++use_clock_;
            ++stats_.hits;
            ++window_hits_;
            // on_match may route again: mark the scratch busy so a nested match leaves the
            // cache alone (it could evict `e`) while we read `e`.
            shared.in_use = true;
            struct release_guard {
                match_scratch& s;
                ~release_guard() { s.in_use = false; }
            } guard{shared};
            for (const Value& v : e.values) on_match(v);
            return true;
        }
    }
    // A miss. A key stays out until it misses twice in a row at its pair: a stream of
    // distinct keys is routed as if there were no cache, without copying each one in.
    if (ghosts_[pair_at] != hash) {
        ghosts_[pair_at] = hash;
        return false;
    }
    // Admitted: route, remembering the result in the pair's stale or least recently used
    // entry. The entry keeps its capacity, so once warm a refill allocates nothing.
    ++stats_.admitted;
    const bool first_stale = pair[0].epoch != epoch_ || pair[0].word_epoch != word_epoch(pair[0].first_word);
    cache_entry& entry = first_stale || pair[0].last_use < pair[1].last_use ? pair[0] : pair[1];
    entry.epoch = 0;
    entry.values.clear();
    auto remember = [&](const Value& v) {
        entry.values.push_back(v);
        on_match(v);
    };
    match_with(key, remember, shared);
    const std::size_t dot = detail::find_dot(key.data(), key.size());
    entry.first_word = key.empty() ? 0 : words_.find(key.substr(0, dot));
    entry.word_epoch = word_epoch(entry.first_word);
    entry.hash = hash;
    entry.key.assign(key);
    entry.epoch = epoch_;
    entry.last_use = ++use_clock_;
    return true;
}

template <class Value>
template <class F>
void topic_matcher<Value>::match_with(std::string_view key, F& on_match, match_scratch& s) const {
    struct release_guard {
        match_scratch& s;
        ~release_guard() { s.in_use = false; }
    } guard{s};
    s.in_use = true;
    // Split and hash in one pass over the key; no word is looked up in the word table.
    std::size_t count = 0;
    if (!key.empty()) {
        const char* p = key.data();
        std::size_t left = key.size();
        for (;;) {
            const std::size_t dot = detail::find_dot(p, left);
            if (count == s.words.size()) s.words.resize(count + 16);
            s.words[count++] = key_word{p, static_cast<std::uint32_t>(dot), unresolved,
                                        detail::hash_bytes(std::string_view(p, dot))};
            if (dot == left) break;
            p += dot + 1;
            left -= dot + 1;
        }
    }
    s.key_words = count;
    // Ask for the slots of the key's literal path at once: in a trie larger than the
    // caches their misses then overlap instead of following one another.
    if ((root_flags_ & detail::path_table::literal_child) != 0) {
        std::uint64_t path = detail::path_table::root_path;
        for (std::size_t i = 0; i < count; ++i) {
            path = detail::path_table::child_path(path, s.words[i].hash);
            paths_.prefetch(path);
        }
    }
    s.seen_ready = false;
    visit(0, detail::path_table::root_path, root_flags_, 0, on_match, s);
}

template <class Value>
template <class F>
void topic_matcher<Value>::visit(std::uint32_t at, std::uint64_t path, std::uint32_t flags, std::size_t i,
                                 F& on_match, match_scratch& s) const {
    using detail::path_table;
    for (;;) {
        if ((flags & path_table::hash_child) != 0) {
            // `#` swallows zero or more words: try every split point, each only once, or
            // patterns with many `#` would explore the same suffixes exponentially often.
            const std::uint64_t hash_path = path_table::child_path(path, hash_token);
            const slot* hash_node = paths_.find(hash_path, at, hash_word);
            if (!s.seen_ready) {
                s.seen.reset(s.key_words + 1);
                s.seen_ready = true;
            }
            for (std::size_t j = i; j <= s.key_words; ++j) {
                if (s.seen.insert((std::uint64_t{hash_node->id()} << 32) | j)) {
                    visit(hash_node->id(), hash_path, hash_node->flags(), j, on_match, s);
                }
            }
        }
        if (i == s.key_words) {
            for (std::uint32_t v = nodes_[at].first_value; v != none; v = values_[v].next) on_match(values_[v].value);
            return;
        }
        const slot* literal = nullptr;
        std::uint64_t literal_path = 0;
        if ((flags & path_table::literal_child) != 0) {
            key_word& w = s.words[i];
            literal_path = path_table::child_path(path, w.hash);
            literal = paths_.find(literal_path, at, [&](std::uint32_t id) {
                if (w.id != unresolved) return id == w.id;
                if (id == star_word || id == hash_word || !words_.holds(id, w.text, w.size)) return false;
                w.id = id; // this word is settled for the rest of the match
                return true;
            });
        }
        // Follow one branch in this loop and recurse only when both exist.
        if ((flags & path_table::star_child) != 0) {
            const std::uint64_t star_path = path_table::child_path(path, star_token);
            const slot* star = paths_.find(star_path, at, star_word);
            if (literal != nullptr) visit(literal->id(), literal_path, literal->flags(), i + 1, on_match, s);
            at = star->id();
            path = star_path;
            flags = star->flags();
        } else if (literal != nullptr) {
            at = literal->id();
            path = literal_path;
            flags = literal->flags();
        } else {
            return;
        }
        ++i;
    }
}

} // namespace warren
