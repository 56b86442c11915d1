// warren::topic_matcher: RabbitMQ's and Qpid's own cases, a reference matcher on random
// input, and the topic rules by name.

#include <warren/topic_matcher.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/topic_suites.hpp"
#include "support/catch.hpp"
#include "support/reference_topic.hpp"
#include "support/scale.hpp"

namespace {

using warren_test::reference_topic_match;

/// Every value reported for `key`, with repeats, in report order.
template <class Value>
std::vector<Value> reports(const warren::topic_matcher<Value>& m, std::string_view key) {
    std::vector<Value> out;
    m.match(key, [&out](const Value& v) { out.push_back(v); });
    return out;
}

/// The values reported for `key`, sorted, each once.
template <class Value>
std::vector<Value> matched(const warren::topic_matcher<Value>& m, std::string_view key) {
    std::vector<Value> out = reports(m, key);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

/// Whether `pattern` alone matches `key`, asked of a fresh topic_matcher.
bool matches(std::string_view pattern, std::string_view key) {
    warren::topic_matcher<int> m;
    m.insert(pattern, 1);
    return !reports(m, key).empty();
}

/// "w1.w2...." from words; no words gives the empty key.
std::string join(const std::vector<std::string>& parts) {
    std::string key;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) key += '.';
        key += parts[i];
    }
    return key;
}

/// Every key of 0 to `max_words` words drawn from `alphabet`.
std::vector<std::string> all_keys(const std::vector<std::string>& alphabet, std::size_t max_words) {
    std::vector<std::string> keys{""};
    std::vector<std::vector<std::string>> level{{}};
    for (std::size_t n = 1; n <= max_words; ++n) {
        std::vector<std::vector<std::string>> next;
        for (const auto& prefix : level) {
            for (const auto& w : alphabet) {
                next.push_back(prefix);
                next.back().push_back(w);
                keys.push_back(join(next.back()));
            }
        }
        level = std::move(next);
    }
    return keys;
}

} // namespace

TEST_CASE("topic_matcher: RabbitMQ and Qpid conformance cases", "[topic][conformance]") {
    const auto& cases = warren_test::topic_suites();
    REQUIRE(cases.size() == 153);
    std::size_t checked = 0;
    for (const auto& c : cases) {
        INFO("case " << checked << ": " << c.group << " (" << c.source << "), key '" << c.routing_key << "'");
        warren::topic_matcher<std::string> m;
        for (const auto& [pattern, destination] : c.bindings) m.insert(pattern, std::string(destination));
        const std::vector<std::string> expected(c.expected.begin(), c.expected.end());
        CHECK(matched(m, c.routing_key) == expected);

        // The reference must agree with the upstream suites too, or the random test
        // below would compare against the wrong thing.
        std::vector<std::string> by_reference;
        for (const auto& [pattern, destination] : c.bindings) {
            if (reference_topic_match(pattern, c.routing_key)) by_reference.emplace_back(destination);
        }
        std::sort(by_reference.begin(), by_reference.end());
        by_reference.erase(std::unique(by_reference.begin(), by_reference.end()), by_reference.end());
        CHECK(by_reference == expected);
        ++checked;
    }
    CHECK(checked == 153);
}

TEST_CASE("topic_matcher: normalised patterns match the same keys as the originals", "[topic][conformance]") {
    // Qpid's TopicExchange normaliser cases (qpid-cpp src/tests/TopicExchangeTest.cpp
    // 143-154): rewriting '#.#' -> '#' and '#.*' -> '*.#' keeps a pattern's meaning.
    const std::vector<std::pair<std::string, std::string>> rewrites{
        {"", ""},
        {"a.b.c", "a.b.c"},
        {"a.*.c", "a.*.c"},
        {"#", "#"},
        {"#.#.#.#", "#"},
        {"#.*.#.*.#.#.*", "*.*.*.#"},
        {"a.*.#.*.#.*.#", "a.*.*.*.#"},
        {"a.*.#.*.#.*", "a.*.*.*.#"},
        {"*.#.#.*.*.#", "*.*.*.#"},
    };
    // Empty words are words, so they are part of the alphabet.
    const std::vector<std::string> keys = all_keys({"a", "b", "c", ""}, 5);
    REQUIRE(keys.size() == 1 + 4 + 16 + 64 + 256 + 1024);

    for (const auto& [original, normalised] : rewrites) {
        INFO("'" << original << "' -> '" << normalised << "'");
        warren::topic_matcher<int> m;
        m.insert(original, 1);
        m.insert(normalised, 2);
        std::vector<std::string> disagree;
        std::size_t matching = 0;
        std::size_t matching_by_reference = 0;
        for (const auto& key : keys) {
            const std::vector<int> got = matched(m, key);
            if (got == std::vector<int>{1, 2}) ++matching;
            if (reference_topic_match(normalised, key)) ++matching_by_reference;
            else if (!got.empty()) disagree.push_back(key);
            if (reference_topic_match(original, key) != reference_topic_match(normalised, key)) {
                disagree.push_back("reference: " + key);
            }
        }
        CAPTURE(disagree);
        CHECK(disagree.empty());
        // Agreeing on "matches nothing" would mean little: both match the right keys.
        CHECK(matching > 0);
        CHECK(matching == matching_by_reference);
    }
}

