// The orchestrated saga (include/warren/patterns/saga.hpp) on the single-threaded broker
// and a manual clock: reverse compensation order, compensations fed their action's result
// and registered only once it succeeded, compensation after a timeout, retry and backoff
// times, failed compensations reported with the original error kept, the hooks' order, the
// wire convention, and participants deduplicating a retried request.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/rpc_server.hpp>
#include <warren/patterns/saga.hpp>
#include <warren/patterns/saga_participant.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using op = warren::saga_operation<>;
using participant = warren::saga_participant<warren::broker>;
using orchestrator = warren::saga_orchestrator<warren::broker>;

/// Milliseconds since the manual clock started.
long long ms(warren::clock::time_point t) {
    return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count());
}

/// A broker on a manual clock, a coordinator, and a log every participant writes to.
struct world {
    warren::manual_clock time;
    warren::broker broker{time};
    orchestrator sagas{broker};
    std::vector<std::string> log;
    std::vector<std::unique_ptr<participant>> services;

    /// A participant on queue `name` whose action logs "do <name>" and returns
    /// "<name>-result", unless `fail` (then it answers a failure "<name> refused"); its
    /// compensation logs "undo <name> (<body>)".
    participant& service(const std::string& name, bool fail = false) {
        broker.declare_queue(name);
        services.push_back(std::make_unique<participant>(
            broker, name,
            [this, name, fail](const warren::delivery&) -> warren::saga_outcome<> {
                log.push_back("do " + name);
                if (fail) return warren::saga_outcome<>::failure(name + " refused");
                return name + "-result";
            },
            [this, name](const warren::delivery& d) {
                log.push_back("undo " + name + " (" + d.body() + ")");
                return std::string("undone");
            }));
        return *services.back();
    }

    /// Dispatches and applies time until nothing is left to do: time jumps to each timer.
    void settle() {
        for (;;) {
            while (broker.dispatch() != 0) {
            }
            const auto due = sagas.next_due();
            if (!due) return;
            if (*due > time.now()) time.advance(*due - time.now());
            (void)sagas.poll();
        }
    }
};

warren::saga_definition<> of_services(const std::vector<std::string>& names) {
    warren::saga_definition<> def("test");
    for (const auto& n : names) def.step(n, op::request("", n, 1s), op::request("", n, 1s));
    return def;
}

} // namespace

TEST_CASE("saga: compensations run in the reverse order of their actions", "[saga]") {
    world w;
    w.service("order");
    w.service("inventory");
    w.service("shipping");
    w.service("payment", true);
    const auto def = of_services({"order", "inventory", "shipping", "payment"});
    REQUIRE(w.sagas.start(def, "s1", "input"));
    w.settle();

    const auto r = w.sagas.result("s1");
    REQUIRE(r);
    CHECK(r->status == warren::saga_status::rolled_back);
    CHECK(w.log == std::vector<std::string>{"do order", "do inventory", "do shipping", "do payment",
                                            "undo shipping (shipping-result)", "undo inventory (inventory-result)",
                                            "undo order (order-result)"});
    CHECK(r->compensated == std::vector<std::string>{"shipping", "inventory", "order"});
    REQUIRE(r->error);
    CHECK(r->error->step == "payment");
    CHECK(r->error->what == "payment refused");
    CHECK(w.sagas.active() == 0);
}

