#pragma once
/// @file topic_matcher.hpp
/// A standalone topic matcher with RabbitMQ's semantics: a trie of binding-key words.

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

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

    /// Number of distinct (pattern, value) pairs.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }

private:
    static constexpr std::uint32_t none = UINT32_MAX;

    struct transparent_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    struct node {
        std::unordered_map<std::string, std::uint32_t, transparent_hash, std::equal_to<>> words;
        std::uint32_t star = none;
        std::uint32_t hash = none;
        std::vector<std::pair<Value, std::uint32_t>> values; // value and its count

        [[nodiscard]] bool unused() const noexcept {
            return words.empty() && star == none && hash == none && values.empty();
        }
    };

    /// `#.#` means what `#` means; collapsing runs keeps matching fast on such patterns.
    static void collapse_hash_runs(std::string_view pattern, std::vector<std::string_view>& out);
    std::uint32_t& edge(std::uint32_t from, std::string_view word);
    std::uint32_t child(std::uint32_t from, std::string_view word) const;
    std::uint32_t new_node();
    template <class F>
    void visit(std::uint32_t at, const std::vector<std::string_view>& words, std::size_t i,
               F& on_match, detail::visit_set& seen) const;

    std::vector<node> nodes_;
    std::vector<std::uint32_t> free_;
    std::size_t size_ = 0;
};

template <class Value>
void topic_matcher<Value>::collapse_hash_runs(std::string_view pattern,
                                              std::vector<std::string_view>& out) {
    out.clear();
    for_each_word(pattern, [&](std::string_view w) {
        if (w == "#" && !out.empty() && out.back() == "#") return;
        out.push_back(w);
    });
}

template <class Value>
std::uint32_t topic_matcher<Value>::new_node() {
    if (!free_.empty()) {
        const std::uint32_t id = free_.back();
        free_.pop_back();
        return id;
    }
    nodes_.emplace_back();
    return static_cast<std::uint32_t>(nodes_.size() - 1);
}

template <class Value>
std::uint32_t topic_matcher<Value>::child(std::uint32_t from, std::string_view word) const {
    const node& n = nodes_[from];
    if (word == "*") return n.star;
    if (word == "#") return n.hash;
    auto it = n.words.find(word);
    return it == n.words.end() ? none : it->second;
}

template <class Value>
std::uint32_t& topic_matcher<Value>::edge(std::uint32_t from, std::string_view word) {
    node& n = nodes_[from];
    if (word == "*") return n.star;
    if (word == "#") return n.hash;
    return n.words.try_emplace(std::string(word), none).first->second;
}

template <class Value>
bool topic_matcher<Value>::insert(std::string_view pattern, const Value& value) {
    std::vector<std::string_view> words;
    collapse_hash_runs(pattern, words);
    std::uint32_t at = 0;
    for (std::string_view w : words) {
        std::uint32_t next = child(at, w);
        if (next == none) {
            next = new_node(); // may reallocate nodes_, so take the edge afterwards
            edge(at, w) = next;
        }
        at = next;
    }
    for (auto& [v, count] : nodes_[at].values) {
        if (v == value) {
            ++count;
            return false;
        }
    }
    nodes_[at].values.emplace_back(value, 1U);
    ++size_;
    return true;
}

template <class Value>
bool topic_matcher<Value>::erase(std::string_view pattern, const Value& value) {
    std::vector<std::string_view> words;
    collapse_hash_runs(pattern, words);
    std::vector<std::uint32_t> path{0};
    for (std::string_view w : words) {
        const std::uint32_t next = child(path.back(), w);
        if (next == none) return false;
        path.push_back(next);
    }
    auto& values = nodes_[path.back()].values;
    auto it = values.begin();
    while (it != values.end() && !(it->first == value)) ++it;
    if (it == values.end()) return false;
    if (--it->second > 0) return true;
    values.erase(it);
    --size_;
    // Prune nodes that no longer lead anywhere, from the leaf up.
    for (std::size_t depth = words.size(); depth > 0; --depth) {
        const std::uint32_t id = path[depth];
        if (!nodes_[id].unused()) break;
        node& parent = nodes_[path[depth - 1]];
        const std::string_view w = words[depth - 1];
        if (w == "*") parent.star = none;
        else if (w == "#") parent.hash = none;
        else parent.words.erase(parent.words.find(w));
        nodes_[id] = node{};
        free_.push_back(id);
    }
    return true;
}

template <class Value>
template <class F>
void topic_matcher<Value>::match(std::string_view key, F&& on_match) const {
    // Scratch space is per thread, so concurrent matches need no lock and, once warm,
    // matching allocates nothing. A match started from inside on_match gets its own.
    struct scratch {
        std::vector<std::string_view> words;
        detail::visit_set seen;
        bool in_use = false;
    };
    thread_local scratch shared;
    scratch nested;
    scratch& s = shared.in_use ? nested : shared;
    s.in_use = true;
    struct release_guard {
        scratch& s;
        ~release_guard() { s.in_use = false; }
    } guard{s};
    s.words.clear();
    for_each_word(key, [&s](std::string_view w) { s.words.push_back(w); });
    s.seen.reset(s.words.size() + 1);
    visit(0, s.words, 0, on_match, s.seen);
}

template <class Value>
template <class F>
void topic_matcher<Value>::visit(std::uint32_t at, const std::vector<std::string_view>& words,
                                 std::size_t i, F& on_match, detail::visit_set& seen) const {
    const node& n = nodes_[at];
    if (n.hash != none) {
        // `#` swallows zero or more words: try every split point, each only once, or
        // patterns with many `#` would explore the same suffixes exponentially often.
        for (std::size_t j = i; j <= words.size(); ++j) {
            if (seen.insert((std::uint64_t{n.hash} << 32) | j)) visit(n.hash, words, j, on_match, seen);
        }
    }
    if (i == words.size()) {
        for (const auto& entry : n.values) on_match(entry.first);
        return;
    }
    if (auto it = n.words.find(words[i]); it != n.words.end()) visit(it->second, words, i + 1, on_match, seen);
    if (n.star != none) visit(n.star, words, i + 1, on_match, seen);
}

} // namespace warren
