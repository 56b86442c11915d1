// process_engine on concurrent_broker: workers and the engine's event handling on
// dispatcher threads, instances started and queried from other threads at once (run
// under ThreadSanitizer).

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;

namespace {

warren::workflow_definition order_flow() {
    return {.name = "order",
            .steps = {warren::fork_step{.name = "both",
                                        .branches = {{.name = "stock", .steps = {warren::task_step{.name = "reserve", .queue = "reserve"}}},
                                                     {.name = "money",
                                                      .steps = {warren::task_step{.name = "charge",
                                                                                  .queue = "charge",
                                                                                  .retry = warren::retry_policy::fixed(3, 0ms)}}}}},
                      warren::decision_step{.name = "speed",
                                            .key = "express",
                                            .cases = {{.name = "yes", .steps = {warren::task_step{.name = "fly", .queue = "fly"}}}},
                                            .otherwise = {warren::task_step{.name = "truck", .queue = "truck"}}}}};
}

} // namespace

TEST_CASE("process_engine multithread: instances started from several threads all complete with workers on dispatcher "
          "threads, each flaky charge retried once",
          "[process_engine][multithread]") {
    warren_test::watchdog guard("process_engine multithread", 60s);
    warren::concurrent_broker b;
    warren::memory_store store;
    warren::process_engine engine(b, store);
    engine.register_workflow(order_flow());
    for (const char* q : {"reserve", "charge", "fly", "truck"}) b.declare_queue(q);
    std::atomic<int> reserved{0}, charges{0}, flown{0}, trucked{0};
    using worker = warren::task_worker<warren::concurrent_broker>;
    worker reserve(b, "reserve", [&](const warren::workflow_task&) { ++reserved; }, {.prefetch = 4});
    worker charge(
        b, "charge",
        [&](const warren::workflow_task& t) {
            ++charges;
            if (t.attempt == 1) throw std::runtime_error("flaky");
            return warren::workflow_data{{"charged", "yes"}};
        },
        {.prefetch = 4});
    worker fly(b, "fly", [&](const warren::workflow_task&) { ++flown; });
    worker truck(b, "truck", [&](const warren::workflow_task&) { ++trucked; });
    warren_test::dispatchers<warren::concurrent_broker> running(b, 3);

    constexpr int per_thread = 25;
    std::vector<std::string> ids[2];
    std::atomic<bool> starting{true};
    {
        std::vector<warren_test::joining_thread> starters;
        for (int t = 0; t < 2; ++t) {
            starters.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    ids[t].push_back(engine.start("order", {{"express", i % 2 == 0 ? "yes" : "no"}}));
                }
            });
        }
        // Queries and the timer loop meanwhile, from this thread.
        warren_test::joining_thread poller([&] {
            while (starting.load()) {
                (void)engine.poll();
                (void)engine.instances(warren::workflow_status::running);
                (void)engine.next_due();
                std::this_thread::sleep_for(100us);
            }
        });
        for (auto& s : starters) s.join();
        REQUIRE(warren_test::wait_until([&] {
            (void)engine.poll(); // retries are due at once: poll sends them
            return engine.instances(warren::workflow_status::completed).size() == 2 * per_thread;
        }));
        starting = false;
    }
    running.stop();
    CHECK(reserved == 2 * per_thread);
    CHECK(charges == 4 * per_thread); // each charge failed once, then succeeded
    CHECK(flown + trucked == 2 * per_thread);
    CHECK(flown == 2 * ((per_thread + 1) / 2)); // i even: express
    for (const auto& list : ids) {
        for (const auto& id : list) {
            const auto inst = engine.find(id);
            REQUIRE(inst);
            CHECK(inst->status == warren::workflow_status::completed);
            CHECK(inst->data.at("charged") == "yes");
            CHECK(inst->find_step("charge")->attempt == 2);
            CHECK(store.find(id) == inst);
        }
    }
    CHECK(engine.stale_events() == 0);
}

TEST_CASE("process_engine multithread: a timeout applied by poll on one thread races a completion on another without "
          "advancing the instance twice",
          "[process_engine][multithread][timeout]") {
    warren_test::watchdog guard("process_engine timeout race", 60s);
    warren::manual_clock time;
    warren::concurrent_broker b(time);
    warren::memory_store store;
    warren::process_engine engine(b, store);
    b.declare_queue("slow");
    b.declare_queue("next");
    engine.register_workflow({.name = "race",
                              .steps = {warren::task_step{.name = "slow",
                                                          .queue = "slow",
                                                          .retry = warren::retry_policy::fixed(2, 0ms),
                                                          .timeout = 1ms},
                                        warren::task_step{.name = "next", .queue = "next"}}});
    std::atomic<int> slow_runs{0}, next_runs{0};
    warren::task_worker<warren::concurrent_broker> slow(b, "slow", [&](const warren::workflow_task&) {
        ++slow_runs;
        std::this_thread::sleep_for(50us);
    });
    warren::task_worker<warren::concurrent_broker> next(b, "next", [&](const warren::workflow_task&) { ++next_runs; });
    warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
    constexpr int n = 40;
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) ids.push_back(engine.start("race"));
    {
        warren_test::joining_thread ticker([&] {
            for (int i = 0; i < 200; ++i) {
                time.advance(1ms);
                (void)engine.poll();
                std::this_thread::sleep_for(50us);
            }
        });
    }
    REQUIRE(warren_test::wait_until([&] {
        time.advance(1ms);
        (void)engine.poll();
        return engine.instances(warren::workflow_status::running).empty() && b.message_count("next") == 0 &&
               b.message_count("slow") == 0;
    }));
    running.stop();
    int completed = 0;
    for (const auto& id : ids) {
        const auto inst = engine.find(id);
        if (inst->status == warren::workflow_status::completed) {
            ++completed;
            CHECK(inst->find_step("next")->attempt == 1); // "next" published once however the race went
        } else {
            CHECK(inst->status == warren::workflow_status::failed); // both attempts timed out
        }
    }
    CHECK(next_runs == completed);
}