TEST_CASE("saga: a compensation receives the result of its own action", "[saga]") {
    world w;
    SECTION("a request compensation gets the action's result as its body") {
        w.broker.declare_queue("inventory");
        participant inventory(
            w.broker, "inventory", [](const warren::delivery& d) { return "reservation-for-" + d.body(); },
            [&](const warren::delivery& d) {
                w.log.push_back("release " + d.body());
                return std::string("released");
            });
        warren::saga_definition<> def("reserve-then-fail");
        def.step("reserve", op::request("", "inventory", 1s), op::request("", "inventory", 1s))
            .step("charge", op::local([](const warren::saga_step_context<>&) {
                      return warren::saga_outcome<>::failure("card declined");
                  }));
        REQUIRE(w.sagas.start(def, "s1", "2 books"));
        w.settle();
        CHECK(w.log == std::vector<std::string>{"release reservation-for-2 books"});
        CHECK(w.sagas.status("s1") == warren::saga_status::rolled_back);
    }
    SECTION("a local compensation sees the action's result in its context") {
        std::vector<std::string> seen;
        warren::saga_definition<> def("local");
        def.step("a", op::local([](const warren::saga_step_context<>& c) { return "made by " + c.step; }),
                 op::local([&](const warren::saga_step_context<>& c) {
                     REQUIRE(c.action_result != nullptr);
                     seen.push_back(*c.action_result);
                     CHECK(c.phase == warren::saga_phase::compensation);
                 }))
            .step("b", op::local([](const warren::saga_step_context<>& c) {
                      CHECK(c.action_result == nullptr);
                      REQUIRE(c.result_of("a") != nullptr);
                      CHECK(*c.result_of("a") == "made by a");
                      return warren::saga_outcome<>::failure("no");
                  }));
        REQUIRE(w.sagas.start(def, "s1", ""));
        CHECK(seen == std::vector<std::string>{"made by a"});
        CHECK(w.sagas.status("s1") == warren::saga_status::rolled_back);
    }
}

TEST_CASE("saga: no compensation is registered for a step whose action failed", "[saga]") {
    world w;
    w.service("inventory");
    w.service("payment", true); // its compensation would log "undo payment"
    w.service("shipping");
    const auto def = of_services({"inventory", "payment", "shipping"});
    REQUIRE(w.sagas.start(def, "s1", "x"));
    w.settle();
    CHECK(w.log == std::vector<std::string>{"do inventory", "do payment", "undo inventory (inventory-result)"});
    const auto r = w.sagas.result("s1");
    REQUIRE(r);
    REQUIRE(r->results.size() == 1);
    CHECK(r->results[0].first == "inventory");
    CHECK(r->compensated == std::vector<std::string>{"inventory"});
}

TEST_CASE("saga: a participant that never replies times out, then the completed steps are compensated", "[saga]") {
    world w;
    w.service("inventory");
    w.broker.declare_queue("payment"); // nobody consumes it
    warren::saga_definition<> def("timeout");
    def.step("inventory", op::request("", "inventory", 1s), op::request("", "inventory", 1s))
        .step("payment", op::request("", "payment", 2s), op::request("", "payment", 2s));
    REQUIRE(w.sagas.start(def, "s1", "x"));
    while (w.broker.dispatch() != 0) {
    }
    CHECK(w.sagas.status("s1") == warren::saga_status::running);
    REQUIRE(w.sagas.next_due());
    CHECK(ms(*w.sagas.next_due()) == 2000);

    w.time.advance(1999ms);
    CHECK(w.sagas.poll() == 0);
    CHECK(w.sagas.status("s1") == warren::saga_status::running);
    CHECK(w.log == std::vector<std::string>{"do inventory"});

    w.time.advance(1ms);
    CHECK(w.sagas.poll() == 1);
    CHECK(w.sagas.status("s1") == warren::saga_status::compensating);
    while (w.broker.dispatch() != 0) {
    }
    CHECK(w.log == std::vector<std::string>{"do inventory", "undo inventory (inventory-result)"});
    const auto r = w.sagas.result("s1");
    REQUIRE(r);
    CHECK(r->status == warren::saga_status::rolled_back);
    REQUIRE(r->error);
    CHECK(r->error->step == "payment");
    CHECK(r->error->what == "no reply to 's1/payment' within 2000 ms");
    CHECK(w.sagas.timeouts() == 1);

    SECTION("a reply that comes after the timeout is late and changes nothing") {
        auto request = w.broker.try_get("payment");
        REQUIRE(request);
        warren::message reply{.routing_key = w.sagas.reply_queue(), .body = "too late"};
        reply.properties.correlation_id = request->properties().correlation_id;
        (void)w.broker.publish("", std::move(reply));
        while (w.broker.dispatch() != 0) {
        }
        CHECK(w.sagas.late_replies() == 1);
        CHECK(w.sagas.status("s1") == warren::saga_status::rolled_back);
    }
}