TEST_CASE("topic_matcher: agrees with a reference matcher on random patterns and keys", "[topic][random]") {
    // mt19937's output sequence is fixed by the standard, unlike the distributions, so the
    // same cases run with every standard library.
    const auto seed = GENERATE(1U, 2U, 3U, 4U, 5U, 6U, 7U, 8U, 9U, 10U);
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };

    const std::vector<std::string> pattern_words{"a", "b", "", "*", "#"};
    const std::vector<std::string> key_words{"a", "b", "", "c"};
    auto random_key = [&](const std::vector<std::string>& alphabet, std::size_t max_words) {
        std::vector<std::string> words(pick(max_words + 1));
        for (auto& w : words) w = alphabet[pick(alphabet.size())];
        return join(words);
    };
    // A small pool, so the same pattern is inserted and erased several times.
    std::vector<std::string> pool(12);
    for (auto& p : pool) p = random_key(pattern_words, 5);

    warren::topic_matcher<int> m;
    // (pattern, value) -> count. "#.#" and "#" are the same pattern to the matcher.
    std::map<std::pair<std::string, int>, int> model;

    auto check_keys = [&](const char* phase) {
        INFO(phase);
        CHECK(m.size() == model.size());
        CHECK(m.empty() == model.empty());
        std::vector<std::string> wrong;
        for (int i = 0; i < 150; ++i) {
            const std::string key = random_key(key_words, 6);
            // One report per matching (pattern, value) pair, however many times inserted.
            std::vector<int> expected;
            for (const auto& entry : model) {
                if (reference_topic_match(entry.first.first, key)) expected.push_back(entry.first.second);
            }
            std::vector<int> got = reports(m, key);
            std::sort(expected.begin(), expected.end());
            std::sort(got.begin(), got.end());
            if (got != expected) wrong.push_back("'" + key + "'");
        }
        CAPTURE(pool);
        CAPTURE(wrong);
        CHECK(wrong.empty());
    };

    for (int i = 0; i < 40; ++i) {
        const std::string& pattern = pool[pick(pool.size())];
        const int value = static_cast<int>(pick(4));
        int& count = model[{warren_test::collapse_hash_runs(pattern), value}];
        INFO("insert '" << pattern << "' " << value);
        CHECK(m.insert(pattern, value) == (count == 0));
        ++count;
    }
    check_keys("after inserts");

    auto erase_some = [&](int n) {
        for (int i = 0; i < n; ++i) {
            const std::string& pattern = pool[pick(pool.size())];
            const int value = static_cast<int>(pick(4));
            const auto it = model.find({warren_test::collapse_hash_runs(pattern), value});
            INFO("erase '" << pattern << "' " << value);
            CHECK(m.erase(pattern, value) == (it != model.end()));
            if (it != model.end() && --it->second == 0) model.erase(it);
        }
    };
    erase_some(30);
    check_keys("after erases");

    // Pruned nodes are reused by later inserts.
    for (int i = 0; i < 20; ++i) {
        const std::string pattern = random_key(pattern_words, 5);
        const int value = static_cast<int>(pick(4));
        int& count = model[{warren_test::collapse_hash_runs(pattern), value}];
        CHECK(m.insert(pattern, value) == (count == 0));
        ++count;
        pool.push_back(pattern);
    }
    erase_some(10);
    check_keys("after more inserts and erases");

    // Every count must be erased before a pair is gone.
    for (auto it = model.begin(); it != model.end(); it = model.erase(it)) {
        for (int k = 0; k < it->second; ++k) CHECK(m.erase(it->first.first, it->first.second));
        CHECK_FALSE(m.erase(it->first.first, it->first.second));
    }
    check_keys("after erasing everything");
    CHECK(m.empty());
}

