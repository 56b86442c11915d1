// A tiny topic matcher that is obviously correct, to check warren::topic_matcher against.
// Slow on purpose: it splits strings and fills a table on every call.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace warren_test {

/// Splits a routing or binding key RabbitMQ's way: the empty key is zero words, otherwise
/// every '.' separates two words, so "a..b" is three words and "." is two empty ones.
inline std::vector<std::string> reference_words(std::string_view key) {
    std::vector<std::string> words;
    if (key.empty()) return words;
    std::string word;
    for (char c : key) {
        if (c == '.') {
            words.push_back(word);
            word.clear();
        } else {
            word += c;
        }
    }
    words.push_back(word);
    return words;
}

/// Whether topic binding key `pattern` matches routing key `key`: '*' is exactly one word,
/// '#' zero or more words, any other word only itself.
inline bool reference_topic_match(std::string_view pattern, std::string_view key) {
    const std::vector<std::string> p = reference_words(pattern);
    const std::vector<std::string> k = reference_words(key);
    // m[i][j]: the first i pattern words match the first j key words. A table rather than
    // plain recursion, so patterns with many '#' stay fast.
    std::vector<std::vector<char>> m(p.size() + 1, std::vector<char>(k.size() + 1, 0));
    m[0][0] = 1;
    for (std::size_t i = 1; i <= p.size(); ++i) {
        for (std::size_t j = 0; j <= k.size(); ++j) {
            if (p[i - 1] == "#") {
                // '#' takes no word (m[i-1][j]) or one more word (m[i][j-1]).
                m[i][j] = static_cast<char>(m[i - 1][j] || (j > 0 && m[i][j - 1]));
            } else if (j > 0) {
                m[i][j] = static_cast<char>(m[i - 1][j - 1] && (p[i - 1] == "*" || p[i - 1] == k[j - 1]));
            }
        }
    }
    return m[p.size()][k.size()] != 0;
}

/// `pattern` with each run of '#' words replaced by one '#': "a.#.#.b" -> "a.#.b".
/// The two mean the same, and warren::topic_matcher stores them as one pattern.
inline std::string collapse_hash_runs(std::string_view pattern) {
    if (pattern.empty()) return {};
    std::string out;
    bool previous_hash = false;
    bool first = true;
    for (const std::string& w : reference_words(pattern)) {
        const bool hash = w == "#";
        if (hash && previous_hash) continue;
        if (!first) out += '.';
        out += w;
        first = false;
        previous_hash = hash;
    }
    return out;
}

/// `pattern` with each run of wildcard words written as its '*'s followed by at most one
/// '#': "a.#.*.#.b" -> "a.*.#.b". Within a run only the count of '*' and whether a '#'
/// occurs matter, so the two mean the same, and warren::topic_matcher stores them as one
/// pattern ("#.*" and "*.#" are one pattern to it).
inline std::string normalise_wildcard_runs(std::string_view pattern) {
    if (pattern.empty()) return {};
    std::vector<std::string> out;
    std::size_t stars = 0;
    bool hash = false;
    auto flush = [&] {
        for (; stars > 0; --stars) out.emplace_back("*");
        if (hash) out.emplace_back("#");
        hash = false;
    };
    for (const std::string& w : reference_words(pattern)) {
        if (w == "*") {
            ++stars;
        } else if (w == "#") {
            hash = true;
        } else {
            flush();
            out.push_back(w);
        }
    }
    flush();
    std::string joined;
    for (std::size_t i = 0; i < out.size(); ++i) joined += (i > 0 ? "." : "") + out[i];
    return joined;
}

} // namespace warren_test
