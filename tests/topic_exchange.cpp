// Topic exchanges inside a broker: RabbitMQ's and Qpid's cases end to end, one copy per
// queue, binding identity and unbinding.

#include <warren/broker.hpp>
#include <warren/topic_exchange.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/topic_suites.hpp"
#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::route;
using warren_test::strings;

TEMPLATE_TEST_CASE("topic exchange: RabbitMQ and Qpid conformance cases through a broker", "[topic][conformance]",
                   warren::broker, warren::concurrent_broker) {
    const auto& cases = warren_test::topic_suites();
    REQUIRE(cases.size() == 153);
    // A pair listed twice is either the same binding again (plain) or, as in RabbitMQ's
    // routing_SUITE, a second binding with other arguments (distinct); either way each
    // queue gets one copy.
    const bool distinct = GENERATE(false, true);
    CAPTURE(distinct);
    std::size_t checked = 0;
    for (const auto& c : cases) {
        INFO("case " << checked << ": " << c.group << " (" << c.source << "), key '" << c.routing_key << "'");
        TestType broker;
        broker.declare_exchange("x", "topic");
        // One queue per destination name; "" (a Qpid case) gets a generated name. Keys
        // with more than two '#' are bound as RabbitMQ up to 4.3.4 binds them: the newer
        // limit on '#' words is not adopted.
        std::map<std::string, std::string, std::less<>> queue_of;
        std::map<std::pair<std::string_view, std::string_view>, int> seen;
        for (const auto& [pattern, destination] : c.bindings) {
            auto [it, fresh] = queue_of.try_emplace(std::string(destination));
            if (fresh) it->second = broker.declare_queue(destination);
            const int repeat = seen[{pattern, destination}]++;
            warren::field_table args;
            if (distinct && repeat > 0) args.set("copy", repeat);
            broker.bind_queue(it->second, "x", pattern, args);
        }
        std::vector<std::string> queues;
        for (const auto& entry : queue_of) queues.push_back(entry.second);

        std::vector<std::string> expected;
        for (std::string_view destination : c.expected) expected.push_back(queue_of.find(destination)->second);
        std::sort(expected.begin(), expected.end());
        CHECK(route(broker, "x", c.routing_key, queues) == expected);
        ++checked;
    }
    CHECK(checked == 153);
}

TEMPLATE_TEST_CASE("topic exchange: RabbitMQ's topic rules through a broker", "[topic]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("t", "topic");
    const std::vector<std::pair<std::string, std::string>> bindings{
        {"hash", "#"},       {"star", "*"},        {"empty", ""},          {"a-hash", "a.#"},
        {"a-star-b", "a.*.b"}, {"mid", "a.#.z"},   {"hash-hash", "#.#"},   {"literal", "a..b"},
    };
    strings queues;
    for (const auto& [queue, pattern] : bindings) {
        broker.declare_queue(queue);
        broker.bind_queue(queue, "t", pattern);
        queues.push_back(queue);
    }
    SECTION("'#' matches zero words; the empty key has zero words") {
        CHECK(route(broker, "t", "", queues) == strings{"empty", "hash", "hash-hash"});
        CHECK(route(broker, "t", "a", queues) == strings{"a-hash", "hash", "hash-hash", "star"});
    }
    SECTION("'*' matches exactly one word, possibly empty") {
        CHECK(route(broker, "t", "x", queues) == strings{"hash", "hash-hash", "star"});
        CHECK(route(broker, "t", "x.y", queues) == strings{"hash", "hash-hash"});
    }
    SECTION("'a..b' is three words") {
        CHECK(route(broker, "t", "a..b", queues) == strings{"a-hash", "a-star-b", "hash", "hash-hash", "literal"});
        CHECK(route(broker, "t", "a.b", queues) == strings{"a-hash", "hash", "hash-hash"});
    }
    SECTION("'#' in the middle") {
        CHECK(route(broker, "t", "a.z", queues) == strings{"a-hash", "hash", "hash-hash", "mid"});
        CHECK(route(broker, "t", "a.q.r.z", queues) == strings{"a-hash", "hash", "hash-hash", "mid"});
    }
}

