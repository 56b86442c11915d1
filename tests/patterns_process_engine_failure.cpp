// process_engine: optional steps, failure of a required step with compensation in
// reverse order of completion, and the failure workflow.

#include <algorithm>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/process_engine.hpp"

using warren_test::settle;
using warren_test::steps_with;

namespace {

/// A broker, a memory_store, an engine, and workers that log which queue they served and
/// may fail.
struct engine_with_workers {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine<warren::broker> engine{b, store};
    std::vector<std::string> served;
    std::vector<std::unique_ptr<warren::task_worker<warren::broker>>> workers;

    /// Declares `queue` and serves it; a worker for a queue in `fails` throws.
    void serve(const std::string& queue, bool fails = false) {
        b.declare_queue(queue);
        workers.push_back(std::make_unique<warren::task_worker<warren::broker>>(
            b, queue, [this, queue, fails](const warren::workflow_task&) {
                served.push_back(queue);
                if (fails) throw std::runtime_error(queue + " is broken");
            }));
    }
};

/// A task step `name` on queue `name`, undone on queue `undo` when one is given.
warren::task_step task_on_own_queue(const std::string& name, std::string undo = {}) {
    return warren::task_step{.name = name, .queue = name, .compensation_queue = std::move(undo)};
}

} // namespace

TEST_CASE("process_engine: a failed optional step ends completed_with_errors and the instance goes on",
          "[process_engine][optional]") {
    engine_with_workers r;
    r.serve("a");
    r.serve("nice_to_have", true);
    r.serve("c");
    warren::task_step optional = task_on_own_queue("nice_to_have");
    optional.optional = true;
    r.engine.register_workflow({.name = "w", .steps = {task_on_own_queue("a"), optional, task_on_own_queue("c")}});
    const std::string id = r.engine.start("w");
    settle(r.b);
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::completed);
    CHECK(inst->find_step("nice_to_have")->status == warren::step_status::completed_with_errors);
    CHECK(inst->find_step("nice_to_have")->error == "nice_to_have is broken");
    CHECK(inst->error.empty());
    CHECK(r.served == std::vector<std::string>{"a", "nice_to_have", "c"});
}

TEST_CASE("process_engine: a failed required step compensates the completed steps in reverse order of completion",
          "[process_engine][compensation]") {
    engine_with_workers r;
    for (const char* q : {"a", "b", "c", "undo_a", "undo_b", "undo_c"}) r.serve(q);
    r.serve("d", true);
    // a, then b and c in parallel (c's branch is shorter: it completes first), then d.
    r.engine.register_workflow(
        {.name = "w",
         .steps = {task_on_own_queue("a", "undo_a"),
                   warren::fork_step{.name = "f",
                                     .branches = {{.name = "1", .steps = {task_on_own_queue("b", "undo_b")}},
                                                  {.name = "2", .steps = {task_on_own_queue("c", "undo_c")}}}},
                   task_on_own_queue("d")}});
    const std::string id = r.engine.start("w");
    settle(r.b);
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::failed);
    CHECK(inst->error == "step 'd' failed: d is broken");
    // Completion order was a, b, c (b was published first); compensation runs c, b, a.
    CHECK(steps_with(inst->history, warren::history_event::task_completed) == std::vector<std::string>{"a", "b", "c"});
    CHECK(steps_with(inst->history, warren::history_event::compensation_completed) ==
          std::vector<std::string>{"c", "b", "a"});
    CHECK(std::vector<std::string>(r.served.end() - 3, r.served.end()) ==
          std::vector<std::string>{"undo_c", "undo_b", "undo_a"});
}

TEST_CASE("process_engine: without compensate_on_failure a failed step ends the instance at once",
          "[process_engine][compensation]") {
    engine_with_workers r;
    r.serve("a");
    r.serve("undo_a");
    r.serve("b", true);
    r.engine.register_workflow(
        {.name = "w", .steps = {task_on_own_queue("a", "undo_a"), task_on_own_queue("b")}, .compensate_on_failure = false});
    const std::string id = r.engine.start("w");
    settle(r.b);
    CHECK(r.engine.status(id) == warren::workflow_status::failed);
    CHECK(r.served == std::vector<std::string>{"a", "b"});
}

TEST_CASE("process_engine: a failed compensation is retried by its policy, reported, and the next one still runs",
          "[process_engine][compensation]") {
    engine_with_workers r;
    r.serve("a");
    r.serve("undo_a");
    r.serve("b");
    r.serve("undo_b", true);
    r.serve("c", true);
    warren::task_step b = task_on_own_queue("b", "undo_b");
    b.compensation_retry = warren::retry_policy::fixed(2, warren::clock::duration::zero());
    r.engine.register_workflow({.name = "w", .steps = {task_on_own_queue("a", "undo_a"), b, task_on_own_queue("c")}});
    const std::string id = r.engine.start("w");
    settle(r.b);
    (void)r.engine.poll(); // the retry of undo_b is due at once
    settle(r.b);
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::failed);
    CHECK(std::count(r.served.begin(), r.served.end(), "undo_b") == 2);
    CHECK(inst->find_step("b")->status == warren::step_status::compensation_failed);
    CHECK(inst->find_step("b")->error == "undo_b is broken");
    CHECK(inst->find_step("a")->status == warren::step_status::compensated);
    CHECK(inst->error == "step 'c' failed: c is broken");
}

