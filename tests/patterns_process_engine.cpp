// process_engine (include/warren/patterns/engine/): definitions and versions, tasks as
// messages and their completion events, decisions, fork and join, and completion events
// that must not advance an instance twice.

#include <algorithm>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"
#include "support/process_engine.hpp"

using warren_test::error_of;
using warren_test::has_event;
using warren_test::part_of;
using warren_test::settle;

namespace {

/// A task step `name` on queue q.<name>.
warren::task_step task_on_q(std::string name) {
    std::string queue = "q." + name;
    return warren::task_step{.name = std::move(name), .queue = std::move(queue)};
}

/// Declares q.<name> for each name and a worker that records the step it ran and returns
/// {<name>: "done"}.
template <class Broker>
struct workers {
    Broker& broker;
    std::vector<std::string> ran;
    std::vector<std::unique_ptr<warren::task_worker<Broker>>> all;

    workers(Broker& b, std::initializer_list<std::string> names) : broker(b) {
        for (const auto& n : names) {
            broker.declare_queue("q." + n);
            all.push_back(std::make_unique<warren::task_worker<Broker>>(
                broker, "q." + n, [this, n](const warren::workflow_task& t) {
                    ran.push_back(t.step);
                    return warren::workflow_data{{n, "done"}};
                }));
        }
    }
};

} // namespace

TEMPLATE_TEST_CASE("process_engine: tasks run in order, each published once the one before completed",
                   "[process_engine]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    workers<TestType> w(b, {"a", "b", "c"});
    engine.register_workflow({.name = "abc", .steps = {task_on_q("a"), task_on_q("b"), task_on_q("c")}});
    const std::string id = engine.start("abc", {{"order", "7"}});
    CHECK(engine.status(id) == warren::workflow_status::running);
    CHECK(engine.current_steps(id) == std::vector<std::string>{"a"});
    CHECK(w.ran.empty()); // published: the worker runs at dispatch
    CHECK(b.message_count("q.b") == 0); // b waits for a's completion event
    settle(b);
    CHECK(w.ran == std::vector<std::string>{"a", "b", "c"});
    CHECK(engine.status(id) == warren::workflow_status::completed);
    const auto inst = engine.find(id);
    REQUIRE(inst);
    CHECK(inst->data == warren::workflow_data{{"a", "done"}, {"b", "done"}, {"c", "done"}, {"order", "7"}});
    CHECK(inst->input == warren::workflow_data{{"order", "7"}});
    CHECK(store.find(id) == inst); // the store holds what the engine holds
}

TEST_CASE("process_engine: a task message carries the instance's data, task id, instance id and reply_to",
          "[process_engine]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store, {.events_queue = "engine.events"});
    b.declare_queue("q.a");
    engine.register_workflow({.name = "one", .version = 3, .steps = {task_on_q("a")}});
    const std::string id = engine.start("one", {{"k", "v\tw"}});
    auto m = b.try_get("q.a");
    REQUIRE(m);
    const auto& p = m->properties();
    CHECK(p.correlation_id == id);
    CHECK(p.message_id == id + ".a.1");
    CHECK(p.reply_to == "engine.events");
    CHECK(p.type == "a");
    CHECK(*p.headers.find_string("x-workflow") == "one");
    CHECK(*p.headers.find("x-workflow-version")->get_if<std::int64_t>() == 3);
    CHECK(*p.headers.find("x-attempt")->get_if<std::int64_t>() == 1);
    CHECK(warren::decode_data(m->body()) == warren::workflow_data{{"k", "v\tw"}});

    // A worker by hand, following task_protocol: the event goes to reply_to.
    warren::message done{.routing_key = *p.reply_to, .body = warren::encode_data({{"out", "1"}})};
    done.properties.correlation_id = p.correlation_id;
    done.properties.message_id = p.message_id;
    done.properties.type = "task.completed";
    (void)b.publish("", std::move(done));
    settle(b);
    CHECK(engine.status(id) == warren::workflow_status::completed);
    CHECK(engine.find(id)->data.at("out") == "1");
}

TEST_CASE("process_engine: a redelivered completion event does not advance the instance twice",
          "[process_engine][dedup]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("q.a");
    b.declare_queue("q.b");
    engine.register_workflow({.name = "ab", .steps = {task_on_q("a"), task_on_q("b")}});
    const std::string id = engine.start("ab");
    auto m = b.try_get("q.a");
    REQUIRE(m);
    auto completion = [&] {
        warren::message e{.routing_key = engine.events_queue(), .body = ""};
        e.properties.correlation_id = id;
        e.properties.message_id = *m->properties().message_id;
        e.properties.type = "task.completed";
        return e;
    };
    (void)b.publish("", completion());
    (void)b.publish("", completion()); // the same event again (a redelivery)
    settle(b);
    CHECK(engine.stale_events() == 1);
    CHECK(b.message_count("q.b") == 1); // b was published once
    const auto h = engine.history(id);
    CHECK(std::count_if(h.begin(), h.end(), [](const auto& e) { return e.event == warren::history_event::task_completed; }) == 1);
    CHECK(engine.current_steps(id) == std::vector<std::string>{"b"});
}