TEST_CASE("saga: retries follow the step's backoff, each attempt at its exact time on a manual clock", "[saga]") {
    world w;
    SECTION("a local action, exponential backoff 100 ms x2: attempts at 0, 100, 300, 700 ms") {
        int failures_left = 3;
        warren::saga_definition<> def("backoff");
        def.step("flaky", op::local(
                              [&](const warren::saga_step_context<>& c) -> warren::saga_outcome<> {
                                  if (failures_left-- > 0) return warren::saga_outcome<>::transient_failure("busy");
                                  return "ok at attempt " + std::to_string(c.attempt);
                              },
                              warren::retry_policy::exponential(4, 100ms)));
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        CHECK(r->status == warren::saga_status::completed);
        REQUIRE(r->attempts.size() == 4);
        std::vector<long long> at;
        for (const auto& a : r->attempts) at.push_back(ms(a.at));
        CHECK(at == std::vector<long long>{0, 100, 300, 700});
        CHECK(r->attempts[3].number == 4);
        CHECK(r->results[0].second == "ok at attempt 4");
    }
    SECTION("a request to nobody, 1 s timeout, fixed 500 ms: attempts at 0, 1.5 s, 3 s; the step fails at 4 s") {
        w.broker.declare_queue("void");
        warren::saga_definition<> def("timeouts");
        def.step("call", op::request("", "void", 1s, warren::retry_policy::fixed(3, 500ms)));
        REQUIRE(w.sagas.start(def, "s1", ""));
        std::vector<long long> due;
        while (auto next = w.sagas.next_due()) {
            due.push_back(ms(*next));
            w.time.advance(*next - w.time.now());
            (void)w.sagas.poll();
        }
        CHECK(due == std::vector<long long>{1000, 1500, 2500, 3000, 4000}); // timeout, retry, timeout, retry, timeout
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        std::vector<long long> at;
        for (const auto& a : r->attempts) at.push_back(ms(a.at));
        CHECK(at == std::vector<long long>{0, 1500, 3000});
        CHECK(r->status == warren::saga_status::rolled_back); // nothing to compensate
        REQUIRE(r->error);
        CHECK(r->error->attempts == 3);
        CHECK(w.sagas.timeouts() == 3);
        CHECK(w.broker.message_count("void") == 3); // the same request, sent three times
        for (int i = 1; i <= 3; ++i) {
            auto request = w.broker.try_get("void");
            REQUIRE(request);
            CHECK(request->properties().message_id == "s1/call");
            const auto* attempt = request->properties().headers.find(warren::saga_wire::attempt_header);
            REQUIRE(attempt != nullptr);
            CHECK(*attempt->get_if<std::int64_t>() == i);
        }
    }
    SECTION("a jittered policy waits no longer than the plain one and no less than its jitter allows") {
        int failures_left = 1;
        warren::saga_definition<> def("jitter");
        def.step("flaky",
                 op::local(
                     [&](const warren::saga_step_context<>&) -> warren::saga_outcome<> {
                         if (failures_left-- > 0) throw std::runtime_error("busy");
                         return std::string("ok");
                     },
                     warren::retry_policy::fixed(2, 1000ms).with_jitter(0.5)));
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        REQUIRE(r->attempts.size() == 2);
        CHECK(ms(r->attempts[1].at) >= 500);
        CHECK(ms(r->attempts[1].at) <= 1000);
    }
}

