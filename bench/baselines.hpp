#pragma once
/// @file bench/baselines.hpp
/// The two matchers warren's topic_matcher is measured against. Same semantics as RabbitMQ
/// (and warren): keys split on '.', empty words are words, the empty key is zero words,
/// `*` matches exactly one word, `#` zero or more. Both report a value once per binding
/// that matches, as warren does; both assume each (pattern, value) pair is bound once,
/// which the benchmark's workloads guarantee.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bench {

/// Splits `key` into its words (views into `key`). The empty key has none.
inline void split_words(std::string_view key, std::vector<std::string_view>& out) {
    out.clear();
    if (key.empty()) return;
    std::size_t start = 0;
    for (;;) {
        const std::size_t dot = key.find('.', start);
        if (dot == std::string_view::npos) {
            out.push_back(key.substr(start));
            return;
        }
        out.push_back(key.substr(start, dot - start));
        start = dot + 1;
    }
}

/// Word-by-word topic match of one pattern against one key. The classic wildcard-matching
/// walk with one backtrack point: on a mismatch, the last `#` seen swallows one more word.
/// That is enough (a later `#` supersedes an earlier one) and keeps it O(words^2).
template <class PatternWord>
bool topic_matches(const std::vector<PatternWord>& pattern, const std::vector<std::string_view>& key) {
    std::size_t p = 0;
    std::size_t k = 0;
    std::size_t star_p = SIZE_MAX; // pattern position just after the last `#`
    std::size_t star_k = 0;        // key position that `#` resumes from
    while (k < key.size()) {
        if (p < pattern.size() && pattern[p] == "#") {
            star_p = ++p;
            star_k = k;
        } else if (p < pattern.size() && (pattern[p] == "*" || pattern[p] == key[k])) {
            ++p;
            ++k;
        } else if (star_p != SIZE_MAX) {
            p = star_p;
            k = ++star_k;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == "#") ++p;
    return p == pattern.size();
}

/// Tests every binding in turn: O(bindings) per route. The obvious first implementation.
template <class Value>
class naive_matcher {
public:
    void insert(std::string_view pattern, const Value& value) {
        binding b{{}, value};
        std::vector<std::string_view> words;
        split_words(pattern, words);
        b.words.assign(words.begin(), words.end());
        bindings_.push_back(std::move(b));
    }
    /// Linear search: fine for a baseline, not used by the timed unbind benchmarks.
    bool erase(std::string_view pattern, const Value& value) {
        std::vector<std::string_view> words;
        split_words(pattern, words);
        for (std::size_t i = 0; i < bindings_.size(); ++i) {
            const binding& b = bindings_[i];
            if (b.value == value && b.words.size() == words.size() &&
                std::equal(b.words.begin(), b.words.end(), words.begin())) {
                bindings_[i] = std::move(bindings_.back());
                bindings_.pop_back();
                return true;
            }
        }
        return false;
    }
    template <class F>
    void match(std::string_view key, F&& on_match) const {
        split_words(key, key_words_);
        for (const binding& b : bindings_) {
            if (topic_matches(b.words, key_words_)) on_match(b.value);
        }
    }
    [[nodiscard]] std::size_t size() const noexcept { return bindings_.size(); }

private:
    struct binding {
        std::vector<std::string> words;
        Value value;
    };
    std::vector<binding> bindings_;
    mutable std::vector<std::string_view> key_words_; // scratch, reused: not thread-safe
};

/// A plain trie: one node per pattern prefix, literal children in a
/// std::unordered_map<std::string, node>, plus a `*` child and a `#` child. What one writes
/// without tuning: a hash lookup with string keys per literal step, a heap node per prefix.
/// Lookups take the key's words as string_views (transparent hashing), so the baseline
/// does not pay for building std::strings while routing.
template <class Value>
class plain_trie {
public:
    void insert(std::string_view pattern, const Value& value) {
        parse(pattern, words_);
        node* n = &root_;
        for (std::string_view w : words_) {
            if (w == "*" || w == "#") {
                std::unique_ptr<node>& child = w == "*" ? n->star : n->hash;
                if (!child) child = std::make_unique<node>();
                n = child.get();
            } else {
                auto it = n->children.find(w);
                if (it == n->children.end()) it = n->children.try_emplace(std::string(w)).first;
                n = &it->second;
            }
        }
        for (const Value& v : n->values) {
            if (v == value) return;
        }
        n->values.push_back(value);
    }

    bool erase(std::string_view pattern, const Value& value) {
        parse(pattern, words_);
        path_.clear();
        node* n = &root_;
        for (std::string_view w : words_) {
            path_.push_back(n);
            if (w == "*") {
                n = n->star.get();
            } else if (w == "#") {
                n = n->hash.get();
            } else {
                auto it = n->children.find(w);
                n = it == n->children.end() ? nullptr : &it->second;
            }
            if (n == nullptr) return false;
        }
        auto it = std::find(n->values.begin(), n->values.end(), value);
        if (it == n->values.end()) return false;
        *it = n->values.back();
        n->values.pop_back();
        // Prune the nodes that lead nowhere any more, from the leaf up.
        for (std::size_t depth = words_.size(); depth > 0; --depth) {
            if (!n->values.empty() || n->star || n->hash || !n->children.empty()) break;
            node* parent = path_[depth - 1];
            const std::string_view w = words_[depth - 1];
            if (w == "*") {
                parent->star.reset();
            } else if (w == "#") {
                parent->hash.reset();
            } else {
                parent->children.erase(parent->children.find(w));
            }
            n = parent;
        }
        return true;
    }

    template <class F>
    void match(std::string_view key, F&& on_match) const {
        split_words(key, key_words_);
        seen_.clear();
        visit(root_, 0, on_match);
    }

private:
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct node {
        // A map of an incomplete type: fine with libstdc++ and libc++, as such tries are written.
        std::unordered_map<std::string, node, string_hash, std::equal_to<>> children;
        std::unique_ptr<node> star;
        std::unique_ptr<node> hash;
        std::vector<Value> values;
    };

    // `#.#` means `#`: collapsing runs keeps one node per distinct meaning, as warren does.
    static void parse(std::string_view pattern, std::vector<std::string_view>& out) {
        split_words(pattern, out);
        std::size_t kept = 0;
        for (std::size_t i = 0; i < out.size(); ++i) {
            if (out[i] == "#" && kept > 0 && out[kept - 1] == "#") continue;
            out[kept++] = out[i];
        }
        out.resize(kept);
    }

    template <class F>
    void visit(const node& n, std::size_t i, F& on_match) const {
        if (n.hash) {
            // Each (`#` node, position) once: a pattern with several `#` could otherwise
            // reach its end along several splits and be reported more than once.
            for (std::size_t j = i; j <= key_words_.size(); ++j) {
                if (first_visit(n.hash.get(), j)) visit(*n.hash, j, on_match);
            }
        }
        if (i == key_words_.size()) {
            for (const Value& v : n.values) on_match(v);
            return;
        }
        if (!n.children.empty()) {
            auto it = n.children.find(key_words_[i]);
            if (it != n.children.end()) visit(it->second, i + 1, on_match);
        }
        if (n.star) visit(*n.star, i + 1, on_match);
    }
    bool first_visit(const node* n, std::size_t i) const {
        for (const auto& [m, j] : seen_) {
            if (m == n && j == i) return false;
        }
        seen_.emplace_back(n, i);
        return true;
    }

    node root_;
    std::vector<std::string_view> words_; // insert/erase scratch
    std::vector<node*> path_;             // erase scratch
    // Match scratch, reused so a warm route allocates nothing: not thread-safe.
    mutable std::vector<std::string_view> key_words_;
    mutable std::vector<std::pair<const node*, std::size_t>> seen_;
};

} // namespace bench