TEST_CASE("process_engine: a failed instance starts its failure workflow with its id and the reason",
          "[process_engine][failure_workflow]") {
    engine_with_workers r;
    r.serve("a", true);
    r.serve("notify");
    std::vector<warren::workflow_data> notified;
    r.b.declare_queue("cleanup");
    warren::task_worker<warren::broker> cleanup(r.b, "cleanup", [&](const warren::workflow_task& t) { notified.push_back(t.input); });
    r.engine.register_workflow({.name = "on_failure", .steps = {warren::task_step{.name = "cleanup", .queue = "cleanup"}}});
    r.engine.register_workflow({.name = "w", .steps = {task_on_own_queue("a")}, .failure_workflow = "on_failure"});
    const std::string id = r.engine.start("w", {{"order", "42"}});
    settle(r.b);
    const auto inst = r.engine.find(id);
    REQUIRE(inst);
    CHECK(inst->status == warren::workflow_status::failed);
    REQUIRE(!inst->failure_instance.empty());
    CHECK(r.engine.find(inst->failure_instance)->workflow == "on_failure");
    CHECK(r.engine.status(inst->failure_instance) == warren::workflow_status::completed);
    REQUIRE(notified.size() == 1);
    CHECK(notified[0].at("failed_instance") == id);
    CHECK(notified[0].at("failed_workflow") == "w");
    CHECK(notified[0].at("reason") == "step 'a' failed: a is broken");
    CHECK(notified[0].at("order") == "42");
    CHECK(steps_with(inst->history, warren::history_event::failure_workflow_started) == std::vector<std::string>{""});
}

TEST_CASE("process_engine: a failure workflow that is not registered is recorded as an alert", "[process_engine][failure_workflow]") {
    engine_with_workers r;
    r.serve("a", true);
    r.engine.register_workflow({.name = "w", .steps = {task_on_own_queue("a")}, .failure_workflow = "missing"});
    const std::string id = r.engine.start("w");
    settle(r.b);
    const auto h = r.engine.history(id);
    CHECK(h.back().event == warren::history_event::alert);
    CHECK(h.back().detail == "failure workflow 'missing' is not registered");
    CHECK(r.engine.find(id)->failure_instance.empty());
}

TEST_CASE("process_engine: a fork sibling that completes while the instance compensates is compensated too, last",
          "[process_engine][compensation][fork]") {
    engine_with_workers r;
    r.serve("a");
    r.serve("fast", true);
    r.b.declare_queue("undo_a"); // served later
    r.b.declare_queue("slow");   // served later
    r.serve("undo_slow");
    r.engine.register_workflow(
        {.name = "w",
         .steps = {warren::fork_step{.name = "f",
                                     .branches = {{.name = "1", .steps = {task_on_own_queue("a", "undo_a"), task_on_own_queue("fast")}},
                                                  {.name = "2", .steps = {task_on_own_queue("slow", "undo_slow")}}}}}});
    const std::string id = r.engine.start("w");
    settle(r.b);
    CHECK(r.engine.status(id) == warren::workflow_status::compensating); // undo_a is out, slow still in flight
    warren::task_worker<warren::broker> slow(r.b, "slow", [](const warren::workflow_task&) {});
    settle(r.b);
    CHECK(r.engine.find(id)->compensation_plan == std::vector<std::string>{"a", "slow"});
    warren::task_worker<warren::broker> undo_a(r.b, "undo_a", [](const warren::workflow_task&) {});
    settle(r.b);
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::failed);
    CHECK(steps_with(inst->history, warren::history_event::compensation_completed) ==
          std::vector<std::string>{"a", "slow"});
}

TEST_CASE("process_engine: a fork sibling in flight when the instance ends is cancelled and its late result ignored",
          "[process_engine][fork]") {
    engine_with_workers r;
    r.serve("fast", true);
    r.serve("undo_slow");
    r.b.declare_queue("slow"); // served later
    r.engine.register_workflow(
        {.name = "w",
         .steps = {warren::fork_step{.name = "f",
                                     .branches = {{.name = "1", .steps = {task_on_own_queue("fast")}},
                                                  {.name = "2", .steps = {task_on_own_queue("slow", "undo_slow")}}}}}});
    const std::string id = r.engine.start("w");
    settle(r.b);
    // fast failed with nothing completed to compensate: the instance ended at once.
    CHECK(r.engine.status(id) == warren::workflow_status::failed);
    CHECK(r.engine.find(id)->find_step("slow")->status == warren::step_status::cancelled);
    warren::task_worker<warren::broker> slow(r.b, "slow", [](const warren::workflow_task&) {});
    settle(r.b);
    CHECK(r.engine.stale_events() == 1);
    CHECK(r.engine.find(id)->find_step("slow")->status == warren::step_status::cancelled);
}