TEST_CASE("saga: a failed compensation is retried by its policy, then reported with the original error kept",
          "[saga]") {
    world w;
    w.service("order");
    int refund_failures_left = 0;
    int refund_attempts = 0;
    warren::saga_definition<> def("refund");
    def.step("order", op::request("", "order", 1s), op::request("", "order", 1s))
        .step("charge", op::local([](const warren::saga_step_context<>&) { return std::string("charged"); }),
              op::local(
                  [&](const warren::saga_step_context<>&) -> warren::saga_outcome<> {
                      ++refund_attempts;
                      if (refund_failures_left-- > 0) throw std::runtime_error("bank unavailable");
                      return "refunded";
                  },
                  warren::retry_policy::fixed(3, 1s)))
        .step("ship", op::local([](const warren::saga_step_context<>&) {
                  return warren::saga_outcome<>::failure("address unknown");
              }));

    SECTION("it fails for good: the saga fails, the earlier steps are still compensated") {
        refund_failures_left = 100;
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        CHECK(r->status == warren::saga_status::failed);
        CHECK(refund_attempts == 3);
        REQUIRE(r->error);
        CHECK(r->error->step == "ship");
        CHECK(r->error->what == "address unknown");
        REQUIRE(r->compensation_failures.size() == 1);
        CHECK(r->compensation_failures[0].step == "charge");
        CHECK(r->compensation_failures[0].phase == warren::saga_phase::compensation);
        CHECK(r->compensation_failures[0].what == "bank unavailable");
        CHECK(r->compensation_failures[0].attempts == 3);
        CHECK(r->compensated == std::vector<std::string>{"order"});
        CHECK(w.log == std::vector<std::string>{"do order", "undo order (order-result)"});
        std::vector<long long> refund_at;
        for (const auto& a : r->attempts) {
            if (a.step == "charge" && a.phase == warren::saga_phase::compensation) refund_at.push_back(ms(a.at));
        }
        CHECK(refund_at == std::vector<long long>{0, 1000, 2000});
    }
    SECTION("it succeeds on a retry: the saga is rolled back") {
        refund_failures_left = 1;
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        CHECK(r->status == warren::saga_status::rolled_back);
        CHECK(refund_attempts == 2);
        CHECK(r->compensation_failures.empty());
        CHECK(r->compensated == std::vector<std::string>{"charge", "order"});
    }
}

TEST_CASE("saga: the hooks run in order: started, step_completed, compensating, step_compensated, then the end",
          "[saga]") {
    world w;
    std::vector<std::string> hooks;
    auto def = of_services({"a", "b"});
    def.hooks.started = [&](const std::string& id) { hooks.push_back("started " + id); };
    def.hooks.step_completed = [&](const std::string&, const std::string& step, const std::string& result) {
        hooks.push_back("completed " + step + " = " + result);
    };
    def.hooks.compensating = [&](const std::string&, const warren::saga_failure& e) {
        hooks.push_back("compensating after " + e.step + ": " + e.what);
    };
    def.hooks.step_compensated = [&](const std::string&, const std::string& step) {
        hooks.push_back("compensated " + step);
    };
    def.hooks.completed = [&](const warren::saga_result<>& r) {
        hooks.push_back("saga completed with " + std::to_string(r.results.size()) + " results");
    };
    def.hooks.rolled_back = [&](const warren::saga_result<>& r) { hooks.push_back("rolled back: " + r.error->what); };
    def.hooks.failed = [&](const warren::saga_result<>& r) { hooks.push_back("failed: " + r.error->what); };

    SECTION("completed") {
        w.service("a");
        w.service("b");
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        CHECK(hooks == std::vector<std::string>{"started s1", "completed a = a-result", "completed b = b-result",
                                                "saga completed with 2 results"});
    }
    SECTION("rolled back") {
        w.service("a");
        w.service("b", true);
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        CHECK(hooks == std::vector<std::string>{"started s1", "completed a = a-result",
                                                "compensating after b: b refused", "compensated a",
                                                "rolled back: b refused"});
    }
    SECTION("failed") {
        w.broker.declare_queue("a");
        participant a(
            w.broker, "a", [](const warren::delivery&) { return std::string("a-result"); },
            [](const warren::delivery&) { return warren::saga_outcome<>::failure("cannot undo"); });
        w.service("b", true);
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        CHECK(hooks == std::vector<std::string>{"started s1", "completed a = a-result",
                                                "compensating after b: b refused", "failed: b refused"});
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        REQUIRE(r->compensation_failures.size() == 1);
        CHECK(r->compensation_failures[0].what == "cannot undo");
    }
}