TEST_CASE("process_engine: a decision by key takes the case named by the data, otherwise its default",
          "[process_engine][decision]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    workers<warren::broker> w(b, {"check", "express", "standard", "notify"});
    engine.register_workflow(
        {.name = "ship",
         .steps = {task_on_q("check"),
                   warren::decision_step{.name = "speed",
                                         .key = "shipping",
                                         .cases = {{.name = "express", .steps = {task_on_q("express")}}},
                                         .otherwise = {task_on_q("standard")}},
                   task_on_q("notify")}});
    const std::string fast = engine.start("ship", {{"shipping", "express"}});
    settle(b);
    CHECK(w.ran == std::vector<std::string>{"check", "express", "notify"});
    const std::string slow = engine.start("ship", {{"shipping", "snail"}});
    settle(b);
    CHECK(w.ran == std::vector<std::string>{"check", "express", "notify", "check", "standard", "notify"});
    CHECK(engine.status(fast) == warren::workflow_status::completed);
    CHECK(engine.status(slow) == warren::workflow_status::completed);
    CHECK(engine.find(fast)->find_step("speed")->branch == "express");
    CHECK(engine.find(slow)->find_step("speed")->branch.empty()); // otherwise
    const auto h = engine.history(slow);
    const auto decided = std::find_if(h.begin(), h.end(), [](const auto& e) { return e.event == warren::history_event::decided; });
    REQUIRE(decided != h.end());
    CHECK(decided->detail == "otherwise (snail)");
}

TEST_CASE("process_engine: a decision by function sees the data merged from earlier tasks", "[process_engine][decision]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    workers<warren::broker> w(b, {"big", "small"});
    b.declare_queue("q.price");
    warren::task_worker<warren::broker> pricing(b, "q.price", [](const warren::workflow_task& t) {
        return warren::workflow_data{{"total", std::to_string(std::stoi(t.input.at("n")) * 10)}};
    });
    engine.register_workflow(
        {.name = "size",
         .steps = {task_on_q("price"),
                   warren::decision_step{
                       .name = "how_big",
                       .choose = [](const warren::workflow_data& d) { return std::stoi(d.at("total")) > 50 ? "big" : "small"; },
                       .cases = {{.name = "big", .steps = {task_on_q("big")}}, {.name = "small", .steps = {task_on_q("small")}}}}}});
    (void)engine.start("size", {{"n", "9"}});
    (void)engine.start("size", {{"n", "2"}});
    settle(b);
    std::sort(w.ran.begin(), w.ran.end());
    CHECK(w.ran == std::vector<std::string>{"big", "small"});
    CHECK(engine.instances(warren::workflow_status::completed).size() == 2);
}

TEMPLATE_TEST_CASE("process_engine: a fork publishes every branch at once and joins when all completed",
                   "[process_engine][fork]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    for (const char* q : {"q.x1", "q.x2", "q.y", "q.after"}) b.declare_queue(q);
    engine.register_workflow(
        {.name = "fj",
         .steps = {warren::fork_step{.name = "both",
                                     .branches = {{.name = "x", .steps = {task_on_q("x1"), task_on_q("x2")}},
                                                  {.name = "y", .steps = {task_on_q("y")}}}},
                   task_on_q("after")}});
    const std::string id = engine.start("fj");
    CHECK(b.message_count("q.x1") == 1);
    CHECK(b.message_count("q.y") == 1); // both branches at once
    CHECK(engine.current_steps(id) == std::vector<std::string>{"x1", "y"});

    std::vector<std::string> ran;
    auto worker = [&](const char* q) {
        return std::make_unique<warren::task_worker<TestType>>(b, q, [&ran](const warren::workflow_task& t) { ran.push_back(t.step); });
    };
    auto y = worker("q.y");
    settle(b);
    CHECK(engine.find(id)->find_step("both")->status == warren::step_status::in_progress); // x not done: no join
    CHECK(b.message_count("q.after") == 0);
    auto x1 = worker("q.x1");
    auto x2 = worker("q.x2");
    settle(b);
    CHECK(engine.find(id)->find_step("both")->status == warren::step_status::completed);
    CHECK(has_event(engine.history(id), "both", warren::history_event::joined));
    CHECK(b.message_count("q.after") == 1); // after the join
    CHECK(ran == std::vector<std::string>{"y", "x1", "x2"});
}

