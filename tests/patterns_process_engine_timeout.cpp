// process_engine: step and workflow timeouts under each policy (retry, fail and
// compensate, alert only), compensation in reverse order after a timeout, and terminate.

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

using namespace std::chrono_literals;
using warren_test::at;
using warren_test::settle;
using warren_test::steps_with;

namespace {

/// A manual clock, a broker, an engine that records its alerts, and workers that log
/// which queue they served.
struct clocked_engine_with_alerts {
    warren::manual_clock time;
    warren::broker b{time};
    warren::memory_store store;
    std::vector<warren::engine_alert> alerts;
    warren::process_engine<warren::broker> engine{
        b, store, {.on_alert = [this](const warren::engine_alert& a) { alerts.push_back(a); }}};
    std::vector<std::string> served;
    std::vector<std::unique_ptr<warren::task_worker<warren::broker>>> workers;

    void queues(std::initializer_list<const char*> names) {
        for (const char* n : names) b.declare_queue(n);
    }
    void serve(const std::string& queue) {
        workers.push_back(std::make_unique<warren::task_worker<warren::broker>>(
            b, queue, [this, queue](const warren::workflow_task&) { served.push_back(queue); }));
    }
    void advance_and_poll(warren::clock::duration d) {
        time.advance(d);
        (void)engine.poll();
        settle(b);
    }
};

} // namespace

TEST_CASE("process_engine timeout: under timeout_policy::retry a timed-out attempt is retried, and a late answer to it "
          "is ignored",
          "[process_engine][timeout]") {
    clocked_engine_with_alerts r;
    r.queues({"slow"});
    r.engine.register_workflow({.name = "w",
                                .steps = {warren::task_step{.name = "s",
                                                            .queue = "slow",
                                                            .retry = warren::retry_policy::fixed(2, 1s),
                                                            .timeout = 5s,
                                                            .on_timeout = warren::timeout_policy::retry}}});
    const std::string id = r.engine.start("w");
    CHECK(r.engine.next_due() == at(5s));
    auto first = r.b.try_get("slow"); // a worker that takes the task and is slow
    REQUIRE(first);
    r.advance_and_poll(4999ms);
    CHECK(r.engine.find(id)->find_step("s")->status == warren::step_status::in_progress);
    r.advance_and_poll(1ms);
    CHECK(r.engine.find(id)->find_step("s")->status == warren::step_status::waiting_retry);
    CHECK(steps_with(r.engine.history(id), warren::history_event::task_timed_out) == std::vector<std::string>{"s"});
    CHECK(r.engine.find(id)->find_step("s")->retry_at == at(6s));
    r.advance_and_poll(1s);
    CHECK(r.b.message_count("slow") == 1); // attempt 2

    // The slow worker answers attempt 1 now: too late, it changes nothing.
    warren::message late{.routing_key = r.engine.events_queue(), .body = ""};
    late.properties.correlation_id = id;
    late.properties.message_id = first->properties().message_id;
    late.properties.type = "task.completed";
    (void)r.b.publish("", std::move(late));
    settle(r.b);
    CHECK(r.engine.stale_events() == 1);
    CHECK(r.engine.status(id) == warren::workflow_status::running);

    r.advance_and_poll(5s); // attempt 2 times out too: attempts spent
    CHECK(r.engine.status(id) == warren::workflow_status::failed);
    CHECK(r.engine.find(id)->error == "step 's' failed: timed out after 5000ms");
}

