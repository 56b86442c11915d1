// process_engine visibility: which step each instance is at, what failed, the history
// with its times, step timings, and instances listed by status.

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/process_engine.hpp"

using namespace std::chrono_literals;
using warren_test::at;
using warren_test::settle;

namespace {

/// Answers a task taken from `queue` by hand: the tests decide when each step completes.
void answer(warren::broker& b, const std::string& queue, bool ok, const std::string& body = {}) {
    auto task = b.try_get(queue);
    REQUIRE(task);
    warren::message e{.routing_key = *task->properties().reply_to, .body = body};
    e.properties.correlation_id = task->properties().correlation_id;
    e.properties.message_id = task->properties().message_id;
    e.properties.type = ok ? "task.completed" : "task.failed";
    (void)b.publish("", std::move(e));
    settle(b);
}

} // namespace

TEST_CASE("process_engine visibility: current_steps says where each instance is as it moves", "[process_engine][visibility]") {
    warren::manual_clock time;
    warren::broker b(time);
    warren::memory_store store;
    warren::process_engine engine(b, store);
    for (const char* q : {"a", "b", "c"}) b.declare_queue(q);
    engine.register_workflow(
        {.name = "w",
         .steps = {warren::task_step{.name = "a", .queue = "a"},
                   warren::fork_step{.name = "f",
                                     .branches = {{.name = "1", .steps = {warren::task_step{.name = "b", .queue = "b"}}},
                                                  {.name = "2", .steps = {warren::task_step{.name = "c", .queue = "c"}}}}}}});
    const std::string one = engine.start("w");
    const std::string two = engine.start("w");
    CHECK(engine.current_steps(one) == std::vector<std::string>{"a"});
    answer(b, "a", true); // one's a
    CHECK(engine.current_steps(one) == std::vector<std::string>{"b", "c"});
    CHECK(engine.current_steps(two) == std::vector<std::string>{"a"});
    answer(b, "b", true);
    CHECK(engine.current_steps(one) == std::vector<std::string>{"c"});
    answer(b, "c", true);
    CHECK(engine.current_steps(one).empty());
    CHECK(engine.instances(warren::workflow_status::completed) == std::vector<std::string>{one});
    CHECK(engine.instances(warren::workflow_status::running) == std::vector<std::string>{two});
    CHECK(engine.instances(warren::workflow_status::failed).empty());
}

TEST_CASE("process_engine visibility: the history records each step, attempt, event and time, and what failed",
          "[process_engine][visibility]") {
    warren::manual_clock time;
    warren::broker b(time);
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("pay");
    engine.register_workflow(
        {.name = "w",
         .steps = {warren::task_step{.name = "charge", .queue = "pay", .retry = warren::retry_policy::fixed(2, 1s)}}});
    const std::string id = engine.start("w");
    time.advance(250ms);
    answer(b, "pay", false, "card declined");
    time.advance(1s);
    (void)engine.poll();
    time.advance(500ms);
    answer(b, "pay", true, warren::encode_data({{"receipt", "r-1"}}));
    using E = warren::history_event;
    const std::vector<warren::history_entry> expected{
        {"", 0, E::workflow_started, at(0ms), "version 1"},
        {"charge", 1, E::task_scheduled, at(0ms), "pay"},
        {"charge", 1, E::task_failed, at(250ms), "card declined"},
        {"charge", 1, E::retry_scheduled, at(250ms), "after 1000ms"},
        {"charge", 2, E::task_scheduled, at(1250ms), "pay"},
        {"charge", 2, E::task_completed, at(1750ms), ""},
        {"", 0, E::workflow_completed, at(1750ms), ""},
    };
    CHECK(engine.history(id) == expected);
    const auto inst = engine.find(id);
    const auto* charge = inst->find_step("charge");
    REQUIRE(charge);
    CHECK(charge->started_at == at(0ms));
    CHECK(charge->ended_at == at(1750ms));
    CHECK(charge->duration(time.now()) == 1750ms);
    CHECK(charge->output == warren::workflow_data{{"receipt", "r-1"}});
    CHECK(charge->error == "card declined"); // the failure of attempt 1 stays readable
    CHECK(inst->duration(time.now()) == 1750ms);
}

TEST_CASE("process_engine visibility: a failed instance says which step failed and why", "[process_engine][visibility]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("pay");
    engine.register_workflow({.name = "w", .steps = {warren::task_step{.name = "charge", .queue = "pay"}}});
    const std::string id = engine.start("w");
    answer(b, "pay", false, "insufficient funds");
    const auto inst = engine.find(id);
    CHECK(inst->status == warren::workflow_status::failed);
    CHECK(inst->failed_step == "charge");
    CHECK(inst->error == "step 'charge' failed: insufficient funds");
    CHECK(inst->find_step("charge")->status == warren::step_status::failed);
    CHECK(engine.instances(warren::workflow_status::failed) == std::vector<std::string>{id});
}

TEST_CASE("process_engine visibility: an unknown instance is not_found for the queries that need one, nothing for find",
          "[process_engine][visibility]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    CHECK(!engine.find("wf-1"));
    CHECK_THROWS_WITH(engine.status("wf-1"), "NOT_FOUND - no workflow instance 'wf-1'");
    CHECK_THROWS_AS(engine.current_steps("wf-1"), warren::error);
    CHECK_THROWS_AS(engine.history("wf-1"), warren::error);
}

TEST_CASE("process_engine visibility: statuses, step statuses and events have stable names", "[process_engine][visibility]") {
    CHECK(warren::to_string(warren::workflow_status::timed_out) == "timed_out");
    CHECK(warren::to_string(warren::workflow_status::terminated) == "terminated");
    CHECK(warren::to_string(warren::step_status::completed_with_errors) == "completed_with_errors");
    CHECK(warren::to_string(warren::step_status::compensation_failed) == "compensation_failed");
    CHECK(warren::to_string(warren::history_event::retry_scheduled) == "retry_scheduled");
    CHECK(warren::to_string(warren::history_event::unroutable) == "unroutable");
    CHECK(warren::is_final(warren::workflow_status::completed));
    CHECK(!warren::is_final(warren::workflow_status::compensating));
}