TEST_CASE("saga: requests carry message_id saga/step and correlation_id the saga id, replies return to the coordinator",
          "[saga]") {
    world w;
    w.broker.declare_queue("spy");
    std::vector<warren::properties> seen;
    auto spy = w.broker.subscribe("spy", [&](warren::delivery& d) {
        seen.push_back(d.properties());
        warren::message reply{.routing_key = d.properties().reply_to.value_or(""), .body = "ok"};
        reply.properties.correlation_id = d.properties().correlation_id;
        if (warren::saga_wire::phase_of(d.properties()) == warren::saga_phase::action &&
            d.properties().headers.find_string(warren::saga_wire::step_header) != nullptr &&
            *d.properties().headers.find_string(warren::saga_wire::step_header) == "second") {
            reply.properties.headers.set(warren::saga_wire::error_header, "no");
        }
        (void)w.broker.publish("", std::move(reply));
    });
    warren::saga_definition<> def("spied");
    def.step("first", op::request("", "spy", 1s), op::request("", "spy", 1s))
        .step("second", op::request("", "spy", 1s));
    REQUIRE(w.sagas.start(def, "order-7", "in"));
    w.settle();
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].message_id == "order-7/first");
    CHECK(seen[1].message_id == "order-7/second");
    CHECK(seen[2].message_id == "order-7/first/compensate");
    for (const auto& p : seen) {
        CHECK(p.correlation_id == "order-7");
        CHECK(p.reply_to == w.sagas.reply_queue());
        REQUIRE(p.headers.find_string(warren::saga_wire::id_header) != nullptr);
        CHECK(*p.headers.find_string(warren::saga_wire::id_header) == "order-7");
    }
    CHECK(*seen[2].headers.find_string(warren::saga_wire::phase_header) == "compensation");
    const auto r = w.sagas.result("order-7");
    REQUIRE(r);
    CHECK(r->status == warren::saga_status::rolled_back);
    CHECK(r->error->what == "no");
}