TEST_CASE("process_engine timeout: fail_and_compensate after a step timeout compensates the completed steps in reverse "
          "order, one at a time, then ends timed_out",
          "[process_engine][timeout][compensation]") {
    clocked_engine_with_alerts r;
    r.queues({"reserve", "release", "charge", "refund", "ship"});
    r.engine.register_workflow(
        {.name = "order",
         .steps = {warren::task_step{.name = "reserve", .queue = "reserve", .compensation_queue = "release"},
                   warren::task_step{.name = "charge", .queue = "charge", .compensation_queue = "refund"},
                   warren::task_step{.name = "ship",
                                     .queue = "ship",
                                     .timeout = 10s,
                                     .on_timeout = warren::timeout_policy::fail_and_compensate}}});
    r.serve("reserve");
    r.serve("charge");
    const std::string id = r.engine.start("order");
    settle(r.b);
    CHECK(r.engine.current_steps(id) == std::vector<std::string>{"ship"}); // nobody ships
    r.advance_and_poll(10s);
    CHECK(r.engine.status(id) == warren::workflow_status::compensating);
    CHECK(r.engine.find(id)->compensation_plan == std::vector<std::string>{"charge", "reserve"});
    // One at a time: the refund first; the release waits for the refund's completion.
    CHECK(r.b.message_count("refund") == 1);
    CHECK(r.b.message_count("release") == 0);
    auto refund = r.b.try_get("refund", warren::ack_mode::manual);
    REQUIRE(refund);
    CHECK(*refund->properties().headers.find("x-compensation")->get_if<bool>());
    CHECK(refund->properties().message_id == id + ".charge.undo.1");
    CHECK(r.engine.current_steps(id) == std::vector<std::string>{"charge"});
    refund->reject(true); // back to the queue, for the worker below
    r.serve("refund");
    r.serve("release");
    settle(r.b);
    CHECK(r.served == std::vector<std::string>{"reserve", "charge", "refund", "release"});
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::timed_out);
    CHECK(inst->failed_step == "ship");
    CHECK(inst->error == "step 'ship' timed out after 10000ms");
    CHECK(inst->find_step("ship")->status == warren::step_status::failed);
    CHECK(inst->find_step("charge")->status == warren::step_status::compensated);
    CHECK(inst->find_step("reserve")->status == warren::step_status::compensated);
    CHECK(steps_with(inst->history, warren::history_event::compensation_completed) ==
          std::vector<std::string>{"charge", "reserve"});
    CHECK(r.engine.instances(warren::workflow_status::timed_out) == std::vector<std::string>{id});
}

TEST_CASE("process_engine timeout: alert_only reports a timed-out attempt once and keeps waiting for it",
          "[process_engine][timeout][alert]") {
    clocked_engine_with_alerts r;
    r.queues({"slow"});
    r.engine.register_workflow(
        {.name = "w",
         .steps = {warren::task_step{.name = "s", .queue = "slow", .timeout = 2s, .on_timeout = warren::timeout_policy::alert_only}}});
    const std::string id = r.engine.start("w");
    r.advance_and_poll(2s);
    r.advance_and_poll(10s);
    REQUIRE(r.alerts.size() == 1);
    CHECK(r.alerts[0].instance_id == id);
    CHECK(r.alerts[0].step == "s");
    CHECK(r.alerts[0].at == at(2s));
    CHECK(r.alerts[0].detail == "attempt 1 timed out after 2000ms");
    CHECK(steps_with(r.engine.history(id), warren::history_event::alert) == std::vector<std::string>{"s"});
    CHECK(r.engine.status(id) == warren::workflow_status::running);
    CHECK(!r.engine.next_due()); // alerted: nothing more to time
    r.serve("slow");
    settle(r.b);
    CHECK(r.engine.status(id) == warren::workflow_status::completed);
}

TEST_CASE("process_engine timeout: a workflow timeout under fail_and_compensate compensates and ends timed_out",
          "[process_engine][timeout][compensation]") {
    clocked_engine_with_alerts r;
    r.queues({"a", "undo_a", "b"});
    r.engine.register_workflow({.name = "w",
                                .steps = {warren::task_step{.name = "a", .queue = "a", .compensation_queue = "undo_a"},
                                          warren::task_step{.name = "b", .queue = "b"}},
                                .timeout = 30s});
    r.serve("a");
    r.serve("undo_a");
    const std::string id = r.engine.start("w");
    settle(r.b);
    CHECK(r.engine.next_due() == at(30s));
    r.advance_and_poll(29s);
    CHECK(r.engine.status(id) == warren::workflow_status::running);
    r.advance_and_poll(1s);
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::timed_out);
    CHECK(inst->error == "workflow timed out after 30000ms");
    CHECK(inst->find_step("b")->status == warren::step_status::cancelled); // in flight when it ended
    CHECK(r.served == std::vector<std::string>{"a", "undo_a"});
    CHECK(inst->ended_at == at(30s));
}

