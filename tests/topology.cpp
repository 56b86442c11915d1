// topology.hpp: snapshots of a broker's topology and their Graphviz DOT form.

#include <string>

#include <warren/warren.hpp>

#include "support/catch.hpp"

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

} // namespace

TEMPLATE_TEST_CASE("topology: a snapshot lists exchanges, queues, bindings and consumers", "[topology]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "topic", {.internal = false, .arguments = {{"alternate-exchange", "ae"}}});
    b.declare_exchange("ae", "fanout");
    b.declare_exchange("inner", "direct", {.internal = true});
    b.declare_queue("q1", {.arguments = {{"x-max-length", 5}}});
    b.declare_queue("q2");
    b.bind_queue("q1", "logs", "kern.*");
    b.bind_queue("q2", "logs", "#");
    b.bind_queue("q2", "ae");
    b.bind_exchange("inner", "logs", "x.y");
    auto sub1 = b.subscribe("q1", [](auto&) {}, {.tag = "c1", .ack = warren::ack_mode::manual, .prefetch = 3, .priority = 2});
    (void)b.publish("logs", {.routing_key = "kern.disk", .body = "full"});

    const warren::topology_snapshot t = b.snapshot();
    // Exchanges by name, the predeclared ones included.
    REQUIRE(t.find_exchange("logs") != nullptr);
    CHECK(t.find_exchange("logs")->type == "topic");
    CHECK(t.find_exchange("inner")->internal);
    CHECK(t.find_exchange("amq.topic") != nullptr);
    CHECK(t.find_exchange("") != nullptr);
    CHECK(t.find_exchange("logs")->counters.published == 1);
    CHECK(t.find_exchange("logs")->counters.routed == 1);
    for (std::size_t i = 1; i < t.exchanges.size(); ++i) CHECK(t.exchanges[i - 1].name < t.exchanges[i].name);
    // Queues in declaration order, with their options and counters.
    REQUIRE(t.queues.size() == 2);
    CHECK(t.queues[0].name == "q1");
    CHECK(t.queues[0].options.arguments.find("x-max-length") != nullptr);
    CHECK(t.queues[0].counters.ready == 0); // handed to c1 as it arrived
    CHECK(t.queues[0].counters.unacked == 1);
    CHECK(t.queues[0].counters.awaiting_callback == 1);
    CHECK(t.queues[1].counters.ready == 1);
    // Bindings sorted by source, destination, key.
    REQUIRE(t.bindings.size() == 4);
    CHECK(t.bindings[0].source == "ae");
    CHECK(t.bindings[0].destination == "q2");
    CHECK(t.bindings[1].source == "logs");
    CHECK(t.bindings[1].destination == "inner");
    CHECK(t.bindings[1].to_exchange);
    CHECK(t.bindings[1].key == "x.y");
    CHECK(t.bindings[2].destination == "q1");
    CHECK(t.bindings[2].key == "kern.*");
    CHECK(t.bindings[3].destination == "q2");
    CHECK(t.bindings[3].key == "#");
    // Consumers with their options.
    REQUIRE(t.consumers.size() == 1);
    CHECK(t.consumers[0].queue == "q1");
    CHECK(t.consumers[0].tag == "c1");
    CHECK(t.consumers[0].ack == warren::ack_mode::manual);
    CHECK(t.consumers[0].prefetch == 3);
    CHECK(t.consumers[0].priority == 2);
    CHECK(t.consumers[0].active);
}

TEMPLATE_TEST_CASE("topology: a snapshot is a copy that later changes do not touch", "[topology]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    const auto before = b.snapshot();
    b.delete_queue("q");
    b.declare_exchange("x", "fanout");
    CHECK(before.find_queue("q") != nullptr);
    CHECK(before.find_exchange("x") == nullptr);
    CHECK(b.snapshot().find_queue("q") == nullptr);
}

