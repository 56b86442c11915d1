// Sagas on concurrent_broker (include/warren/patterns/saga.hpp, saga_choreography.hpp):
// sagas started from several threads while participants are served by dispatcher threads,
// time applied by another thread, and the choreographed flow with dispatcher threads.
// Runs under ThreadSanitizer.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <warren/patterns/saga.hpp>
#include <warren/patterns/saga_participant.hpp>
#include <warren/patterns/saga_choreography.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;

namespace {

using broker_t = warren::concurrent_broker;
using op = warren::saga_operation<>;
using outcome = warren::saga_outcome<>;

/// A store guarded by its own mutex: participants' handlers run on dispatcher threads.
struct stock_store {
    std::mutex mutex;
    int reserved = 0;
    int released = 0;
    void add(int& counter) {
        std::lock_guard guard(mutex);
        ++counter;
    }
    int read(const int& counter) {
        std::lock_guard guard(mutex);
        return counter;
    }
};

} // namespace

TEST_CASE("saga multithread: sagas started from two threads, participants on dispatcher threads, all end consistent",
          "[saga][multithread]") {
    const warren_test::watchdog guard("sagas on concurrent_broker", 60s);
    broker_t b;
    b.declare_queue("inventory");
    b.declare_queue("payment");
    stock_store stock;
    warren::saga_participant<broker_t> inventory(
        b, "inventory",
        [&](const broker_t::delivery& d) {
            stock.add(stock.reserved);
            return "reserved for " + d.body();
        },
        [&](const broker_t::delivery&) {
            stock.add(stock.released);
            return std::string("released");
        });
    warren::saga_participant<broker_t> payment(
        b, "payment",
        [](const broker_t::delivery& d) -> outcome {
            // Odd order numbers are declined.
            if (std::stoi(d.body()) % 2 == 1) return outcome::failure("card declined");
            return std::string("paid");
        },
        [](const broker_t::delivery&) { return std::string("refunded"); });

    warren::saga_orchestrator<broker_t> sagas(b);
    std::atomic<int> completed_hooks{0};
    std::atomic<int> rolled_back_hooks{0};
    warren::saga_definition<> def("order");
    def.step("inventory", op::request("", "inventory", 30s), op::request("", "inventory", 30s))
        .step("payment", op::request("", "payment", 30s))
        .step("record", op::local([](const warren::saga_step_context<>& c) { return "recorded " + c.saga_id; }));
    def.hooks.completed = [&](const warren::saga_result<>&) { ++completed_hooks; };
    def.hooks.rolled_back = [&](const warren::saga_result<>&) { ++rolled_back_hooks; };

    constexpr int per_thread = 40;
    std::atomic<int> started{0};
    {
        warren_test::dispatchers<broker_t> run(b, 2);
        std::vector<warren_test::joining_thread> starters;
        for (int t = 0; t < 2; ++t) {
            starters.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    const int n = t * per_thread + i;
                    if (sagas.start(def, "order-" + std::to_string(n), std::to_string(n))) ++started;
                    (void)sagas.result("order-" + std::to_string(n / 2)); // queries meanwhile
                }
            });
        }
        for (auto& s : starters) s.join();
        REQUIRE(warren_test::wait_until([&] { return started.load() == 2 * per_thread && sagas.active() == 0; }));
        run.stop();
    }
    int completed = 0;
    int rolled_back = 0;
    for (int n = 0; n < 2 * per_thread; ++n) {
        const auto r = sagas.result("order-" + std::to_string(n));
        REQUIRE(r);
        if (n % 2 == 0) {
            CHECK(r->status == warren::saga_status::completed);
            ++completed;
        } else {
            CHECK(r->status == warren::saga_status::rolled_back);
            CHECK(r->compensated == std::vector<std::string>{"inventory"});
            ++rolled_back;
        }
    }
    CHECK(completed_hooks.load() == completed);
    CHECK(rolled_back_hooks.load() == rolled_back);
    CHECK(stock.read(stock.reserved) == 2 * per_thread);
    CHECK(stock.read(stock.released) == rolled_back);
    CHECK(inventory.duplicates() == 0);
}

