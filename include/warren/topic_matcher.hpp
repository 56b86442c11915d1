#pragma once
/// @file topic_matcher.hpp
/// A standalone topic matcher with RabbitMQ's semantics, built for speed. Over 600 lines
/// for a reason: one data structure (the trie, its word ids, the route cache and the
/// compaction that keeps memory following the bindings down), fuzzed as a unit.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "detail/core/hash_index.hpp"
#include "detail/routing/flat_tables.hpp"
#include "routing_key.hpp"

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
/// How it is fast: words are interned to integer ids, the trie's literal edges live in one
/// flat open-addressing table keyed by (node, word id), nodes and values sit in flat
/// arrays, and per-thread scratch space means a match allocates nothing once warm.
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
/// Thread safety: none; concurrent `match` calls are safe while nobody inserts or erases.
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
    /// power of two), or off with 0. A hit answers a repeated key without walking the trie.
    /// Inserting or erasing a pattern invalidates exactly the cached keys whose first word
    /// the pattern's first word could match: all keys for a pattern starting with `*` or
    /// `#`, only keys starting with that word for a literal one. With the cache on, match()
    /// writes to the cache: do not call it from several threads at once. Off by default.
    void set_cache_capacity(std::size_t entries);
    /// The cache's size in entries; 0 when it is off.
    [[nodiscard]] std::size_t cache_capacity() const noexcept { return cache_.size(); }

    /// Number of distinct (pattern, value) pairs.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// Bytes of memory the matcher holds (tables and arrays, not the allocator's overhead).
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return words_.memory_bytes() + edges_.memory_bytes() + nodes_.capacity() * sizeof(node) +
               values_.capacity() * sizeof(value_entry) + free_nodes_.capacity() * sizeof(std::uint32_t) +
               free_values_.capacity() * sizeof(std::uint32_t) + value_index_.memory_bytes() +
               word_epochs_.capacity() * sizeof(std::uint32_t);
    }

