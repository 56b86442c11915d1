// process_engine: retries with backoff (fixed, exponential, a cap, jitter), driven by
// poll() on a manual clock, so each test says exactly when each attempt goes out.

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/process_engine.hpp"

using namespace std::chrono_literals;
using warren_test::at;
using warren_test::count_events;
using warren_test::settle;

namespace {

/// A broker on a manual clock, an engine, and a worker for queue "pay" that fails its
/// first `failures` attempts.
struct flaky_setup {
    warren::manual_clock time;
    warren::broker b{time};
    warren::memory_store store;
    warren::process_engine<warren::broker> engine{b, store};
    std::vector<std::uint32_t> attempts;
    std::uint32_t failures;
    std::unique_ptr<warren::task_worker<warren::broker>> worker;

    flaky_setup(warren::retry_policy retry, std::uint32_t fail_first) : failures(fail_first) {
        b.declare_queue("pay");
        worker = std::make_unique<warren::task_worker<warren::broker>>(b, "pay", [this](const warren::workflow_task& t) {
            attempts.push_back(t.attempt);
            if (t.attempt <= failures) throw std::runtime_error("card declined");
            return warren::workflow_data{{"paid", "yes"}};
        });
        engine.register_workflow({.name = "pay", .steps = {warren::task_step{.name = "charge", .queue = "pay", .retry = retry}}});
    }
    [[nodiscard]] std::optional<warren::clock::time_point> retry_at(const std::string& id) const {
        return engine.find(id)->find_step("charge")->retry_at;
    }
};

} // namespace

TEST_CASE("process_engine retry: a fixed backoff sends attempt n+1 exactly one delay after attempt n failed, "
          "and max_attempts failures fail the instance",
          "[process_engine][retry]") {
    flaky_setup s(warren::retry_policy::fixed(3, 100ms), 99);
    const std::string id = s.engine.start("pay");
    settle(s.b);
    CHECK(s.attempts == std::vector<std::uint32_t>{1});
    CHECK(s.retry_at(id) == at(100ms));
    CHECK(s.engine.next_due() == at(100ms));
    CHECK(s.engine.find(id)->find_step("charge")->status == warren::step_status::waiting_retry);
    CHECK(s.engine.current_steps(id) == std::vector<std::string>{"charge"}); // waiting is where it is

    s.time.advance(99ms);
    CHECK(s.engine.poll() == 0); // 1 ms early: nothing goes out
    settle(s.b);
    CHECK(s.attempts.size() == 1);
    s.time.advance(1ms);
    CHECK(s.engine.poll() == 1);
    settle(s.b);
    CHECK(s.attempts == std::vector<std::uint32_t>{1, 2});
    CHECK(s.retry_at(id) == at(200ms)); // 100 ms after attempt 2 failed, at 100 ms

    s.time.advance(100ms);
    CHECK(s.engine.poll() == 1);
    settle(s.b);
    CHECK(s.attempts == std::vector<std::uint32_t>{1, 2, 3});
    CHECK(s.engine.status(id) == warren::workflow_status::failed);
    CHECK(s.engine.poll() == 0);
    CHECK(!s.engine.next_due());
    const auto inst = s.engine.find(id);
    CHECK(inst->error == "step 'charge' failed: card declined");
    CHECK(inst->failed_step == "charge");
    CHECK(count_events(inst->history, warren::history_event::task_failed) == 3);
    CHECK(count_events(inst->history, warren::history_event::retry_scheduled) == 2);
    CHECK(count_events(inst->history, warren::history_event::task_scheduled) == 3);
    CHECK(inst->find_step("charge")->attempt == 3);
}

TEST_CASE("process_engine retry: an exponential backoff doubles each delay up to its cap", "[process_engine][retry]") {
    flaky_setup s(warren::retry_policy::exponential(5, 100ms).capped_at(300ms), 99);
    const std::string id = s.engine.start("pay");
    settle(s.b);
    std::vector<warren::clock::duration> waits;
    for (int i = 0; i < 4; ++i) {
        const auto due = s.retry_at(id);
        REQUIRE(due);
        waits.push_back(*due - s.time.now());
        s.time.advance(*due - s.time.now());
        CHECK(s.engine.poll() == 1);
        settle(s.b);
    }
    CHECK(waits == std::vector<warren::clock::duration>{100ms, 200ms, 300ms, 300ms});
    CHECK(s.attempts == std::vector<std::uint32_t>{1, 2, 3, 4, 5});
    CHECK(s.engine.status(id) == warren::workflow_status::failed);
    CHECK(s.time.now() == at(900ms));
}

