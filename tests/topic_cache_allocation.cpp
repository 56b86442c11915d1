// warren::topic_matcher's routing cache allocates nothing once warm: refilling an entry
// with another key and result reuses the entry's memory.

#include <warren/topic_matcher.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "support/catch.hpp"
#include "support/counting_allocator.hpp"

TEST_CASE("topic_matcher cache: refills allocate nothing once warm, with keys up to 100 bytes",
          "[topic][cache][allocation]") {
    warren::topic_matcher<std::uint32_t> m;
    // 10,000 bindings: results of 0 to a dozen values, so entries are refilled with
    // results of every size.
    for (std::uint32_t i = 0; i < 10'000; ++i) {
        m.insert("svc" + std::to_string(i % 512) + ".*.#", i);
    }
    // 512 keys of 10 to 100 bytes, each routed three times in a row: a miss, a second miss
    // that admits it, a hit; a 64-entry cache means every admission evicts another key.
    std::vector<std::string> keys;
    for (std::size_t i = 0; i < 512; ++i) {
        std::string key = "svc" + std::to_string(i) + ".";
        key += std::string(10 + (i * 37) % 80, static_cast<char>('a' + i % 26));
        keys.push_back(key.substr(0, 100));
    }
    m.set_cache_capacity(64);
    std::uint64_t delivered = 0;
    auto pass = [&] {
        for (const std::string& key : keys) {
            for (int r = 0; r < 3; ++r) m.match(key, [&](std::uint32_t) { ++delivered; });
        }
    };
    pass(); // warms the matcher's scratch and the cache's entries
    std::size_t warm_after = 0;
    std::size_t last = 1;
    for (; warm_after < 10 && last != 0; ++warm_after) {
        warren_test::allocation_counter counter;
        pass();
        last = counter.count();
    }
    INFO("passes until a pass allocated nothing: " << warm_after);
    REQUIRE(last == 0);
    {
        warren_test::allocation_counter counter;
        for (int p = 0; p < 3; ++p) pass();
        CHECK(counter.count() == 0);
    }
    const warren::topic_cache_stats& stats = m.cache_stats();
    CHECK(stats.admitted >= 512 * 4); // entries kept being refilled
    CHECK(stats.bypassed == 0);
    CHECK(stats.hits >= 512 * 4);
    CHECK(delivered > 0);
}