TEST_CASE("saga: participants deduplicate a retried request (same message_id): the local transaction runs once",
          "[saga][saga_participant]") {
    world w;
    int charges = 0;
    w.broker.declare_queue("payment");
    participant payment(
        w.broker, "payment",
        [&](const warren::delivery& d) {
            ++charges;
            return "charged " + d.body();
        },
        [](const warren::delivery&) { return std::string("refunded"); });

    SECTION("a retry after a timeout is answered from memory, and the late first reply is dropped") {
        warren::saga_definition<> def("pay");
        def.step("charge", op::request("", "payment", 1s, warren::retry_policy::fixed(2, 0ms)));
        REQUIRE(w.sagas.start(def, "s1", "10 EUR"));
        // The participant is slow: nothing is dispatched before the timeout.
        w.time.advance(1s);
        (void)w.sagas.poll(); // attempt 1 times out; attempt 2 is sent at once (no delay)
        CHECK(w.sagas.result("s1")->attempts.size() == 2); // the same request, sent twice
        while (w.broker.dispatch() != 0) {
        }
        CHECK(charges == 1);
        CHECK(payment.handled() == 1);
        CHECK(payment.duplicates() == 1);
        CHECK(payment.replies() == 2);
        const auto r = w.sagas.result("s1");
        REQUIRE(r);
        CHECK(r->status == warren::saga_status::completed);
        CHECK(r->results[0].second == "charged 10 EUR");
        CHECK(w.sagas.late_replies() == 1);
    }
    SECTION("a redelivered request with the same message_id is not charged twice") {
        for (int i = 0; i < 3; ++i) {
            warren::message request{.routing_key = "payment", .body = "5 EUR"};
            request.properties.message_id = "s9/charge";
            (void)w.broker.publish("", std::move(request));
        }
        while (w.broker.dispatch() != 0) {
        }
        CHECK(charges == 1);
        CHECK(payment.duplicates() == 2);
    }
    SECTION("a handler that throws is not remembered: the retry runs it again") {
        w.broker.declare_queue("flaky");
        int tries = 0;
        participant flaky(
            w.broker, "flaky",
            [&](const warren::delivery&) -> warren::saga_outcome<> {
                if (++tries == 1) throw std::runtime_error("database locked");
                return "done";
            },
            [](const warren::delivery&) { return std::string(); });
        warren::saga_definition<> def("flaky");
        def.step("work", op::request("", "flaky", 1s, warren::retry_policy::fixed(2, 100ms)));
        REQUIRE(w.sagas.start(def, "s1", ""));
        w.settle();
        CHECK(tries == 2);
        CHECK(flaky.duplicates() == 0);
        CHECK(w.sagas.status("s1") == warren::saga_status::completed);
    }
    SECTION("a failure answer ends the step at once; with retry_answers the retries get the remembered answer") {
        w.broker.declare_queue("strict");
        int tries = 0;
        participant strict(
            w.broker, "strict",
            [&](const warren::delivery&) {
                ++tries;
                return warren::saga_outcome<>::failure("insufficient funds");
            },
            [](const warren::delivery&) { return std::string(); });
        auto work = op::request("", "strict", 1s, warren::retry_policy::fixed(3, 100ms));
        warren::saga_definition<> once("strict");
        once.step("work", work);
        REQUIRE(w.sagas.start(once, "s1", ""));
        w.settle();
        CHECK(w.sagas.result("s1")->error->attempts == 1);

        work.retry_answers = true;
        warren::saga_definition<> again("strict-again");
        again.step("work", work);
        REQUIRE(w.sagas.start(again, "s2", ""));
        w.settle();
        CHECK(tries == 2); // once per saga: s2's retries are answered from memory
        CHECK(strict.duplicates() == 2);
        const auto r = w.sagas.result("s2");
        REQUIRE(r);
        CHECK(r->error->what == "insufficient funds");
        CHECK(r->error->attempts == 3);
    }
}

TEST_CASE("saga: a plain rpc_server can be a participant, failing with an x-error header (not retried)", "[saga]") {
    world w;
    w.broker.declare_queue("legacy");
    warren::rpc_server<warren::broker> legacy(w.broker, "legacy", [](const warren::delivery& d) {
        warren::message reply;
        if (d.body() == "bad") {
            reply.properties.headers.set(warren::saga_wire::error_header, "legacy says no");
        } else {
            reply.body = "legacy ok";
        }
        return reply;
    });
    warren::saga_definition<> def("legacy");
    def.step("call", op::request("", "legacy", 1s, warren::retry_policy::fixed(3, 1ms)));
    REQUIRE(w.sagas.start(def, "good", "fine"));
    REQUIRE(w.sagas.start(def, "bad", "bad"));
    w.settle();
    CHECK(w.sagas.status("good") == warren::saga_status::completed);
    CHECK(w.sagas.result("good")->results[0].second == "legacy ok");
    CHECK(w.sagas.status("bad") == warren::saga_status::rolled_back);
    CHECK(w.sagas.result("bad")->error->what == "legacy says no");
    CHECK(w.sagas.result("bad")->error->attempts == 1);
}

