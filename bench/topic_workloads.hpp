// The topic benchmarks' workloads, shared by bench/topic_match.cpp (Google Benchmark) and
// bench/topic_match_callgrind.cpp (instruction counts), so that both measure the same
// bindings and keys. See docs/benchmarks.md, "Workloads".
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "baselines.hpp" // split_words

namespace bench {

constexpr std::size_t key_count = 4096;      // keys routed in turn; a power of two
constexpr std::size_t distinct_key_count = 131072; // the distinct workload's keys, mostly unrepeated
constexpr std::size_t hit_key_count = 256;   // keys repeated for the cache-hit runs
constexpr std::size_t fanout_matches = 1000;

// ---------------------------------------------------------------------------
// Workloads. Deterministic (own generator, no std distributions), so every run and every
// standard library sees the same bindings and keys; binding i always has value i.
// ---------------------------------------------------------------------------
struct rng {
    std::uint64_t state;
    std::uint64_t next() noexcept { // splitmix64
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    std::size_t below(std::size_t n) noexcept { return static_cast<std::size_t>(((next() >> 32) * n) >> 32); }
};

constexpr std::size_t levels = 4;
constexpr std::size_t words_per_level = 100;

/// 100 distinct lowercase words of 3 to 10 letters per key position.
inline const std::vector<std::vector<std::string>>& vocabulary() {
    static const std::vector<std::vector<std::string>> vocab = [] {
        rng r{42};
        std::vector<std::vector<std::string>> v(levels);
        for (auto& level : v) {
            std::unordered_set<std::string> seen;
            while (level.size() < words_per_level) {
                std::string w(3 + r.below(8), 'a');
                for (char& c : w) c = static_cast<char>('a' + r.below(26));
                if (seen.insert(w).second) level.push_back(w);
            }
        }
        return v;
    }();
    return vocab;
}

inline const std::string& random_word(rng& r, std::size_t level) { return vocabulary()[level % levels][r.below(words_per_level)]; }

inline std::string join(const std::vector<std::string>& words) {
    std::string s;
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i > 0) s += '.';
        s += words[i];
    }
    return s;
}

enum class workload { selective, wildcard, fanout, distinct };

inline const char* workload_name(workload w) {
    switch (w) {
    case workload::selective: return "selective";
    case workload::wildcard: return "wildcard";
    case workload::fanout: return "fanout";
    case workload::distinct: return "distinct";
    }
    return "?";
}

struct workload_data {
    std::vector<std::string> patterns;  // binding i: (patterns[i], i)
    std::vector<std::string> keys;      // routed in turn; size is a power of two
    std::vector<std::string> hit_keys;  // a few keys, repeated: they fit the cache
    std::vector<std::size_t> erase_order;
    std::size_t text_bytes = 0;         // the patterns' text, for "bytes beyond the text"
};

/// (a) selective: 4-word keys, 100 words per level; bindings 90% literal, 6% with one `*`
/// (at a random position), 4% `w.w.w.#`; half the keys copy a literal binding, half are
/// random words.
inline void make_selective(std::size_t n, std::uint64_t seed, workload_data& d, std::size_t keys = key_count) {
    rng r{seed};
    std::vector<std::size_t> literal;
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<std::string> w(levels);
        for (std::size_t l = 0; l < levels; ++l) w[l] = random_word(r, l);
        const std::size_t kind = r.below(100);
        if (kind < 90) {
            literal.push_back(d.patterns.size());
        } else if (kind < 96) {
            w[r.below(levels)] = "*";
        } else {
            w.back() = "#";
        }
        d.patterns.push_back(join(w));
    }
    rng k{seed ^ 0x5eed};
    for (std::size_t i = 0; i < keys; ++i) {
        if (i % 2 == 0 && !literal.empty()) {
            d.keys.push_back(d.patterns[literal[k.below(literal.size())]]);
        } else {
            std::vector<std::string> w(levels);
            for (std::size_t l = 0; l < levels; ++l) w[l] = random_word(k, l);
            d.keys.push_back(join(w));
        }
    }
}