TEMPLATE_TEST_CASE("topic exchange: a queue bound with several matching patterns gets one copy", "[topic]",
                   warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("t", "topic");
    broker.declare_queue("q");
    broker.declare_queue("other");
    for (const char* pattern : {"a.*", "#", "a.b", "*.b", "#.#", "a.#.b"}) broker.bind_queue("q", "t", pattern);
    broker.bind_queue("other", "t", "a.b");

    CHECK(route(broker, "t", "a.b", {"q", "other"}) == strings{"other", "q"});
    CHECK(route(broker, "t", "x", {"q", "other"}) == strings{"q"});
    // Also when the bindings differ only in their arguments.
    broker.bind_queue("other", "t", "a.b", {{"x-note", "second"}});
    CHECK(route(broker, "t", "a.b", {"q", "other"}) == strings{"other", "q"});
}

TEMPLATE_TEST_CASE("topic exchange: unbind removes only that binding", "[topic]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("t", "topic");
    broker.declare_queue("q");
    broker.declare_queue("r");
    broker.bind_queue("q", "t", "a.*");
    broker.bind_queue("q", "t", "#.b");
    broker.bind_queue("r", "t", "a.*");
    const strings queues{"q", "r"};

    SECTION("the queue's other bindings stay") {
        broker.unbind_queue("q", "t", "a.*");
        CHECK(route(broker, "t", "a.b", queues) == strings{"q", "r"}); // q through '#.b'
        CHECK(route(broker, "t", "a.c", queues) == strings{"r"});
        CHECK(route(broker, "t", "x.b", queues) == strings{"q"});
    }
    SECTION("other queues' bindings with the same pattern stay") {
        broker.unbind_queue("r", "t", "a.*");
        CHECK(route(broker, "t", "a.c", queues) == strings{"q"});
    }
    SECTION("unbinding what is not bound does nothing") {
        broker.unbind_queue("q", "t", "a.#");
        broker.unbind_queue("q", "t", "a.*", {{"k", 1}});
        broker.unbind_queue("r", "t", "#.b");
        CHECK(route(broker, "t", "a.c", queues) == strings{"q", "r"});
        CHECK(route(broker, "t", "x.b", queues) == strings{"q"});
    }
    SECTION("after unbinding everything nothing routes") {
        broker.unbind_queue("q", "t", "a.*");
        broker.unbind_queue("q", "t", "#.b");
        broker.unbind_queue("r", "t", "a.*");
        CHECK(route(broker, "t", "a.b", queues).empty());
    }
}

TEMPLATE_TEST_CASE("topic exchange: binding key and arguments make a binding's identity", "[topic]",
                   warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("t", "topic");
    broker.declare_queue("q");
    const strings queues{"q"};

    SECTION("the same binding twice is one binding: one unbind removes it") {
        broker.bind_queue("q", "t", "a.*");
        broker.bind_queue("q", "t", "a.*");
        CHECK(route(broker, "t", "a.b", queues) == strings{"q"});
        broker.unbind_queue("q", "t", "a.*");
        CHECK(route(broker, "t", "a.b", queues).empty());
    }
    SECTION("the same key with other arguments is another binding") {
        broker.bind_queue("q", "t", "a.*");
        broker.bind_queue("q", "t", "a.*", {{"k", "v"}});
        CHECK(route(broker, "t", "a.b", queues) == strings{"q"});
        broker.unbind_queue("q", "t", "a.*");
        CHECK(route(broker, "t", "a.b", queues) == strings{"q"});
        broker.unbind_queue("q", "t", "a.*", {{"k", "v"}});
        CHECK(route(broker, "t", "a.b", queues).empty());
    }
    SECTION("'#' and '#.#' are two bindings that mean the same") {
        broker.bind_queue("q", "t", "#");
        broker.bind_queue("q", "t", "#.#");
        CHECK(route(broker, "t", "z", queues) == strings{"q"});
        broker.unbind_queue("q", "t", "#.#");
        CHECK(route(broker, "t", "z", queues) == strings{"q"});
        broker.unbind_queue("q", "t", "#");
        CHECK(route(broker, "t", "z", queues).empty());
    }
}

