// What bindings hold on the heap: a refused operation keeps nothing, and memory follows the
// live bindings down, so that a topology that shrinks gives back what it took.
//
// Live bytes come from the replaced global operator new of warren_tests_allocation
// (support/counting_allocator.cpp).

#include <warren/broker.hpp>
#include <warren/field_table.hpp>
#include <warren/topology.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "support/bindings.hpp"
#include "support/catch.hpp"
#include "support/counting_allocator.hpp"
#include "support/scale.hpp"

using warren_test::at_scale;
using warren_test::binding_spec;
using warren_test::live_heap_bytes;
using warren_test::nth_binding;

namespace {

/// The parts of a snapshot that a refused operation must leave as they were.
template <class Broker>
std::string shape(const Broker& b) {
    const warren::topology_snapshot s = b.snapshot();
    std::string out;
    for (const auto& x : s.exchanges) out += "x " + x.name + "\n";
    for (const auto& q : s.queues) out += "q " + q.name + "\n";
    for (const auto& bi : s.bindings) out += "b " + bi.source + " " + bi.destination + " " + bi.key + "\n";
    return out;
}

} // namespace

TEMPLATE_TEST_CASE("binding memory: a refused operation changes nothing and keeps no memory", "[allocation][binding]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("h", "headers");
    b.declare_exchange("t", "topic");
    b.declare_queue("q");
    b.bind_queue("q", "t", "kept");
    const std::string long_key(256, 'k');
    const warren::field_table bad_match{{"x-match", "bad"}, {"format", "pdf"}};
    const warren::field_table bad_ttl{{"x-message-ttl", -1}};

    // One refusal of each kind; each must throw a warren::error.
    auto refuse_all = [&](std::size_t i) {
        std::size_t refused = 0;
        auto expect_refusal = [&](auto&& f) {
            try {
                f();
            } catch (const warren::error&) {
                ++refused;
            }
        };
        const std::string key = "k" + std::to_string(i);
        expect_refusal([&] { b.bind_queue("q", "h", key, bad_match); }); // the headers exchange refuses x-match
        expect_refusal([&] { b.bind_queue("q", "nowhere", key); });
        expect_refusal([&] { b.bind_queue("missing", "t", key); });
        expect_refusal([&] { b.bind_queue("q", "t", long_key); });
        expect_refusal([&] { b.bind_queue("q", "", key); });
        expect_refusal([&] { b.bind_exchange("t", "h", key, bad_match); });
        expect_refusal([&] { b.unbind_queue("q", "nowhere", key); });
        expect_refusal([&] { b.declare_queue("bad" + std::to_string(i), {.arguments = bad_ttl}); });
        expect_refusal([&] { b.declare_exchange("x" + std::to_string(i), "no-such-type"); });
        expect_refusal([&] { b.declare_exchange("t", "fanout"); });
        expect_refusal([&] { (void)b.publish("nowhere", {.routing_key = key}); });
        return refused;
    };
    for (std::size_t i = 0; i < 100; ++i) REQUIRE(refuse_all(i) == 11); // warm: scratch space, lazily made
    const std::string before = shape(b);
    const std::size_t live = live_heap_bytes();
    const std::size_t rounds = at_scale(20'000);
    for (std::size_t i = 100; i < 100 + rounds; ++i) REQUIRE(refuse_all(i) == 11);
    const std::size_t after = live_heap_bytes();
    INFO("live heap bytes before " << live << ", after " << rounds << " rounds of refusals " << after);
    CHECK(after <= live + 1024);
    CHECK(shape(b) == before);
}

TEMPLATE_TEST_CASE("binding memory: the heap follows the live bindings down", "[allocation][binding]", warren::broker,
                   warren::concurrent_broker) {
    const std::string type = GENERATE(as<std::string>{}, "topic", "direct", "fanout", "headers");
    INFO("exchange type " << type);
    constexpr std::size_t n = at_scale(200'000);
    constexpr std::size_t kept = 300;
    std::vector<binding_spec> specs;
    specs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) specs.push_back(nth_binding(type, i));

    TestType b;
    b.declare_exchange("x", type);
    b.declare_queue("q");
    const std::size_t base = live_heap_bytes();
    for (const auto& s : specs) b.bind_queue("q", "x", s.key, s.arguments);
    const std::size_t peak = live_heap_bytes() - base;
    for (std::size_t i = kept; i < n; ++i) b.unbind_queue("q", "x", specs[i].key, specs[i].arguments);
    const std::size_t left = live_heap_bytes() - base;
    INFO("bindings took " << peak << " bytes; with " << kept << " left, " << left);
    CHECK(left < peak / 10);
    CHECK(b.snapshot().bindings.size() == kept);
    // What is left still routes.
    warren::message m{.routing_key = type == "topic" ? "k.7.x" : "k.7"};
    m.properties.headers.set("id", 7);
    CHECK(b.publish("x", std::move(m)) == 1);

    // Churn around the threshold neither loses bindings nor grows the heap.
    for (int round = 0; round < 3; ++round) {
        for (std::size_t i = kept; i < 2 * kept; ++i) b.bind_queue("q", "x", specs[i].key, specs[i].arguments);
        for (std::size_t i = kept; i < 2 * kept; ++i) b.unbind_queue("q", "x", specs[i].key, specs[i].arguments);
    }
    CHECK(b.snapshot().bindings.size() == kept);
    CHECK(live_heap_bytes() - base < peak / 10);
}
