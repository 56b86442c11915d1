// Routing keys: word splitting and the 255-byte limit on keys and names.

#include <warren/broker.hpp>
#include <warren/routing_key.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "support/catch.hpp"
#include "support/errors.hpp"

namespace {

std::vector<std::string> words_of(std::string_view key) {
    std::vector<std::string> out;
    warren::for_each_word(key, [&out](std::string_view w) { out.emplace_back(w); });
    return out;
}

constexpr std::size_t count_by_visiting(std::string_view key) {
    std::size_t n = 0;
    warren::for_each_word(key, [&n](std::string_view) { ++n; });
    return n;
}

using words = std::vector<std::string>;

} // namespace

TEST_CASE("routing key: for_each_word splits on '.', keeping empty words", "[routing_key]") {
    CHECK(words_of("").empty());
    CHECK(words_of("a") == words{"a"});
    CHECK(words_of("a.b.c") == words{"a", "b", "c"});
    CHECK(words_of("a..b") == words{"a", "", "b"});
    CHECK(words_of(".") == words{"", ""});
    CHECK(words_of(".a") == words{"", "a"});
    CHECK(words_of("a.") == words{"a", ""});
    CHECK(words_of("..") == words{"", "", ""});
    CHECK(words_of("*.#") == words{"*", "#"});
    CHECK(words_of("caf\xc3\xa9.x") == words{"caf\xc3\xa9", "x"});
}

TEST_CASE("routing key: word_count agrees with for_each_word", "[routing_key]") {
    static_assert(warren::word_count("") == 0);
    static_assert(warren::word_count("a") == 1);
    static_assert(warren::word_count("a..b") == 3);
    static_assert(count_by_visiting("a.b.c") == 3);
    static_assert(count_by_visiting("") == 0);
    for (std::string_view key : {"", "a", ".", "a.b", "a..b", "...", ".x.", "long.routing.key.with.words"}) {
        CAPTURE(key);
        CHECK(warren::word_count(key) == words_of(key).size());
    }
    CHECK(warren::max_name_length == 255);
}

TEMPLATE_TEST_CASE("routing key: at most 255 bytes", "[routing_key]", warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("d", "direct");
    broker.declare_queue("q");
    const std::string key255(255, 'k');
    const std::string key256(256, 'k');

    SECTION("a 255-byte key is published and routed") {
        broker.bind_queue("q", "d", key255);
        CHECK(broker.publish("d", {.routing_key = key255, .body = "m"}) == 1);
        auto d = broker.try_get("q");
        REQUIRE(d.has_value());
        CHECK(d->routing_key() == key255);
    }
    SECTION("a 256-byte key is PRECONDITION_FAILED and routes nothing") {
        // Through a fanout exchange, so that any key the broker let through would arrive.
        broker.declare_exchange("f", "fanout");
        broker.bind_queue("q", "f");
        CHECK(warren_test::error_of([&] { (void)broker.publish("f", {.routing_key = key256, .body = "m"}); },
                                    warren::reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - routing key of 256 bytes exceeds the limit of 255");
        CHECK(broker.message_count("q") == 0);
    }
    SECTION("through the default exchange and a publisher too") {
        REQUIRE_THROWS_AS(broker.publish("", {.routing_key = key256, .body = "m"}), warren::error);
        auto publisher = broker.make_publisher("d");
        REQUIRE_THROWS_WITH(publisher.publish({.routing_key = key256, .body = "m"}),
                            "PRECONDITION_FAILED - routing key of 256 bytes exceeds the limit of 255");
        CHECK(publisher.publish({.routing_key = key255, .body = "m"}) == 0);
    }
    SECTION("binding keys") {
        REQUIRE_NOTHROW(broker.bind_queue("q", "d", key255));
        REQUIRE_THROWS_WITH(broker.bind_queue("q", "d", key256),
                            "PRECONDITION_FAILED - binding key of 256 bytes exceeds the limit of 255");
    }
    SECTION("exchange and queue names") {
        REQUIRE_NOTHROW(broker.declare_exchange(std::string(255, 'x'), "fanout"));
        REQUIRE_NOTHROW(broker.declare_queue(std::string(255, 'y')));
        REQUIRE_THROWS_WITH(broker.declare_exchange(std::string(256, 'x'), "fanout"),
                            "PRECONDITION_FAILED - exchange name of 256 bytes exceeds the limit of 255");
        REQUIRE_THROWS_WITH(broker.declare_queue(std::string(256, 'y')),
                            "PRECONDITION_FAILED - queue name of 256 bytes exceeds the limit of 255");
    }
}
