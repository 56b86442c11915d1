// A body whose move throws while the message is being stored: the publish fails, and the
// broker holds nothing of it (no message, no leaked block: the sanitizer builds check the
// heap, the pool count checks the single-threaded node pools).

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include <warren/warren.hpp>

#include "support/catch.hpp"

namespace {

struct move_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A body whose move constructor throws while `failing` is set.
struct fragile {
    static inline bool failing = false;
    std::string text;

    fragile() = default;
    explicit fragile(std::string s) : text(std::move(s)) {}
    fragile(const fragile&) = default;
    fragile(fragile&& other) : text(std::move(other.text)) {
        if (failing) throw move_failure("the body's move failed");
    }
    fragile& operator=(const fragile&) = default;
    fragile& operator=(fragile&& other) noexcept {
        text = std::move(other.text);
        return *this;
    }
    ~fragile() = default;
};

/// Clears fragile::failing however the test ends.
struct failing_moves {
    failing_moves() { fragile::failing = true; }
    failing_moves(const failing_moves&) = delete;
    failing_moves& operator=(const failing_moves&) = delete;
    ~failing_moves() { fragile::failing = false; }
};

using message = warren::basic_message<fragile>;

template <class Policy>
std::size_t pooled_nodes() {
    return warren::detail::message_node<message, Policy>::pooled_blocks();
}

} // namespace

TEMPLATE_TEST_CASE("message exception safety: a body whose move throws is not stored and leaks nothing",
                   "[message][layout][exceptions]", warren::single_threaded, warren::multi_threaded) {
    warren::basic_broker<message, TestType> b;
    b.declare_exchange("x", "fanout");
    b.declare_queue("q1");
    b.declare_queue("q2");
    b.bind_queue("q1", "x");
    b.bind_queue("q2", "x");
    const std::string long_key(100, 'k'); // a key class of its own
    auto publish = [&](bool with_properties) {
        message m{.routing_key = long_key, .body = fragile("body")};
        if (with_properties) {
            m.properties.correlation_id = "c";
            m.properties.headers.set("h", "v");
        }
        return b.publish("x", std::move(m));
    };
    // Warm: the pools hold a node of this key class and a properties block.
    REQUIRE(publish(true) == 2);
    REQUIRE(b.purge_queue("q1") == 1);
    REQUIRE(b.purge_queue("q2") == 1);
    const std::size_t pooled = pooled_nodes<TestType>();

    const bool with_properties = GENERATE(false, true);
    {
        const failing_moves failing;
        CHECK_THROWS_AS(publish(with_properties), move_failure);
    }
    // Nothing was stored, and whatever was taken for it went back.
    CHECK(b.message_count("q1") == 0);
    CHECK(b.message_count("q2") == 0);
    CHECK(b.queue_stats("q1").enqueued == 1);
    CHECK(pooled_nodes<TestType>() == pooled);
    // The broker goes on as before.
    REQUIRE(publish(with_properties) == 2);
    auto d = b.try_get("q2");
    REQUIRE(d);
    CHECK(d->body().text == "body");
    CHECK(d->routing_key() == long_key);
    CHECK(d->properties().correlation_id.has_value() == with_properties);
}