TEST_CASE("process_engine timeout: a workflow timeout under alert_only alerts once and the instance goes on",
          "[process_engine][timeout][alert]") {
    clocked_engine_with_alerts r;
    r.queues({"a"});
    r.engine.register_workflow({.name = "w",
                                .steps = {warren::task_step{.name = "a", .queue = "a"}},
                                .timeout = 1s,
                                .on_timeout = warren::workflow_timeout_policy::alert_only});
    const std::string id = r.engine.start("w");
    r.advance_and_poll(1s);
    r.advance_and_poll(1s);
    REQUIRE(r.alerts.size() == 1);
    CHECK(r.alerts[0].step.empty());
    CHECK(r.alerts[0].detail == "workflow timed out after 1000ms");
    r.serve("a");
    settle(r.b);
    CHECK(r.engine.status(id) == warren::workflow_status::completed);
}

TEST_CASE("process_engine timeout: a compensation that times out is retried by its policy, then marked failed and the "
          "next one runs",
          "[process_engine][timeout][compensation]") {
    clocked_engine_with_alerts r;
    r.queues({"a", "undo_a", "b", "undo_b", "c"});
    r.engine.register_workflow(
        {.name = "w",
         .steps = {warren::task_step{.name = "a", .queue = "a", .compensation_queue = "undo_a"},
                   warren::task_step{.name = "b",
                                     .queue = "b",
                                     .timeout = 1s,
                                     .compensation_queue = "undo_b",
                                     .compensation_retry = warren::retry_policy::fixed(2, 1s)},
                   warren::task_step{.name = "c", .queue = "c", .timeout = 1s, .on_timeout = warren::timeout_policy::fail_and_compensate}}});
    r.serve("a");
    r.serve("b");
    r.serve("undo_a");
    const std::string id = r.engine.start("w");
    settle(r.b);
    r.advance_and_poll(1s); // c times out: undo_b goes out (nobody serves it)
    CHECK(r.b.message_count("undo_b") == 1);
    r.advance_and_poll(1s); // undo_b attempt 1 times out; its retry is due in 1 s
    r.advance_and_poll(1s); // attempt 2
    CHECK(r.b.message_count("undo_b") == 2);
    r.advance_and_poll(1s); // attempt 2 times out: compensation_failed, undo_a runs
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::timed_out);
    CHECK(inst->find_step("b")->status == warren::step_status::compensation_failed);
    CHECK(inst->find_step("a")->status == warren::step_status::compensated);
    CHECK(inst->error == "step 'c' timed out after 1000ms"); // the original error is kept
    CHECK(steps_with(inst->history, warren::history_event::compensation_failed) == std::vector<std::string>{"b"});
}

TEST_CASE("process_engine: terminate ends an instance with no compensation, and its late events are ignored",
          "[process_engine][terminate]") {
    clocked_engine_with_alerts r;
    r.queues({"a", "undo_a", "b"});
    r.engine.register_workflow({.name = "w",
                                .steps = {warren::task_step{.name = "a", .queue = "a", .compensation_queue = "undo_a"},
                                          warren::task_step{.name = "b", .queue = "b"}}});
    r.serve("a");
    const std::string id = r.engine.start("w");
    settle(r.b);
    CHECK(r.engine.terminate(id, "customer cancelled"));
    CHECK(!r.engine.terminate(id));
    r.serve("b");
    settle(r.b);
    const auto inst = r.engine.find(id);
    CHECK(inst->status == warren::workflow_status::terminated);
    CHECK(inst->error == "customer cancelled");
    CHECK(inst->find_step("b")->status == warren::step_status::cancelled);
    CHECK(r.b.message_count("undo_a") == 0);
    CHECK(r.engine.stale_events() == 1); // b's answer came after the end
    CHECK_THROWS_WITH(r.engine.terminate("wf-404"), "NOT_FOUND - no workflow instance 'wf-404'");
}