TEST_CASE("topic: '#' matches zero words", "[topic]") {
    SECTION("'#' alone matches the empty key and any key") {
        CHECK(matches("#", ""));
        CHECK(matches("#", "a"));
        CHECK(matches("#", "a.b.c"));
    }
    SECTION("a trailing '#' may take nothing") {
        CHECK(matches("a.#", "a"));
        CHECK(matches("a.#", "a.b"));
        CHECK_FALSE(matches("a.#", "b"));
        CHECK_FALSE(matches("a.#", ""));
    }
    SECTION("a leading '#' may take nothing") {
        CHECK(matches("#.a", "a"));
        CHECK(matches("#.a", "b.c.a"));
        CHECK_FALSE(matches("#.a", "a.b"));
    }
}

TEST_CASE("topic: '*' matches exactly one word, possibly empty", "[topic]") {
    SECTION("one word, not zero, not two") {
        CHECK(matches("*", "a"));
        CHECK_FALSE(matches("*", ""));
        CHECK_FALSE(matches("*", "a.b"));
        CHECK(matches("a.*", "a.b"));
        CHECK_FALSE(matches("a.*", "a"));
        CHECK_FALSE(matches("a.*", "a.b.c"));
    }
    SECTION("an empty word is a word") {
        CHECK(matches("a.*", "a."));
        CHECK(matches("*.b", ".b"));
        CHECK(matches("*.*", "."));
        CHECK_FALSE(matches("*", "."));
    }
}

TEST_CASE("topic: the empty key has zero words", "[topic]") {
    SECTION("the empty key") {
        CHECK(matches("", ""));
        CHECK(matches("#", ""));
        CHECK(matches("#.#", ""));
        CHECK_FALSE(matches("*", ""));
        CHECK_FALSE(matches("a", ""));
        CHECK_FALSE(matches("#.*", ""));
    }
    SECTION("the empty pattern matches only the empty key") {
        CHECK_FALSE(matches("", "a"));
        CHECK_FALSE(matches("", "."));
    }
}

TEST_CASE("topic: 'a..b' is three words", "[topic]") {
    CHECK(matches("a.*.b", "a..b"));
    CHECK(matches("*.*.*", "a..b"));
    CHECK(matches("a..b", "a..b"));
    CHECK(matches("a.#.b", "a..b"));
    CHECK_FALSE(matches("a.b", "a..b"));
    CHECK_FALSE(matches("*.*", "a..b"));
    CHECK_FALSE(matches("a..b", "a.b"));
    CHECK_FALSE(matches("a..b", "a.x.b"));
}

TEST_CASE("topic: '#' in the middle takes zero or more words", "[topic]") {
    SECTION("a.#.z") {
        CHECK(matches("a.#.z", "a.z"));
        CHECK(matches("a.#.z", "a.b.z"));
        CHECK(matches("a.#.z", "a.b.c.z"));
        CHECK_FALSE(matches("a.#.z", "a.b"));
        CHECK_FALSE(matches("a.#.z", "b.z"));
        CHECK_FALSE(matches("a.#.z", "a.z.b"));
    }
    SECTION("#.b.# needs a 'b' somewhere") {
        CHECK(matches("#.b.#", "b"));
        CHECK(matches("#.b.#", "a.b.c"));
        CHECK(matches("#.b.#", "a.a.b"));
        CHECK_FALSE(matches("#.b.#", "a.c"));
        CHECK_FALSE(matches("#.b.#", ""));
    }
    SECTION("# next to *") {
        CHECK(matches("a.#.*", "a.b"));
        CHECK_FALSE(matches("a.#.*", "a"));
        CHECK(matches("*.#.*", "a.b"));
        CHECK(matches("*.#.*", "a.b.c.d"));
        CHECK_FALSE(matches("*.#.*", "a"));
    }
}

TEST_CASE("topic: '#.#' means what '#' means", "[topic]") {
    for (const char* key : {"", "a", "a.b", "a..b.c", "."}) {
        CAPTURE(key);
        CHECK(matches("#.#", key));
        CHECK(matches("#.#.#", key));
    }
    CHECK(matches("a.#.#.b", "a.b"));
    CHECK(matches("a.#.#.b", "a.x.y.b"));
    CHECK_FALSE(matches("a.#.#.b", "a.x"));
}