TEST_CASE("saga multithread: a poller thread applies timeouts and retries on a manual clock another thread advances",
          "[saga][multithread]") {
    const warren_test::watchdog guard("saga timeouts across threads", 60s);
    warren::manual_clock time;
    broker_t b(time);
    b.declare_queue("inventory");
    b.declare_queue("nobody");
    warren::saga_participant<broker_t> inventory(
        b, "inventory", [](const broker_t::delivery&) { return std::string("reserved"); },
        [](const broker_t::delivery&) { return std::string("released"); });
    warren::saga_orchestrator<broker_t> sagas(b);
    warren::saga_definition<> def("timeout");
    // The clock runs fast (100 ms a tick): inventory's timeout is long enough never to pass.
    def.step("inventory", op::request("", "inventory", 24h), op::request("", "inventory", 24h))
        .step("payment", op::request("", "nobody", 1s, warren::retry_policy::fixed(3, 500ms)));

    std::atomic<bool> stop{false};
    {
        warren_test::dispatchers<broker_t> run(b, 1);
        warren_test::joining_thread poller([&] {
            while (!stop.load()) {
                (void)sagas.poll();
                std::this_thread::sleep_for(100us);
            }
        });
        warren_test::joining_thread ticker([&] {
            while (!stop.load()) {
                time.advance(100ms);
                std::this_thread::sleep_for(200us);
            }
        });
        for (int i = 0; i < 10; ++i) REQUIRE(sagas.start(def, "s" + std::to_string(i), "x"));
        REQUIRE(warren_test::wait_until([&] { return sagas.active() == 0; }));
        stop = true;
    }
    for (int i = 0; i < 10; ++i) {
        const auto r = sagas.result("s" + std::to_string(i));
        REQUIRE(r);
        CHECK(r->status == warren::saga_status::rolled_back);
        CHECK(r->error->attempts == 3);
        CHECK(r->compensated == std::vector<std::string>{"inventory"});
    }
    CHECK(sagas.timeouts() == 30);
}

TEST_CASE("saga multithread: choreographed sagas on dispatcher threads compensate each participant once",
          "[saga][multithread][choreography]") {
    const warren_test::watchdog guard("choreography on concurrent_broker", 60s);
    broker_t b;
    std::atomic<int> refunds{0};
    std::atomic<int> releases{0};
    using participant = warren::saga_choreography_participant<broker_t>;
    using role = warren::saga_role<>;
    participant inventory(b, "shop",
                          role{.name = "inventory",
                               .on = "order.created",
                               .action = [](const warren::saga_event<>& e) -> outcome { return e.body; },
                               .succeeded = "inventory.reserved",
                               .failed = "inventory.failed",
                               .compensate_on = {"payment.failed", "shipment.failed"},
                               .compensation = [&](const warren::saga_event<>&, const std::string&) { ++releases; }});
    participant payment(b, "shop",
                        role{.name = "payment",
                             .on = "inventory.reserved",
                             .action = [](const warren::saga_event<>& e) -> outcome { return e.body; },
                             .succeeded = "payment.completed",
                             .failed = "payment.failed",
                             .compensate_on = {"shipment.failed"},
                             .compensation = [&](const warren::saga_event<>&, const std::string&) { ++refunds; }});
    participant shipping(b, "shop",
                         role{.name = "shipping",
                              .on = "payment.completed",
                              .action = [](const warren::saga_event<>& e) -> outcome {
                                  if (std::stoi(e.body) % 2 == 1) return outcome::failure("no courier");
                                  return e.body;
                              },
                              .succeeded = "shipment.completed",
                              .failed = "shipment.failed"});
    constexpr int count = 40;
    {
        warren_test::dispatchers<broker_t> run(b, 2);
        std::vector<warren_test::joining_thread> publishers;
        for (int t = 0; t < 2; ++t) {
            publishers.emplace_back([&, t] {
                for (int i = t; i < count; i += 2) {
                    const std::string id = "o" + std::to_string(i);
                    (void)warren::publish_saga_event(b, "shop", id, "order.created", std::to_string(i));
                    (void)warren::publish_saga_event(b, "shop", id, "order.created", std::to_string(i)); // redelivery
                }
            });
        }
        for (auto& p : publishers) p.join();
        REQUIRE(warren_test::wait_until([&] {
            return shipping.actions() == count && refunds.load() == count / 2 && releases.load() == count / 2;
        }));
        run.stop();
    }
    CHECK(inventory.actions() == count);
    CHECK(inventory.duplicates() == count);
    CHECK(refunds.load() == count / 2);
    CHECK(releases.load() == count / 2);
    for (int i = 0; i < count; ++i) {
        const std::string id = "o" + std::to_string(i);
        CHECK(payment.state(id) ==
              (i % 2 == 1 ? warren::saga_role_state::compensated : warren::saga_role_state::done));
    }
}