private:
    static constexpr std::uint32_t none = UINT32_MAX;

    struct node {
        std::uint32_t star = none;        // child through `*`
        std::uint32_t hash = none;        // child through `#`
        std::uint32_t first_value = none; // head of this node's value list
        std::uint32_t literal_children = 0;
        std::uint32_t values = 0;         // length of the value list
    };
    struct value_entry {
        Value value;
        std::uint32_t count;
        std::uint32_t next;
    };
    enum class word_kind : std::uint8_t { literal, star, hash };
    struct step {
        word_kind kind;
        std::uint32_t word; // the interned id, for literals
    };

    struct match_scratch {
        std::vector<std::uint32_t> ids; // word ids of the key; grows, never shrinks
        detail::visit_set seen;         // (`#` node, position) pairs explored
        bool seen_ready = false;        // `seen` is reset lazily: most keys meet no `#`
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
    void visit(std::uint32_t at, const std::uint32_t* ids, std::size_t count, std::size_t i, F& on_match,
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
    void invalidate(std::uint32_t first_word) noexcept;
    [[nodiscard]] std::uint32_t word_epoch(std::uint32_t word) const noexcept {
        return word < word_epochs_.size() ? word_epochs_[word] : 0;
    }

    detail::word_table words_;
    detail::edge_table edges_;
    mutable std::vector<cache_entry> cache_; // pairs of entries; empty when off
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
    for (const auto& [kind, text] : words) {
        if (kind == word_kind::star || kind == word_kind::hash) {
            std::uint32_t next = kind == word_kind::star ? nodes_[at].star : nodes_[at].hash;
            if (next == none) {
                next = new_node();
                (kind == word_kind::star ? nodes_[at].star : nodes_[at].hash) = next;
            }
            at = next;
            continue;
        }
        const std::uint32_t id = words_.find(text);
        std::uint32_t next = id == detail::word_table::unknown ? none : edges_.find(at, id);
        if (next == none) {
            // Each edge holds one use of its word, so the word lives as long as an edge does.
            const std::uint32_t word = words_.acquire(text);
            // A word new to the table changes what cached keys' words resolve to.
            if (!cache_.empty() && id == detail::word_table::unknown) invalidate(0);
            next = new_node();
            edges_.insert(at, word, next);
            ++nodes_[at].literal_children;
        }
        at = next;
    }
    if (const std::uint32_t slot = find_value(at, value); slot != none) {
        ++values_[slot].count;
        return false;
    }
    add_value(at, value);
    ++size_;
    if (!cache_.empty()) invalidate(words.empty() || words[0].first != word_kind::literal ? 0 : words_.find(words[0].second));
    return true;
}

template <class Value>
bool topic_matcher<Value>::erase(std::string_view pattern, const Value& value) {
    thread_local std::vector<std::pair<word_kind, std::string_view>> words;
    thread_local std::vector<std::pair<std::uint32_t, std::uint32_t>> path; // (node, word id)
    parse(pattern, words);
    path.clear();
    std::uint32_t at = 0;
    for (const auto& [kind, text] : words) {
        std::uint32_t word = detail::word_table::unknown;
        std::uint32_t next;
        if (kind == word_kind::star) {
            next = nodes_[at].star;
        } else if (kind == word_kind::hash) {
            next = nodes_[at].hash;
        } else {
            word = words_.find(text);
            next = word == detail::word_table::unknown ? none : edges_.find(at, word);
        }
        if (next == none) return false;
        path.emplace_back(at, word);
        at = next;
    }
    const std::uint32_t slot = find_value(at, value);
    if (slot == none) return false;
    if (--values_[slot].count > 0) return true;
    remove_value(at, slot);
    --size_;
    if (!cache_.empty()) invalidate(words.empty() || words[0].first != word_kind::literal ? 0 : path[0].second);
    // Prune nodes that no longer lead anywhere, from the leaf up.
    for (std::size_t depth = words.size(); depth > 0; --depth) {
        const node& n = nodes_[at];
        if (n.first_value != none || n.star != none || n.hash != none || n.literal_children != 0) break;
        const auto [parent, word] = path[depth - 1];
        const word_kind kind = words[depth - 1].first;
        if (kind == word_kind::star) {
            nodes_[parent].star = none;
        } else if (kind == word_kind::hash) {
            nodes_[parent].hash = none;
        } else {
            edges_.erase(parent, word);
            // A forgotten word's id may be reused: cached keys must resolve words again.
            if (words_.release(word) && !cache_.empty()) invalidate(0);
            --nodes_[parent].literal_children;
        }
        free_nodes_.push_back(at);
        at = parent;
    }
    if (sparse()) compact();
    return true;
}

template <class Value>
std::uint32_t topic_matcher<Value>::find_value(std::uint32_t at, const Value& value) const noexcept {
    const node& n = nodes_[at];
    if (indexed(n)) {
        const std::uint32_t* slot = value_index_.find(value_hash(at, value), [&](std::uint32_t s) { return values_[s].value == value; });
        return slot == nullptr ? none : *slot;
    }
    for (std::uint32_t v = n.first_value; v != none; v = values_[v].next) {
        if (values_[v].value == value) return v;
    }
    return none;
}

template <class Value>
void topic_matcher<Value>::add_value(std::uint32_t at, const Value& value) {
    std::uint32_t slot;
    if (!free_values_.empty()) {
        slot = free_values_.back();
        free_values_.pop_back();
        values_[slot] = value_entry{value, 1, nodes_[at].first_value};
    } else {
        slot = static_cast<std::uint32_t>(values_.size());
        values_.push_back(value_entry{value, 1, nodes_[at].first_value});
    }
    node& n = nodes_[at];
    n.first_value = slot;
    ++n.values;
    if (!indexed(n)) return;
    if (n.values == scanned_values + 1) { // just past the scan limit: index them all
        for (std::uint32_t v = n.first_value; v != none; v = values_[v].next) value_index_.insert(value_hash(at, values_[v].value), v);
    } else {
        value_index_.insert(value_hash(at, value), slot);
    }
}

template <class Value>
void topic_matcher<Value>::remove_value(std::uint32_t at, std::uint32_t slot) {
    node& n = nodes_[at];
    if (indexed(n)) {
        // O(1) in a singly linked list: the head's value moves into the freed slot, which
        // keeps its place, and the head goes.
        (void)value_index_.erase(value_hash(at, values_[slot].value), [&](std::uint32_t s) { return s == slot; });
        const std::uint32_t head = n.first_value;
        if (slot != head) {
            *value_index_.find(value_hash(at, values_[head].value), [&](std::uint32_t s) { return s == head; }) = slot;
            values_[slot].value = values_[head].value;
            values_[slot].count = values_[head].count;
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
    while (*link != slot) link = &values_[*link].next;
    *link = values_[slot].next;
    free_values_.push_back(slot);
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
    auto node_of = [&](std::uint32_t old) { return old == none ? none : node_id[old]; };
    auto value_of = [&](std::uint32_t old) { return old == none ? none : value_id[old]; };

    std::vector<node> nodes;
    nodes.reserve(nodes_.size() - free_nodes_.size());
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (node_id[i] == none) continue;
        node n = nodes_[i];
        n.star = node_of(n.star);
        n.hash = node_of(n.hash);
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
    detail::edge_table edges;
    edges.reset(edges_.size());
    edges_.for_each([&](std::uint32_t parent, std::uint32_t word, std::uint32_t child) {
        edges.insert(node_id[parent], word_id[word], node_id[child]);
    });
    nodes_ = std::move(nodes);
    values_ = std::move(values);
    edges_ = std::move(edges);
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
    if (!cache_.empty()) {
        const std::uint64_t hash = detail::hash_bytes(key);
        // Two-way set associative: a key may sit in either entry of its pair, so two hot
        // keys that share a slot do not evict each other on every route.
        cache_entry* pair = &cache_[static_cast<std::size_t>(hash) & (cache_.size() - 2)];
        for (int way = 0; way < 2; ++way) {
            cache_entry& e = pair[way];
            if (e.hash == hash && e.epoch == epoch_ && e.word_epoch == word_epoch(e.first_word) &&
                e.key.size() == key.size() && detail::equal_bytes(e.key.data(), key.data(), key.size())) {
                e.last_use = ++use_clock_;
                // on_match may route again: mark the scratch busy so a nested match
                // leaves the cache alone (it could evict `e`) while we read `e`.
                shared.in_use = true;
                struct release_guard {
                    match_scratch& s;
                    ~release_guard() { s.in_use = false; }
                } guard{shared};
                for (const Value& v : e.values) on_match(v);
                return;
            }
        }
        // A miss: route, remembering the result in the pair's stale or least recently used
        // entry. The entry keeps its capacity, so once warm a refill allocates nothing.
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
        return;
    }
    match_with(key, on_match, shared);
}

template <class Value>
template <class F>
void topic_matcher<Value>::match_with(std::string_view key, F& on_match, match_scratch& s) const {
    struct release_guard {
        match_scratch& s;
        ~release_guard() { s.in_use = false; }
    } guard{s};
    s.in_use = true;
    // Words no pattern uses become `unknown`: only `*` and `#` can match them.
    std::size_t count = 0;
    if (!key.empty()) {
        const char* p = key.data();
        std::size_t left = key.size();
        for (;;) {
            const std::size_t dot = detail::find_dot(p, left);
            if (count == s.ids.size()) s.ids.resize(count + 16);
            s.ids[count++] = words_.find(std::string_view(p, dot));
            if (dot == left) break;
            p += dot + 1;
            left -= dot + 1;
        }
    }
    s.seen_ready = false;
    visit(0, s.ids.data(), count, 0, on_match, s);
}

template <class Value>
template <class F>
void topic_matcher<Value>::visit(std::uint32_t at, const std::uint32_t* ids, std::size_t count, std::size_t i,
                                 F& on_match, match_scratch& s) const {
    for (;;) {
        const node& n = nodes_[at];
        if (n.hash != none) {
            // `#` swallows zero or more words: try every split point, each only once, or
            // patterns with many `#` would explore the same suffixes exponentially often.
            if (!s.seen_ready) {
                s.seen.reset(count + 1);
                s.seen_ready = true;
            }
            for (std::size_t j = i; j <= count; ++j) {
                if (s.seen.insert((std::uint64_t{n.hash} << 32) | j)) visit(n.hash, ids, count, j, on_match, s);
            }
        }
        if (i == count) {
            for (std::uint32_t v = n.first_value; v != none; v = values_[v].next) on_match(values_[v].value);
            return;
        }
        const std::uint32_t literal =
            n.literal_children != 0 && ids[i] != detail::word_table::unknown ? edges_.find(at, ids[i]) : none;
        // Follow one branch in this loop and recurse only when both exist.
        if (n.star != none) {
            if (literal != none) visit(literal, ids, count, i + 1, on_match, s);
            at = n.star;
        } else if (literal != none) {
            at = literal;
        } else {
            return;
        }
        ++i;
    }
}

} // namespace warren