TEST_CASE("topic: '*' and '#' in a routing key are plain words", "[topic]") {
    CHECK(matches("*", "*"));
    CHECK(matches("#", "#"));
    CHECK_FALSE(matches("a", "*"));
    CHECK_FALSE(matches("a.b", "a.*"));
    CHECK_FALSE(matches("a.b", "a.#"));
    CHECK_FALSE(matches("a", "#"));
}

TEST_CASE("topic_matcher: a value is reported once per matching pattern", "[topic]") {
    warren::topic_matcher<int> m;
    SECTION("several patterns of one value") {
        m.insert("a.*", 7);
        m.insert("#", 7);
        m.insert("a.b", 7);
        m.insert("b.*", 7);
        CHECK(reports(m, "a.b") == std::vector<int>{7, 7, 7});
        CHECK(reports(m, "b.b") == std::vector<int>{7, 7});
        CHECK(reports(m, "c") == std::vector<int>{7});
    }
    SECTION("a pattern that matches a key in several ways") {
        // '#.a.#' fits "a.a.a" three ways; it is still one pattern.
        m.insert("#.a.#", 1);
        CHECK(reports(m, "a.a.a") == std::vector<int>{1});
        CHECK(reports(m, "b.a.b.a") == std::vector<int>{1});
        CHECK(reports(m, "b.b").empty());
    }
    SECTION("inserting a pair twice does not report it twice") {
        CHECK(m.insert("a.#", 1));
        CHECK_FALSE(m.insert("a.#", 1));
        CHECK(m.size() == 1);
        CHECK(reports(m, "a.b") == std::vector<int>{1});
    }
    SECTION("values under one pattern, in any order") {
        m.insert("x.*", 3);
        m.insert("x.*", 1);
        m.insert("x.*", 2);
        CHECK(matched(m, "x.y") == std::vector<int>{1, 2, 3});
        CHECK(reports(m, "x.y").size() == 3);
    }
}

TEST_CASE("topic_matcher: each insert of a pair needs its own erase", "[topic]") {
    warren::topic_matcher<std::string> m;
    CHECK(m.empty());
    CHECK(m.insert("a.*", "q"));
    CHECK_FALSE(m.insert("a.*", "q"));
    CHECK(m.insert("a.*", "r"));
    CHECK(m.size() == 2);

    SECTION("two inserts, two erases") {
        CHECK(m.erase("a.*", "q"));
        CHECK(matched(m, "a.b") == std::vector<std::string>{"q", "r"});
        CHECK(m.size() == 2);
        CHECK(m.erase("a.*", "q"));
        CHECK(matched(m, "a.b") == std::vector<std::string>{"r"});
        CHECK(m.size() == 1);
        CHECK_FALSE(m.erase("a.*", "q"));
        CHECK(m.erase("a.*", "r"));
        CHECK(m.empty());
        CHECK(reports(m, "a.b").empty());
    }
    SECTION("erasing what is not there changes nothing") {
        CHECK_FALSE(m.erase("a.*", "s"));
        CHECK_FALSE(m.erase("a.b", "q"));
        CHECK_FALSE(m.erase("a", "q"));
        CHECK_FALSE(m.erase("a.*.c", "q"));
        CHECK_FALSE(m.erase("#", "q"));
        CHECK(m.size() == 2);
        CHECK(matched(m, "a.b") == std::vector<std::string>{"q", "r"});
    }
    SECTION("erasing a pattern leaves its prefixes and extensions alone") {
        m.insert("a", "p");
        m.insert("a.*.c", "e");
        m.erase("a.*", "q");
        m.erase("a.*", "q");
        m.erase("a.*", "r");
        CHECK(matched(m, "a") == std::vector<std::string>{"p"});
        CHECK(matched(m, "a.b.c") == std::vector<std::string>{"e"});
        CHECK(reports(m, "a.b").empty());
        CHECK(m.size() == 2);
    }
    SECTION("'#.#' and '#' are one pattern") {
        CHECK(m.insert("#", "h"));
        CHECK_FALSE(m.insert("#.#", "h"));
        CHECK(m.erase("#.#", "h"));
        CHECK(matched(m, "z") == std::vector<std::string>{"h"});
        CHECK(m.erase("#", "h"));
        CHECK(reports(m, "z").empty());
    }
}