TEST_CASE("saga: an unroutable request is a failed attempt, retried by the policy", "[saga]") {
    world w;
    warren::saga_definition<> def("nowhere");
    def.step("call", op::request("", "no-such-queue", 1s, warren::retry_policy::fixed(2, 10ms)));
    REQUIRE(w.sagas.start(def, "s1", ""));
    w.settle();
    const auto r = w.sagas.result("s1");
    REQUIRE(r);
    CHECK(r->attempts.size() == 2);
    CHECK(r->error->what == "request to exchange '' with routing key 'no-such-queue' was unroutable");
    CHECK(w.sagas.timeouts() == 0);
}

TEST_CASE("saga: starting a known id does nothing, and a finished saga can be forgotten, then started again", "[saga]") {
    world w;
    int runs = 0;
    warren::saga_definition<> def("once");
    def.step("a", op::local([&](const warren::saga_step_context<>&) { ++runs; }));
    CHECK(w.sagas.start(def, "s1", ""));
    CHECK_FALSE(w.sagas.start(def, "s1", ""));
    CHECK(runs == 1);
    CHECK_FALSE(w.sagas.status("unknown"));
    CHECK(w.sagas.forget("s1"));
    CHECK_FALSE(w.sagas.result("s1"));
    CHECK(w.sagas.start(def, "s1", ""));
    CHECK(runs == 2);
}

TEST_CASE("saga: a synchronous participant's reply is handled after the request's publish returns", "[saga]") {
    world w;
    w.broker.declare_queue("sync");
    auto server = w.broker.subscribe(
        "sync",
        [&](warren::delivery& d) {
            warren::message reply{.routing_key = d.properties().reply_to.value_or(""), .body = "r:" + d.body()};
            reply.properties.correlation_id = d.properties().correlation_id;
            (void)w.broker.publish("", std::move(reply));
        },
        {.synchronous = true});
    orchestrator sync_sagas(w.broker, {.replies = warren::rpc_replies::synchronous});
    warren::saga_definition<> def("sync");
    def.step("a", op::request("", "sync", 1s)).step("b", op::request("", "sync", 1s));
    REQUIRE(sync_sagas.start(def, "s1", "x"));
    // Both round trips ran inside start(), one after the other, with no dispatch.
    const auto r = sync_sagas.result("s1");
    REQUIRE(r);
    CHECK(r->status == warren::saga_status::completed);
    CHECK(r->results[1].second == "r:x");
}

TEST_CASE("saga: a hook that throws does not stop its saga, and the exception comes out once the saga has gone on",
          "[saga]") {
    world w;
    warren::saga_definition<> def("throwing-hook");
    def.step("a", op::local([](const warren::saga_step_context<>&) { return std::string("a"); }))
        .step("b", op::local([](const warren::saga_step_context<>&) { return std::string("b"); }));
    int completed = 0;
    def.hooks.step_completed = [](const std::string&, const std::string& step, const std::string&) {
        if (step == "a") throw std::runtime_error("hook failed");
    };
    def.hooks.completed = [&](const warren::saga_result<>&) { ++completed; };
    CHECK_THROWS_WITH(w.sagas.start(def, "s1", ""), "hook failed");
    CHECK(w.sagas.status("s1") == warren::saga_status::completed);
    CHECK(completed == 1);
    CHECK(w.sagas.active() == 0);
}

TEST_CASE("saga: a request body function that throws fails its attempt transiently, retried by the policy", "[saga]") {
    world w;
    w.service("inventory");
    int calls = 0;
    warren::saga_definition<> def("body");
    def.step("inventory", op::request("", "inventory", 1s, warren::retry_policy::fixed(2, 10ms),
                                      [&](const warren::saga_step_context<>&) -> std::string {
                                          if (++calls == 1) throw std::runtime_error("no body yet");
                                          return "body";
                                      }));
    REQUIRE(w.sagas.start(def, "s1", ""));
    w.settle();
    const auto r = w.sagas.result("s1");
    REQUIRE(r);
    CHECK(r->status == warren::saga_status::completed);
    CHECK(r->attempts.size() == 2);
    CHECK(calls == 2);
}