/// (b) wildcard-heavy: 50% literal, 30% with `*` (one, or two in a quarter of them), 20%
/// with one `#` in place of a word at any position (`#.w.w.w` ... `w.w.w.#`). Half the keys
/// are built from a random binding (each `*` a random word, `#` zero to two random words,
/// so the key matches it), half are random 4-word keys.
inline void make_wildcard(std::size_t n, std::uint64_t seed, workload_data& d) {
    rng r{seed};
    for (std::size_t i = 0; i < n; ++i) {
        std::vector<std::string> w(levels);
        for (std::size_t l = 0; l < levels; ++l) w[l] = random_word(r, l);
        const std::size_t kind = r.below(100);
        if (kind < 50) {
            // literal
        } else if (kind < 80) {
            const std::size_t first = r.below(levels);
            w[first] = "*";
            if (r.below(4) == 0) w[(first + 1 + r.below(levels - 1)) % levels] = "*";
        } else {
            w[r.below(levels)] = "#";
        }
        d.patterns.push_back(join(w));
    }
    rng k{seed ^ 0x5eed};
    std::vector<std::string_view> words;
    for (std::size_t i = 0; i < key_count; ++i) {
        std::vector<std::string> key;
        if (i % 2 == 0) {
            bench::split_words(d.patterns[k.below(n)], words);
            for (std::string_view w : words) {
                if (w == "*") {
                    key.push_back(random_word(k, key.size()));
                } else if (w == "#") {
                    for (std::size_t extra = k.below(3); extra > 0; --extra) key.push_back(random_word(k, key.size()));
                } else {
                    key.emplace_back(w);
                }
            }
        } else {
            for (std::size_t l = 0; l < levels; ++l) key.push_back(random_word(k, l));
        }
        d.keys.push_back(join(key));
    }
}

/// Every distinct pattern of literals, `*` and at most one `#` that matches `key` (4 words):
/// 16 without `#`, 129 with one (`#` standing for any run of 0 to 4 of the key's words).
inline std::vector<std::string> patterns_matching(const std::vector<std::string>& key) {
    std::vector<std::string> out;
    const std::size_t n = key.size();
    auto add = [&](std::size_t run_begin, std::size_t run_end, bool with_hash) {
        const std::size_t free_words = n - (run_end - run_begin);
        for (std::size_t stars = 0; stars < (std::size_t{1} << free_words); ++stars) {
            std::vector<std::string> w;
            std::size_t bit = 0;
            for (std::size_t i = 0; i <= n; ++i) {
                if (with_hash && i == run_begin) w.emplace_back("#");
                if (i == n) break;
                if (with_hash && i >= run_begin && i < run_end) continue;
                w.push_back((stars >> bit++) & 1U ? std::string("*") : key[i]);
            }
            out.push_back(join(w));
        }
    };
    add(0, 0, false);
    for (std::size_t b = 0; b <= n; ++b) {
        for (std::size_t e = b; e <= n; ++e) add(b, e, true);
    }
    return out;
}

/// (c) fan-out: one key matched by 1,000 bindings (the 145 distinct patterns that match
/// it, in turn, each binding with its own value), among n - 1,000 selective bindings.
inline void make_fanout(std::size_t n, std::uint64_t seed, workload_data& d) {
    rng r{seed ^ 0xfa4};
    std::vector<std::string> hot(levels);
    for (std::size_t l = 0; l < levels; ++l) hot[l] = random_word(r, l);
    const std::vector<std::string> matching = patterns_matching(hot);
    for (std::size_t i = 0; i < fanout_matches && i < n; ++i) d.patterns.push_back(matching[i % matching.size()]);
    workload_data background;
    if (n > fanout_matches) make_selective(n - fanout_matches, seed, background);
    d.patterns.insert(d.patterns.end(), background.patterns.begin(), background.patterns.end());
    d.keys.assign(1, join(hot));
}

inline workload_data make_workload(workload w, std::size_t n) {
    constexpr std::uint64_t seed = 20240603;
    workload_data d;
    d.patterns.reserve(n);
    switch (w) {
    case workload::selective: make_selective(n, seed, d); break;
    case workload::wildcard: make_wildcard(n, seed, d); break;
    case workload::fanout: make_fanout(n, seed, d); break;
    // (d) distinct: the selective bindings, routed with 131,072 keys, most of them routed
    // once per pass: what a routing cache cannot help and must not slow down.
    case workload::distinct: make_selective(n, seed, d, distinct_key_count); break;
    }
    d.hit_keys.assign(d.keys.begin(), d.keys.begin() + static_cast<std::ptrdiff_t>(std::min(hit_key_count, d.keys.size())));
    for (const std::string& p : d.patterns) d.text_bytes += p.size();
    d.erase_order.resize(n);
    for (std::size_t i = 0; i < n; ++i) d.erase_order[i] = i;
    rng s{seed ^ 0xe5a5e};
    for (std::size_t i = n; i > 1; --i) std::swap(d.erase_order[i - 1], d.erase_order[s.below(i)]);
    return d;
}

} // namespace bench