TEST_CASE("topic_matcher: many '#' in one pattern stay fast", "[topic]") {
    // Without remembering where each '#' already led, these would take C(64, 9) and more
    // paths to the same answer; the test would then hit the ctest timeout.
    warren::topic_matcher<int> m;
    m.insert("#.*.#.*.#.*.#.*.#.*.#.*.#.*.#.*.#", 1);
    m.insert("#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.a.#.b", 2);
    std::vector<std::string> words(64, "a");
    const std::string key = join(words);
    CHECK(reports(m, key) == std::vector<int>{1});
    CHECK(reports(m, key + ".b").size() == 2);
    CHECK(matched(m, key + ".b") == std::vector<int>{1, 2});
    CHECK(reports(m, "a.a.a.a.a.a.a.a").size() == 1);
    CHECK(reports(m, "a.a.a.a.a.a.a").empty());
}

TEST_CASE("topic_matcher: match may run inside another match's callback", "[topic]") {
    warren::topic_matcher<int> m;
    m.insert("a.*", 1);
    m.insert("#.z", 2);
    std::vector<int> outer;
    std::vector<int> inner;
    m.match("a.z", [&](int v) {
        outer.push_back(v);
        m.match("y.z", [&](int w) { inner.push_back(w); });
    });
    std::sort(outer.begin(), outer.end());
    CHECK(outer == std::vector<int>{1, 2});
    CHECK(inner == std::vector<int>{2, 2});
    // And the shared scratch space is usable again afterwards.
    CHECK(matched(m, "a.b") == std::vector<int>{1});
}

TEST_CASE("topic_matcher: UTF-8 words compare bytewise", "[topic]") {
    warren::topic_matcher<int> m;
    m.insert("\xd0\xb4.*", 1);     // "д.*"
    m.insert("caf\xc3\xa9", 2);    // "café" with a precomposed é
    CHECK(reports(m, "\xd0\xb4.x") == std::vector<int>{1});
    CHECK(reports(m, "caf\xc3\xa9") == std::vector<int>{2});
    CHECK(reports(m, "cafe\xcc\x81").empty()); // e + combining accent: other bytes
}

TEST_CASE("topic_matcher: memory follows the live bindings down", "[topic][memory]") {
    constexpr auto n = static_cast<std::uint32_t>(warren_test::at_scale(200'000));
    constexpr std::uint32_t kept = 300;
    // Four-word patterns, the first word shared, the rest mostly distinct; some wildcards.
    auto pattern = [](std::uint32_t i) {
        return "app." + std::to_string(i % 1000) + "." + (i % 7 == 0 ? std::string("*") : std::to_string(i)) + ".#";
    };
    warren::topic_matcher<std::uint32_t> m;
    m.set_cache_capacity(GENERATE(0U, 256U));
    const std::size_t empty = m.memory_bytes();
    for (std::uint32_t i = 0; i < n; ++i) REQUIRE(m.insert(pattern(i), i));
    const std::size_t peak = m.memory_bytes();
    auto sorted_reports = [&](std::string_view key) {
        auto got = reports(m, key);
        std::sort(got.begin(), got.end());
        return got;
    };
    std::vector<std::uint32_t> want_at_peak;
    for (std::uint32_t i = 0; i < n; ++i) {
        if (reference_topic_match(pattern(i), "app.7.7.x")) want_at_peak.push_back(i);
    }
    CHECK(sorted_reports("app.7.7.x") == want_at_peak); // 7, and app.7.*.# for 7007, 14007, ...
    for (std::uint32_t i = kept; i < n; ++i) REQUIRE(m.erase(pattern(i), i));
    const std::size_t left = m.memory_bytes();
    INFO("empty " << empty << " bytes, peak " << peak << ", with " << kept << " left " << left);
    CHECK(left < peak / 10);
    CHECK(m.size() == kept);
    // What is left matches as before, and erasing the rest leaves an empty matcher.
    for (std::uint32_t i = 0; i < kept; i += 37) {
        const std::string key = "app." + std::to_string(i % 1000) + "." + std::to_string(i) + ".end";
        std::vector<std::uint32_t> want;
        for (std::uint32_t j = 0; j < kept; ++j) {
            if (reference_topic_match(pattern(j), key)) want.push_back(j);
        }
        CHECK(sorted_reports(key) == want);
    }
    for (std::uint32_t i = 0; i < kept; ++i) REQUIRE(m.erase(pattern(i), i));
    CHECK(m.empty());
    CHECK(m.memory_bytes() <= 2 * empty + 4096);
    CHECK(reports(m, "app.7.7.x").empty());
    // And it fills again.
    for (std::uint32_t i = 0; i < 1000; ++i) REQUIRE(m.insert(pattern(i), i));
    CHECK(sorted_reports("app.7.7.x") == std::vector<std::uint32_t>{7});
}
