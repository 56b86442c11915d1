// warren::topic_matcher's routing cache: it answers what the trie answers through inserts
// and erases, admits only keys that repeat, steps aside while its hit rate is low and comes
// back when keys repeat again; and the trie's path table tells apart words whose hashes
// collide.

#include <warren/topic_matcher.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "support/catch.hpp"
#include "support/reference_topic.hpp"

namespace {

std::vector<int> cache_test_reports(const warren::topic_matcher<int>& m, std::string_view key) {
    std::vector<int> out;
    m.match(key, [&out](int v) { out.push_back(v); });
    std::sort(out.begin(), out.end());
    return out;
}

std::string cache_test_key(std::size_t i) { return "k" + std::to_string(i) + ".x"; }

} // namespace

TEST_CASE("topic_matcher cache: answers what the trie answers through inserts and erases", "[topic][cache]") {
    const auto seed = GENERATE(1U, 2U, 3U, 4U, 5U);
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    const std::vector<std::string> alphabet{"a", "b", "", "*", "#"};
    auto random_words = [&](bool wildcards) {
        std::string s;
        const std::size_t n = pick(5);
        for (std::size_t i = 0; i < n; ++i) {
            if (i > 0) s += '.';
            s += alphabet[pick(wildcards ? alphabet.size() : 3)];
        }
        return s;
    };
    // Few keys, routed again and again: each is admitted and then hit, while patterns
    // come and go under them.
    std::vector<std::string> keys(10);
    for (auto& k : keys) k = random_words(false);

    warren::topic_matcher<int> m;
    m.set_cache_capacity(8);
    std::map<std::pair<std::string, int>, int> model;
    std::size_t checked = 0;
    for (int step = 0; step < 400; ++step) {
        const std::string pattern = random_words(true);
        const int value = static_cast<int>(pick(3));
        auto& count = model[{warren_test::normalise_wildcard_runs(pattern), value}];
        if (pick(3) != 0) {
            m.insert(pattern, value);
            ++count;
        } else {
            CHECK(m.erase(pattern, value) == (count > 0));
            if (count > 0) --count;
        }
        if (count == 0) model.erase({warren_test::normalise_wildcard_runs(pattern), value});
        for (int round = 0; round < 3; ++round) {
            for (const std::string& key : keys) {
                std::vector<int> want;
                for (const auto& [entry, n] : model) {
                    if (warren_test::reference_topic_match(entry.first, key)) want.push_back(entry.second);
                }
                std::sort(want.begin(), want.end());
                INFO("step " << step << " key '" << key << "'");
                REQUIRE(cache_test_reports(m, key) == want);
                ++checked;
            }
        }
    }
    CHECK(checked == 400 * 3 * keys.size());
    CHECK(m.cache_stats().hits > 0); // the cache took part
}

TEST_CASE("topic_matcher cache: a key is stored on its second miss and hit on its third route", "[topic][cache]") {
    warren::topic_matcher<int> m;
    m.insert("orders.*", 1);
    m.set_cache_capacity(64);
    CHECK(cache_test_reports(m, "orders.created") == std::vector<int>{1});
    CHECK(m.cache_stats().admitted == 0);
    CHECK(cache_test_reports(m, "orders.created") == std::vector<int>{1});
    CHECK(m.cache_stats().admitted == 1);
    CHECK(m.cache_stats().hits == 0);
    CHECK(cache_test_reports(m, "orders.created") == std::vector<int>{1});
    CHECK(m.cache_stats().hits == 1);
    CHECK(m.cache_stats().lookups == 3);
    // A change of the bindings under the key is seen on the next route.
    m.insert("orders.created", 2);
    CHECK(cache_test_reports(m, "orders.created") == std::vector<int>{1, 2});
    // Resizing starts the counts again.
    m.set_cache_capacity(64);
    CHECK(m.cache_stats().lookups == 0);
    CHECK(m.cache_stats().hit_rate() == 0.0);
}

TEST_CASE("topic_matcher cache: keys seen once are never copied in", "[topic][cache]") {
    warren::topic_matcher<int> m;
    m.insert("k1.#", 1);
    m.set_cache_capacity(1024);
    for (std::size_t i = 0; i < 1000; ++i) (void)cache_test_reports(m, cache_test_key(i));
    CHECK(m.cache_stats().admitted == 0);
    CHECK(m.cache_stats().hits == 0);
}

TEST_CASE("topic_matcher cache: steps aside while its hit rate is low and comes back when keys repeat",
          "[topic][cache]") {
    warren::topic_matcher<int> m;
    m.insert("k7.#", 7);
    m.set_cache_capacity(256);
    // Distinct keys: after the first window the cache is skipped.
    std::size_t i = 0;
    for (; i < 4096; ++i) (void)cache_test_reports(m, cache_test_key(i));
    const warren::topic_cache_stats after_distinct = m.cache_stats();
    CHECK(after_distinct.lookups == 1024);
    CHECK(after_distinct.bypassed == 4096 - 1024);
    CHECK(after_distinct.hits == 0);
    // Routing stays right while it is skipped.
    CHECK(cache_test_reports(m, "k7.x") == std::vector<int>{7});
    // Now a few keys repeat: once the bypass runs out, the next window samples them, the
    // hit rate is high, and the cache stays on.
    const std::vector<std::string> hot{"k7.x", "k8.x", "k9.y", "k7.z"};
    std::size_t routes = 0;
    while (m.cache_stats().hits < 10'000 && routes < 500'000) {
        const std::string& key = hot[routes++ % hot.size()];
        REQUIRE(cache_test_reports(m, key) == (key[1] == '7' ? std::vector<int>{7} : std::vector<int>{}));
    }
    CHECK(m.cache_stats().hits >= 10'000);
    const std::uint64_t bypassed_before = m.cache_stats().bypassed;
    for (std::size_t r = 0; r < 100'000; ++r) (void)cache_test_reports(m, hot[r % hot.size()]);
    CHECK(m.cache_stats().bypassed == bypassed_before); // no more stepping aside
    CHECK(m.cache_stats().hit_rate() > 0.5);
}

TEST_CASE("topic_matcher: words whose path hashes collide are told apart", "[topic]") {
    // Two words whose hashes share their low 32 bits (the path table's tag): birthday
    // search among generated words. Their first-level nodes then share a tag and a home
    // slot, and only the word comparison tells them apart.
    std::unordered_map<std::uint32_t, std::string> seen;
    std::string first, second;
    for (std::uint32_t i = 0; first.empty() && i < 2'000'000; ++i) {
        std::string w = "w" + std::to_string(i);
        const auto tag = static_cast<std::uint32_t>(warren::detail::hash_bytes(w));
        const auto [it, added] = seen.emplace(tag, w);
        if (!added) {
            first = it->second;
            second = w;
        }
    }
    REQUIRE_FALSE(first.empty());
    CAPTURE(first, second);
    warren::topic_matcher<int> m;
    m.insert(first + ".x", 1);
    CHECK(cache_test_reports(m, second + ".x").empty());
    m.insert(second + ".x", 2);
    m.insert(second + ".*", 3);
    CHECK(cache_test_reports(m, first + ".x") == std::vector<int>{1});
    CHECK(cache_test_reports(m, second + ".x") == std::vector<int>{2, 3});
    CHECK(m.erase(first + ".x", 1));
    CHECK(cache_test_reports(m, first + ".x").empty());
    CHECK(cache_test_reports(m, second + ".x") == std::vector<int>{2, 3});
}