TEMPLATE_TEST_CASE("topic exchange: deleting a queue removes its bindings", "[topic]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("t", "topic");
    broker.declare_queue("q");
    broker.declare_queue("r");
    broker.bind_queue("q", "t", "a.#");
    broker.bind_queue("r", "t", "#");
    broker.delete_queue("q");
    CHECK(route(broker, "t", "a.b", {"r"}) == strings{"r"});
    // A new queue of the same name starts without bindings.
    broker.declare_queue("q");
    CHECK(route(broker, "t", "a.b", {"q", "r"}) == strings{"r"});
}

TEMPLATE_TEST_CASE("topic exchange: amq.topic is predeclared", "[topic]", warren::broker, warren::concurrent_broker) {
    TestType broker;
    CHECK(broker.has_exchange("amq.topic"));
    broker.declare_queue("q");
    broker.bind_queue("q", "amq.topic", "sensors.*.temp");
    CHECK(route(broker, "amq.topic", "sensors.kitchen.temp", {"q"}) == strings{"q"});
    CHECK(route(broker, "amq.topic", "sensors.kitchen.humidity", {"q"}).empty());
}

TEST_CASE("topic exchange: satisfies the exchange concept under the name 'topic'", "[topic]") {
    static_assert(warren::exchange_type<warren::topic_exchange>);
    CHECK(warren::topic_exchange::type_name == "topic");

    // Used directly, without a broker.
    warren::topic_exchange ex;
    const warren::destination q1(warren::destination::kind::queue, 1);
    const warren::destination e2(warren::destination::kind::exchange, 2);
    ex.bind(q1, "a.*", {});
    ex.bind(e2, "#", {});
    const warren::properties props;
    warren::destination_list out;
    ex.route({"a.b", props}, out);
    std::vector<warren::destination> got(out.begin(), out.end());
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<warren::destination>{q1, e2});

    out = warren::destination_list{}; // a fresh list: clearing one is the broker's business
    ex.unbind(q1, "a.*", {});
    ex.route({"a.b", props}, out);
    CHECK(std::vector<warren::destination>(out.begin(), out.end()) == std::vector<warren::destination>{e2});
}

TEST_CASE("topic exchange: the broker sums the routing cache counters of its topic exchanges", "[topic][cache]") {
    warren::broker broker;
    broker.declare_exchange("t1", "topic");
    broker.declare_exchange("t2", "topic");
    broker.declare_exchange("f", "fanout"); // no cache: counts nothing
    broker.declare_queue("q");
    broker.bind_queue("q", "t1", "a.*");
    broker.bind_queue("q", "t2", "#");
    broker.bind_queue("q", "f", "");
    CHECK(broker.routing_cache_stats().lookups == 0);

    // A key is admitted on its second miss and hit from its third route on.
    for (int i = 0; i < 5; ++i) {
        (void)broker.publish("t1", warren_test::msg("a.b"));
        (void)broker.publish("t2", warren_test::msg("x"));
        (void)broker.publish("f", warren_test::msg("anything"));
    }
    warren::topic_cache_stats stats = broker.routing_cache_stats();
    CHECK(stats.lookups == 10);
    CHECK(stats.admitted == 2);
    CHECK(stats.hits == 6);
    CHECK(stats.bypassed == 0);
    CHECK(stats.hit_rate() == Approx(0.6));
    CHECK(broker.message_count("q") == 15);

    // Sizing the caches starts their counters afresh; off, nothing is counted.
    broker.set_routing_cache_capacity(0);
    (void)broker.publish("t1", warren_test::msg("a.b"));
    stats = broker.routing_cache_stats();
    CHECK(stats.lookups == 0);
    CHECK(stats.hits == 0);
}