TEST_CASE("process_engine retry: a task that fails twice then succeeds completes on attempt 3",
          "[process_engine][retry]") {
    flaky_setup s(warren::retry_policy::fixed(4, 1s), 2);
    const std::string id = s.engine.start("pay");
    for (int i = 0; i < 3; ++i) {
        settle(s.b);
        s.time.advance(1s);
        (void)s.engine.poll();
    }
    settle(s.b);
    CHECK(s.attempts == std::vector<std::uint32_t>{1, 2, 3});
    CHECK(s.engine.status(id) == warren::workflow_status::completed);
    const auto inst = s.engine.find(id);
    CHECK(inst->data.at("paid") == "yes");
    CHECK(inst->find_step("charge")->attempt == 3);
    CHECK(inst->find_step("charge")->error == "card declined"); // the last failure stays visible
    CHECK(count_events(inst->history, warren::history_event::task_failed) == 2);
    // Timings: the step took from its first publish at 0 to its completion at 2 s.
    CHECK(inst->find_step("charge")->duration(s.time.now()) == 2s);
    CHECK(inst->duration(s.time.now()) == 2s);
}

TEST_CASE("process_engine retry: jitter takes up to its fraction off each delay, and the retry goes out exactly when due",
          "[process_engine][retry]") {
    flaky_setup s(warren::retry_policy::fixed(6, 1s).with_jitter(0.5), 99);
    std::vector<std::string> ids;
    for (int i = 0; i < 8; ++i) ids.push_back(s.engine.start("pay"));
    settle(s.b);
    std::vector<warren::clock::time_point> dues;
    for (const auto& id : ids) {
        const auto due = s.retry_at(id);
        REQUIRE(due);
        CHECK(*due >= at(500ms));
        CHECK(*due <= at(1s));
        dues.push_back(*due);
    }
    std::sort(dues.begin(), dues.end());
    CHECK(std::unique(dues.begin(), dues.end()) - dues.begin() > 1); // instances do not all wake at once
    // Exactly at the earliest due time, one poll sends at least one retry; a nanosecond
    // before, none.
    s.time.advance(dues.front() - s.time.now() - warren::clock::duration(1));
    CHECK(s.engine.poll() == 0);
    s.time.advance(warren::clock::duration(1));
    CHECK(s.engine.poll() >= 1);
}

TEST_CASE("process_engine retry: an attempt's delay follows retry_policy::delay_before_retry", "[process_engine][retry]") {
    const auto policy = warren::retry_policy::exponential(4, 10ms, 3.0);
    flaky_setup s(policy, 99);
    const std::string id = s.engine.start("pay");
    settle(s.b);
    CHECK(s.retry_at(id) == at(policy.delay_before_retry(1)));
    s.time.advance(10ms);
    (void)s.engine.poll();
    settle(s.b);
    CHECK(s.retry_at(id) == at(10ms + policy.delay_before_retry(2))); // 30 ms after 10 ms
}

TEST_CASE("process_engine retry: each retry is a new task id, so workers do not take it for a redelivery",
          "[process_engine][retry][dedup]") {
    flaky_setup s(warren::retry_policy::fixed(2, 1ms), 1);
    const std::string id = s.engine.start("pay");
    settle(s.b);
    s.time.advance(1ms);
    (void)s.engine.poll();
    settle(s.b);
    CHECK(s.engine.status(id) == warren::workflow_status::completed);
    CHECK(s.worker->duplicates() == 0);
    CHECK(s.worker->failed() == 1);
    CHECK(s.worker->completed() == 1);
    CHECK(s.engine.find(id)->find_step("charge")->task_id == id + ".charge.2");
}