TEST_CASE("process_engine: forks and decisions nest", "[process_engine][fork][decision]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    workers<warren::broker> w(b, {"p", "q1", "q2", "r"});
    engine.register_workflow(
        {.name = "nest",
         .steps = {warren::fork_step{
             .name = "f",
             .branches = {{.name = "one", .steps = {task_on_q("p")}},
                          {.name = "two",
                           .steps = {warren::decision_step{.name = "d",
                                                           .key = "pick",
                                                           .cases = {{.name = "1", .steps = {task_on_q("q1")}},
                                                                     {.name = "2", .steps = {task_on_q("q2")}}}},
                                     task_on_q("r")}}}}}});
    const std::string id = engine.start("nest", {{"pick", "2"}});
    settle(b);
    CHECK(engine.status(id) == warren::workflow_status::completed);
    std::sort(w.ran.begin(), w.ran.end());
    CHECK(w.ran == std::vector<std::string>{"p", "q2", "r"});
}

TEST_CASE("process_engine: instances start on the latest version unless told", "[process_engine][versions]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("q.v1");
    b.declare_queue("q.v2");
    engine.register_workflow({.name = "flow", .version = 1, .steps = {task_on_q("v1")}});
    engine.register_workflow({.name = "flow", .version = 2, .steps = {task_on_q("v2")}});
    CHECK(engine.latest_version("flow") == 2u);
    CHECK(!engine.latest_version("none"));
    const std::string latest = engine.start("flow");
    const std::string old = engine.start("flow", {}, 1);
    CHECK(engine.find(latest)->version == 2);
    CHECK(engine.find(old)->version == 1);
    CHECK(b.message_count("q.v2") == 1);
    CHECK(b.message_count("q.v1") == 1);
    CHECK_THROWS_WITH(engine.start("flow", {}, 9), "NOT_FOUND - no version 9 of workflow 'flow'");
    CHECK_THROWS_WITH(engine.start("nope"), "NOT_FOUND - no workflow 'nope'");
    CHECK_THROWS_WITH(engine.register_workflow({.name = "flow", .version = 2, .steps = {task_on_q("v2")}}),
                      "PRECONDITION_FAILED - workflow 'flow' version 2 is registered already");
}

TEST_CASE("process_engine: a definition with duplicate or unnamed steps, tasks without queues, or empty forks is refused",
          "[process_engine][definition]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    auto refusal = [&](warren::workflow_definition d) { return error_of([&] { engine.register_workflow(std::move(d)); }); };
    CHECK_CONTAINS(refusal({.name = "", .steps = {task_on_q("a")}}), "needs a name");
    CHECK(refusal({.name = "d", .steps = {task_on_q("a"), task_on_q("a")}}) ==
          "406 PRECONDITION_FAILED - workflow 'd': step name 'a' is used twice");
    CHECK_CONTAINS(refusal({.name = "d", .steps = {warren::task_step{.name = "a", .queue = ""}}}), "task 'a' has no queue");
    CHECK_CONTAINS(refusal({.name = "d", .steps = {warren::fork_step{.name = "f"}}}), "fork 'f' has no branches");
    CHECK_CONTAINS(refusal({.name = "d", .steps = {warren::decision_step{.name = "c"}}}), "neither key nor choose");
    CHECK(part_of(refusal({.name = "d",
                           .steps = {warren::fork_step{.name = "f", .branches = {{.name = "x", .steps = {task_on_q("f")}}}}}}),
                  "step name 'f' is used twice") == "step name 'f' is used twice"); // unique across nesting
    CHECK(!engine.latest_version("d"));
}

TEST_CASE("process_engine: a workflow with no steps completes at once", "[process_engine]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    engine.register_workflow({.name = "empty"});
    const std::string id = engine.start("empty");
    CHECK(engine.status(id) == warren::workflow_status::completed);
}

TEST_CASE("process_engine: a task message that no queue takes is recorded as unroutable", "[process_engine]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    engine.register_workflow({.name = "lost", .steps = {task_on_q("nowhere")}});
    const std::string id = engine.start("lost");
    CHECK(engine.unroutable_tasks() == 1);
    CHECK(has_event(engine.history(id), "nowhere", warren::history_event::unroutable));
    CHECK(engine.status(id) == warren::workflow_status::running); // left to the step's timeout
}

TEST_CASE("process_engine: a completion whose output does not parse changes nothing and is reported by the broker",
          "[process_engine]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("q.a");
    engine.register_workflow({.name = "one", .steps = {task_on_q("a")}});
    const std::string id = engine.start("one");
    auto m = b.try_get("q.a");
    REQUIRE(m);
    warren::message bad{.routing_key = engine.events_queue(), .body = "no tab in this line"};
    bad.properties.correlation_id = id;
    bad.properties.message_id = m->properties().message_id;
    bad.properties.type = "task.completed";
    (void)b.publish("", std::move(bad));
    CHECK_THROWS_AS(b.dispatch(), warren::error); // no error handler: out of dispatch
    CHECK(engine.find(id)->find_step("a")->status == warren::step_status::in_progress);
    CHECK(b.queue_stats(engine.events_queue()).dropped.rejected == 1);
}
