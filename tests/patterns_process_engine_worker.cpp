// task_worker (include/warren/patterns/engine/task_worker.hpp): events with the right
// ids, failures as task.failed, idempotence by task id, and messages that are not tasks.

#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/process_engine.hpp"

using warren_test::settle;

namespace {

/// A task message as process_engine publishes it.
warren::message task_message(const std::string& id, const std::string& body = {}) {
    warren::message m{.routing_key = "work", .body = body};
    m.properties.message_id = id;
    m.properties.correlation_id = "wf-1";
    m.properties.reply_to = "events";
    m.properties.type = "step";
    m.properties.headers.set("x-workflow", "w");
    m.properties.headers.set("x-attempt", std::int64_t{2});
    m.properties.headers.set("x-compensation", false);
    return m;
}

} // namespace

TEMPLATE_TEST_CASE("task_worker: publishes task.completed with the task's ids and its output, then acks",
                   "[process_engine][task_worker]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("work");
    b.declare_queue("events");
    std::vector<warren::workflow_task> seen;
    warren::task_worker<TestType> w(b, "work", [&](const warren::workflow_task& t) {
        seen.push_back(t);
        return warren::workflow_data{{"doubled", t.input.at("n") + t.input.at("n")}};
    });
    (void)b.publish("", task_message("wf-1.step.2", warren::encode_data({{"n", "4"}})));
    settle(b);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].instance_id == "wf-1");
    CHECK(seen[0].task_id == "wf-1.step.2");
    CHECK(seen[0].step == "step");
    CHECK(seen[0].workflow == "w");
    CHECK(seen[0].attempt == 2);
    CHECK(!seen[0].compensation);
    auto event = b.try_get("events");
    REQUIRE(event);
    CHECK(event->properties().type == "task.completed");
    CHECK(event->properties().message_id == "wf-1.step.2");
    CHECK(event->properties().correlation_id == "wf-1");
    CHECK(warren::decode_data(event->body()) == warren::workflow_data{{"doubled", "44"}});
    CHECK(b.queue_stats("work").acked == 1);
    CHECK(w.completed() == 1);
}

TEST_CASE("task_worker: a handler that throws publishes task.failed with the error", "[process_engine][task_worker]") {
    warren::broker b;
    b.declare_queue("work");
    b.declare_queue("events");
    warren::task_worker<warren::broker> w(b, "work", [](const warren::workflow_task&) -> warren::workflow_data {
        throw std::runtime_error("disk full");
    });
    (void)b.publish("", task_message("t-1"));
    settle(b);
    auto event = b.try_get("events");
    REQUIRE(event);
    CHECK(event->properties().type == "task.failed");
    CHECK(event->body() == "disk full");
    CHECK(w.failed() == 1);
    CHECK(b.queue_stats("work").acked == 1); // a failure is an answer: the task is settled
}

TEST_CASE("task_worker: a task id seen before is answered again with the first result, without running the handler",
          "[process_engine][task_worker][dedup]") {
    warren::broker b;
    b.declare_queue("work");
    b.declare_queue("events");
    int runs = 0;
    warren::task_worker<warren::broker> w(b, "work", [&](const warren::workflow_task&) {
        ++runs;
        return warren::workflow_data{{"run", std::to_string(runs)}};
    });
    (void)b.publish("", task_message("t-1"));
    (void)b.publish("", task_message("t-1")); // redelivered, or re-published by a resumed engine
    (void)b.publish("", task_message("t-2"));
    settle(b);
    CHECK(runs == 2);
    CHECK(w.duplicates() == 1);
    std::vector<std::string> answers;
    while (auto e = b.try_get("events")) answers.push_back(*e->properties().message_id + "=" + warren::decode_data(e->body()).at("run"));
    CHECK(answers == std::vector<std::string>{"t-1=1", "t-1=1", "t-2=2"});
}

TEST_CASE("task_worker: it forgets the oldest results beyond `remembered`", "[process_engine][task_worker][dedup]") {
    warren::broker b;
    b.declare_queue("work");
    b.declare_queue("events");
    int runs = 0;
    warren::task_worker<warren::broker> w(b, "work", [&](const warren::workflow_task&) { ++runs; }, {.remembered = 1});
    (void)b.publish("", task_message("t-1"));
    (void)b.publish("", task_message("t-2"));
    (void)b.publish("", task_message("t-1")); // forgotten: runs again
    (void)b.publish("", task_message("t-1")); // remembered again
    settle(b);
    CHECK(runs == 3);
    CHECK(w.duplicates() == 1);
}

TEST_CASE("task_worker: a message without message_id or reply_to is not a task: rejected and counted",
          "[process_engine][task_worker]") {
    warren::broker b;
    b.declare_queue("work");
    int runs = 0;
    warren::task_worker<warren::broker> w(b, "work", [&](const warren::workflow_task&) { ++runs; });
    (void)b.publish("", warren::message{.routing_key = "work", .body = "hello"});
    settle(b);
    CHECK(runs == 0);
    CHECK(w.malformed() == 1);
    CHECK(b.queue_stats("work").dropped.rejected == 1);
}
