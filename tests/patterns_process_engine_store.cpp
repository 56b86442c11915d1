// process_engine over a file_store: an engine restarted mid-flow resumes each instance
// from its last step, publishing the task in flight again with the same message_id.

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/process_engine.hpp"

using namespace std::chrono_literals;
using warren_test::has_event;
using warren_test::settle;

namespace {

/// A path under the system's temporary directory where nothing is yet (a file_store
/// creates it), removed at the end.
struct missing_dir {
    std::filesystem::path path;
    missing_dir() {
        static int n = 0;
        path = std::filesystem::temp_directory_path() /
               ("warren_process_engine_" + std::to_string(reinterpret_cast<std::uintptr_t>(this)) + "_" +
                std::to_string(++n));
        std::filesystem::remove_all(path);
    }
    ~missing_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

warren::workflow_definition abc() {
    return {.name = "abc",
            .steps = {warren::task_step{.name = "a", .queue = "a"}, warren::task_step{.name = "b", .queue = "b"},
                      warren::task_step{.name = "c", .queue = "c"}}};
}

} // namespace

TEST_CASE("process_engine resume: an engine restarted over a file_store publishes the task in flight again, with the "
          "same message_id, and finishes the instance",
          "[process_engine][store][resume]") {
    missing_dir dir;
    std::string id;
    std::optional<std::string> b_task_id;
    {
        warren::broker b;
        warren::file_store store(dir.path);
        warren::process_engine engine(b, store);
        engine.register_workflow(abc());
        for (const char* q : {"a", "b", "c"}) b.declare_queue(q);
        warren::task_worker<warren::broker> a(b, "a", [](const warren::workflow_task&) {
            return warren::workflow_data{{"a", "1"}};
        });
        id = engine.start("abc", {{"order", "9"}});
        settle(b);
        auto in_flight = b.try_get("b"); // b is out when the process stops
        REQUIRE(in_flight);
        b_task_id = in_flight->properties().message_id;
        CHECK(std::filesystem::exists(store.path_of(id)));
    } // the process stops: broker, engine and the message to b are gone

    warren::broker b;
    warren::file_store store(dir.path);
    warren::process_engine engine(b, store);
    CHECK(engine.status(id) == warren::workflow_status::running); // loaded, visible before resume
    CHECK(engine.resume() == 0);                                  // its definition is not registered yet
    engine.register_workflow(abc());
    for (const char* q : {"a", "b", "c"}) b.declare_queue(q);
    CHECK(engine.resume() == 1);
    CHECK(engine.resume() == 0); // once
    auto again = b.try_get("b", warren::ack_mode::manual);
    REQUIRE(again);
    CHECK(again->properties().message_id == b_task_id);
    CHECK(warren::decode_data(again->body()) == warren::workflow_data{{"a", "1"}, {"order", "9"}});
    again->reject(true);
    std::vector<std::string> ran;
    warren::task_worker<warren::broker> wb(b, "b", [&](const warren::workflow_task& t) { ran.push_back(t.step); });
    warren::task_worker<warren::broker> wc(b, "c", [&](const warren::workflow_task& t) { ran.push_back(t.step); });
    settle(b);
    CHECK(ran == std::vector<std::string>{"b", "c"}); // a is not run again
    CHECK(engine.status(id) == warren::workflow_status::completed);
    CHECK(has_event(engine.history(id), warren::history_event::resumed));
    CHECK(store.find(id)->status == warren::workflow_status::completed);
    // New ids go on after the ones in the store.
    CHECK(engine.start("abc") != id);
}

TEST_CASE("process_engine resume: a worker that already did the re-published task answers from its memory instead of "
          "doing it twice",
          "[process_engine][store][resume][dedup]") {
    missing_dir dir;
    warren::broker b; // survives the engine, as a RabbitMQ would
    for (const char* q : {"a", "b"}) b.declare_queue(q);
    std::vector<std::string> ran;
    warren::task_worker<warren::broker> a(b, "a", [&](const warren::workflow_task& t) { ran.push_back(t.step); });
    std::string id;
    {
        warren::file_store store(dir.path);
        warren::process_engine engine(b, store);
        engine.register_workflow({.name = "ab", .steps = {warren::task_step{.name = "a", .queue = "a"},
                                                          warren::task_step{.name = "b", .queue = "b"}}});
        id = engine.start("ab");
        (void)b.dispatch(1); // the worker does a and publishes its event; the engine stops before reading it
    }
    CHECK(ran == std::vector<std::string>{"a"});
    warren::file_store store(dir.path);
    warren::process_engine engine(b, store);
    engine.register_workflow({.name = "ab", .steps = {warren::task_step{.name = "a", .queue = "a"},
                                                      warren::task_step{.name = "b", .queue = "b"}}});
    CHECK(engine.resume() == 1); // a goes out again, same task id
    settle(b);
    CHECK(ran == std::vector<std::string>{"a"}); // not run twice
    CHECK(a.duplicates() == 1);
    CHECK(engine.stale_events() == 1); // the waiting event and the replayed one: one counted
    CHECK(engine.current_steps(id) == std::vector<std::string>{"b"});
}

TEST_CASE("process_engine resume: a retry that was waiting goes out when due, on the same clock",
          "[process_engine][store][resume][retry]") {
    missing_dir dir;
    warren::manual_clock time;
    const warren::workflow_definition def{
        .name = "r", .steps = {warren::task_step{.name = "t", .queue = "t", .retry = warren::retry_policy::fixed(3, 100ms)}}};
    std::string id;
    {
        warren::broker b(time);
        b.declare_queue("t");
        warren::file_store store(dir.path);
        warren::process_engine engine(b, store);
        engine.register_workflow(def);
        warren::task_worker<warren::broker> w(b, "t", [](const warren::workflow_task&) { throw std::runtime_error("no"); });
        id = engine.start("r");
        settle(b);
        CHECK(engine.find(id)->find_step("t")->retry_at == warren::clock::time_point(100ms));
    }
    warren::broker b(time);
    b.declare_queue("t");
    warren::file_store store(dir.path);
    warren::process_engine engine(b, store);
    engine.register_workflow(def);
    CHECK(engine.resume() == 1);
    CHECK(b.message_count("t") == 0); // nothing in flight: the retry waits for its time
    CHECK(engine.next_due() == warren::clock::time_point(100ms));
    time.advance(100ms);
    CHECK(engine.poll() == 1);
    auto attempt = b.try_get("t");
    REQUIRE(attempt);
    CHECK(attempt->properties().message_id == id + ".t.2");
}

TEST_CASE("process_engine resume: a decision's recorded choice is kept, not made again", "[process_engine][store][resume]") {
    missing_dir dir;
    int decided = 0;
    auto def = [&decided] {
        return warren::workflow_definition{
            .name = "d",
            .steps = {warren::decision_step{.name = "which",
                                            .choose = [&decided](const warren::workflow_data&) {
                                                ++decided;
                                                return decided == 1 ? "left" : "right";
                                            },
                                            .cases = {{.name = "left", .steps = {warren::task_step{.name = "l", .queue = "l"}}},
                                                      {.name = "right", .steps = {warren::task_step{.name = "r", .queue = "r"}}}}}}};
    };
    std::string id;
    {
        warren::broker b;
        warren::file_store store(dir.path);
        warren::process_engine engine(b, store);
        engine.register_workflow(def());
        id = engine.start("d");
    }
    warren::broker b;
    b.declare_queue("l");
    b.declare_queue("r");
    warren::file_store store(dir.path);
    warren::process_engine engine(b, store);
    engine.register_workflow(def());
    CHECK(engine.resume() == 1);
    CHECK(decided == 1);
    CHECK(b.message_count("l") == 1);
    CHECK(b.message_count("r") == 0);
}

TEST_CASE("process_engine resume: an instance that was compensating publishes its compensation in flight again",
          "[process_engine][store][resume][compensation]") {
    missing_dir dir;
    const warren::workflow_definition def{
        .name = "c",
        .steps = {warren::task_step{.name = "a", .queue = "a", .compensation_queue = "undo_a"},
                  warren::task_step{.name = "b", .queue = "b"}}};
    std::string id;
    {
        warren::broker b;
        for (const char* q : {"a", "undo_a", "b"}) b.declare_queue(q);
        warren::file_store store(dir.path);
        warren::process_engine engine(b, store);
        engine.register_workflow(def);
        warren::task_worker<warren::broker> a(b, "a", [](const warren::workflow_task&) {});
        warren::task_worker<warren::broker> fail(b, "b", [](const warren::workflow_task&) { throw std::runtime_error("x"); });
        id = engine.start("c");
        settle(b);
        CHECK(engine.status(id) == warren::workflow_status::compensating); // undo_a has no worker
    }
    warren::broker b;
    b.declare_queue("undo_a");
    warren::file_store store(dir.path);
    warren::process_engine engine(b, store);
    engine.register_workflow(def);
    CHECK(engine.instances(warren::workflow_status::compensating) == std::vector<std::string>{id});
    CHECK(engine.resume() == 1);
    warren::task_worker<warren::broker> undo(b, "undo_a", [](const warren::workflow_task& t) { CHECK(t.compensation); });
    settle(b);
    CHECK(engine.status(id) == warren::workflow_status::failed);
    CHECK(engine.find(id)->find_step("a")->status == warren::step_status::compensated);
}

TEST_CASE("process_engine store: an engine over a memory_store saves every change before publishing",
          "[process_engine][store]") {
    warren::broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("a");
    // The task's consumer runs inside the publish: the store already holds the instance.
    std::optional<warren::workflow_status> saved_when_published;
    auto watcher = b.subscribe(
        "a", [&](warren::delivery& d) { saved_when_published = store.find(*d.properties().correlation_id)->status; },
        {.synchronous = true});
    engine.register_workflow({.name = "one", .steps = {warren::task_step{.name = "a", .queue = "a"}}});
    const std::string id = engine.start("one");
    CHECK(saved_when_published == warren::workflow_status::running);
    CHECK(store.find(id)->find_step("a")->status == warren::step_status::in_progress);
}