TEST_CASE("topology: only the first consumer of a single-active-consumer queue is active", "[topology]") {
    warren::broker b;
    b.declare_queue("q", {.arguments = {{"x-single-active-consumer", true}}});
    auto first = b.subscribe("q", [](auto&) {}, {.tag = "first"});
    auto second = b.subscribe("q", [](auto&) {}, {.tag = "second"});
    auto t = b.snapshot();
    REQUIRE(t.consumers.size() == 2);
    for (const auto& c : t.consumers) CHECK(c.active == (c.tag == "first"));
    first.release();
    t = b.snapshot();
    REQUIRE(t.consumers.size() == 1);
    CHECK(t.consumers[0].tag == "second");
    CHECK(t.consumers[0].active);
}

TEST_CASE("topology: to_dot draws exchanges, queues, bindings, alternates, dead letters and consumers", "[topology]") {
    warren::broker b;
    b.declare_exchange("ae", "fanout");
    b.declare_exchange("in", "headers", {.internal = true});
    b.declare_exchange("main", "direct", {.arguments = {{"alternate-exchange", "ae"}}});
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("work", {.arguments = {{"x-dead-letter-exchange", "dlx"}, {"x-dead-letter-routing-key", "dead"}}});
    b.declare_queue("dead");
    b.bind_queue("work", "main", "job");
    b.bind_queue("dead", "dlx");
    b.bind_exchange("in", "main", "h");
    b.bind_queue("work", "in", "", {{"x-match", "any"}, {"kind", "pdf"}});
    auto sub = b.subscribe("work", [](auto&) {}, {.tag = "worker", .prefetch = 4});
    (void)b.publish("main", {.routing_key = "job", .body = "1"});

    const std::string dot = warren::to_dot(b.snapshot());
    INFO(dot);
    CHECK(dot.starts_with("digraph warren {\n"));
    CHECK(dot.ends_with("}\n"));
    CHECK(contains(dot, "\"x:main\" [shape=box, style=\"rounded\", label=\"main\\ndirect\"];"));
    CHECK(contains(dot, "\"x:in\" [shape=box, style=\"rounded,dashed\", label=\"in\\nheaders, internal\"];"));
    CHECK(contains(dot, "\"q:work\" [shape=cylinder, label=\"work\\nready 0, unacked 0, awaiting callback 1\"];"));
    CHECK(contains(dot, "\"x:main\" -> \"q:work\" [label=\"job\"];"));
    CHECK(contains(dot, "\"x:main\" -> \"x:in\" [label=\"h\"];"));
    CHECK(contains(dot, "\"x:in\" -> \"q:work\" [label=\"kind=pdf, x-match=any\"];"));
    CHECK(contains(dot, "\"x:main\" -> \"x:ae\" [style=dashed, label=\"alternate\"];"));
    CHECK(contains(dot, "\"q:work\" -> \"x:dlx\" [style=dotted, label=\"dead letters\\nkey dead\"];"));
    CHECK(contains(dot, "\"c:work:worker\" [shape=note, fontsize=9, label=\"worker\\nprefetch 4\"];"));
    CHECK(contains(dot, "\"q:work\" -> \"c:work:worker\" [arrowhead=vee];"));
    // The default exchange and unused predeclared exchanges are left out unless asked for.
    CHECK_FALSE(contains(dot, "\"x:\""));
    CHECK_FALSE(contains(dot, "amq.direct"));
    CHECK(contains(warren::to_dot(b.snapshot(), {.unused_predeclared = true}), "\"x:amq.direct\""));
    CHECK_FALSE(contains(warren::to_dot(b.snapshot(), {.consumers = false}), "c:work:worker"));
    CHECK_FALSE(contains(warren::to_dot(b.snapshot(), {.counts = false}), "ready 0"));
}

TEST_CASE("topology: to_dot escapes quotes, backslashes and newlines in names", "[topology]") {
    warren::broker b;
    b.declare_exchange("say \"hi\"\\now", "fanout");
    b.declare_queue("line\nbreak");
    b.bind_queue("line\nbreak", "say \"hi\"\\now");
    const std::string dot = warren::to_dot(b.snapshot());
    CHECK(contains(dot, "\"x:say \\\"hi\\\"\\\\now\""));
    CHECK(contains(dot, "\"q:line\\nbreak\""));
    CHECK_FALSE(contains(dot, "line\nbreak"));
}
