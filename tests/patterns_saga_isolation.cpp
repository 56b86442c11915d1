// Sagas have no isolation (include/warren/patterns/saga.hpp): two concurrent sagas on one
// account store, interleaved by the broker's deterministic dispatch, show a lost update and
// a dirty read; then the countermeasures (a semantic lock / pending state, commutative
// updates, re-reading before acting) each shown preventing the anomaly.

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <warren/patterns/saga.hpp>
#include <warren/patterns/saga_participant.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

using op = warren::saga_operation<>;
using outcome = warren::saga_outcome<>;
using context = warren::saga_step_context<>;

/// The account service: one balance in its own store, served on queue "account". Each
/// step name (the x-saga-step header) is one local transaction.
struct account_service {
    int balance = 100;
    std::optional<std::string> pending_by; // the semantic lock: a saga's update in progress
    std::vector<std::string> reads;        // "<saga> read <value>"
    warren::broker& broker;
    std::optional<warren::saga_participant<warren::broker>> participant;

    explicit account_service(warren::broker& b) : broker(b) {
        broker.declare_queue("account");
        participant.emplace(
            broker, "account", [this](const warren::delivery& d) { return act(d); },
            [this](const warren::delivery& d) { return undo(d); });
    }

    static std::string step_of(const warren::delivery& d) {
        const std::string* step = d.properties().headers.find_string(warren::saga_wire::step_header);
        return step != nullptr ? *step : std::string();
    }

    [[nodiscard]] bool locked_for(const std::string& saga) const { return pending_by && *pending_by != saga; }

    outcome act(const warren::delivery& d) {
        const std::string saga = d.properties().correlation_id.value_or("");
        const std::string step = step_of(d);
        if (step == "read" || step == "check") {
            reads.push_back(saga + " read " + std::to_string(balance));
            return std::to_string(balance);
        }
        if (step == "write") { // an absolute value computed from an earlier read
            balance = std::stoi(d.body());
            return d.body();
        }
        if (step == "debit") { // commutative: applies the difference to the current value
            balance -= std::stoi(d.body());
            return d.body();
        }
        if (step == "write-if-unchanged") { // "<expected> <new>": re-read before acting
            const auto space = d.body().find(' ');
            const int expected = std::stoi(d.body().substr(0, space));
            if (balance != expected) {
                return outcome::failure("balance changed from " + std::to_string(expected) + " to " +
                                        std::to_string(balance) + " since it was read");
            }
            balance = std::stoi(d.body().substr(space + 1));
            return d.body();
        }
        // The semantic lock: the update marks the record pending; others wait and retry.
        if (step == "lock-and-read" || step == "check-unless-pending") {
            if (locked_for(saga)) return outcome::transient_failure("account pending for " + *pending_by);
            if (step == "lock-and-read") pending_by = saga;
            reads.push_back(saga + " read " + std::to_string(balance));
            return std::to_string(balance);
        }
        if (step == "pending-debit") {
            if (locked_for(saga)) return outcome::transient_failure("account pending for " + *pending_by);
            pending_by = saga;
            balance -= std::stoi(d.body());
            return d.body();
        }
        if (step == "write-and-unlock" || step == "commit") {
            if (step == "write-and-unlock") balance = std::stoi(d.body());
            if (pending_by == saga) pending_by.reset();
            return d.body();
        }
        return outcome::failure("unknown step " + step);
    }

    outcome undo(const warren::delivery& d) {
        const std::string saga = d.properties().correlation_id.value_or("");
        const std::string step = step_of(d);
        if (step == "debit" || step == "pending-debit") balance += std::stoi(d.body());
        if (pending_by == saga) pending_by.reset();
        return std::string("undone");
    }
};

struct isolation_world {
    warren::manual_clock time;
    warren::broker broker{time};
    account_service account{broker};
    warren::saga_orchestrator<warren::broker> sagas{broker};

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
    void dispatch() {
        while (broker.dispatch() != 0) {
        }
    }
};

/// The amount a saga withdraws: its input.
int amount(const context& c) { return std::stoi(c.input); }
int read_value(const context& c, const char* step) { return std::stoi(*c.result_of(step)); }

/// Withdraw by reading the balance, then writing balance - amount: two local
/// transactions, with other sagas free to run in between.
warren::saga_definition<> read_then_write() {
    warren::saga_definition<> def("withdraw");
    def.step("read", op::request("", "account", 1s))
        .step("write", op::request("", "account", 1s, {},
                                   [](const context& c) { return std::to_string(read_value(c, "read") - amount(c)); }));
    return def;
}

/// A debit, then a step that fails by timing out (a service nobody serves), so that the
/// debit is compensated 2 s later: meanwhile the debited balance is visible.
warren::saga_definition<> debit_then_fail(const std::string& debit_step) {
    warren::saga_definition<> def("debit-then-fail");
    def.step(debit_step, op::request("", "account", 1s), op::request("", "account", 1s))
        .step("confirm", op::request("", "nobody", 2s));
    return def;
}

} // namespace

TEST_CASE("saga isolation: two read-then-write sagas lose an update without a countermeasure", "[saga][isolation]") {
    isolation_world w;
    w.broker.declare_queue("nobody");
    const auto def = read_then_write();
    REQUIRE(w.sagas.start(def, "A", "30"));
    REQUIRE(w.sagas.start(def, "B", "50"));
    w.settle();
    CHECK(w.sagas.status("A") == warren::saga_status::completed);
    CHECK(w.sagas.status("B") == warren::saga_status::completed);
    // Both read 100 before either wrote: B's write (100 - 50) overwrote A's (100 - 30).
    CHECK(w.account.reads == std::vector<std::string>{"A read 100", "B read 100"});
    CHECK(w.account.balance == 50); // the anomaly: 100 - 30 - 50 would be 20
}

TEST_CASE("saga isolation: a saga reads a debit that is later rolled back (a dirty read) without a countermeasure",
          "[saga][isolation]") {
    isolation_world w;
    w.broker.declare_queue("nobody");
    const auto debit = debit_then_fail("debit");
    REQUIRE(w.sagas.start(debit, "A", "30"));
    w.dispatch(); // A debited 30 and waits for "confirm"
    warren::saga_definition<> check("check");
    check.step("check", op::request("", "account", 1s));
    REQUIRE(w.sagas.start(check, "B", ""));
    w.settle();
    CHECK(w.sagas.status("A") == warren::saga_status::rolled_back);
    CHECK(w.sagas.status("B") == warren::saga_status::completed);
    CHECK(w.account.balance == 100);                                   // A's debit was undone...
    CHECK(w.sagas.result("B")->results[0].second == "70");             // ...but B saw it
    CHECK(w.account.reads == std::vector<std::string>{"B read 70"});   // the anomaly
}

TEST_CASE("saga isolation: a semantic lock (pending state) prevents the lost update: the second saga waits",
          "[saga][isolation][countermeasure]") {
    isolation_world w;
    warren::saga_definition<> def("withdraw-locked");
    def.step("lock-and-read", op::request("", "account", 1s, warren::retry_policy::fixed(5, 1s)),
             op::request("", "account", 1s)) // the compensation releases the lock
        .step("write-and-unlock",
              op::request("", "account", 1s, {},
                          [](const context& c) { return std::to_string(read_value(c, "lock-and-read") - amount(c)); }));
    REQUIRE(w.sagas.start(def, "A", "30"));
    REQUIRE(w.sagas.start(def, "B", "50"));
    w.settle();
    CHECK(w.sagas.status("A") == warren::saga_status::completed);
    CHECK(w.sagas.status("B") == warren::saga_status::completed);
    CHECK(w.account.reads == std::vector<std::string>{"A read 100", "B read 70"});
    CHECK(w.account.balance == 20);
    CHECK_FALSE(w.account.pending_by);
    const auto b = w.sagas.result("B");
    REQUIRE(b);
    CHECK(b->attempts.size() == 3); // locked once, then read, then write
    CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(b->attempts[1].at.time_since_epoch()).count() == 1000);
}

TEST_CASE("saga isolation: a semantic lock (pending state) prevents the dirty read: the reader waits for the rollback",
          "[saga][isolation][countermeasure]") {
    isolation_world w;
    w.broker.declare_queue("nobody");
    const auto debit = debit_then_fail("pending-debit");
    REQUIRE(w.sagas.start(debit, "A", "30"));
    w.dispatch();
    CHECK(w.account.pending_by == "A");
    warren::saga_definition<> check("check");
    check.step("check-unless-pending", op::request("", "account", 1s, warren::retry_policy::fixed(5, 1500ms)));
    REQUIRE(w.sagas.start(check, "B", ""));
    w.settle();
    CHECK(w.sagas.status("A") == warren::saga_status::rolled_back);
    CHECK(w.sagas.status("B") == warren::saga_status::completed);
    CHECK(w.account.balance == 100);
    CHECK(w.sagas.result("B")->results[0].second == "100"); // never the 70 that was rolled back
    CHECK(w.account.reads == std::vector<std::string>{"B read 100"});
}

TEST_CASE("saga isolation: commutative updates (debit the difference) prevent the lost update",
          "[saga][isolation][countermeasure]") {
    isolation_world w;
    warren::saga_definition<> def("withdraw-commutative");
    def.step("debit", op::request("", "account", 1s), op::request("", "account", 1s));
    REQUIRE(w.sagas.start(def, "A", "30"));
    REQUIRE(w.sagas.start(def, "B", "50"));
    w.settle();
    CHECK(w.sagas.status("A") == warren::saga_status::completed);
    CHECK(w.sagas.status("B") == warren::saga_status::completed);
    CHECK(w.account.balance == 20);
}

TEST_CASE("saga isolation: re-reading before acting turns the lost update into a failure the saga reports, which run again it reads the new value",
          "[saga][isolation][countermeasure]") {
    isolation_world w;
    warren::saga_definition<> def("withdraw-checked");
    def.step("read", op::request("", "account", 1s))
        .step("write-if-unchanged", op::request("", "account", 1s, {}, [](const context& c) {
                  const int seen = read_value(c, "read");
                  return std::to_string(seen) + " " + std::to_string(seen - amount(c));
              }));
    REQUIRE(w.sagas.start(def, "A", "30"));
    REQUIRE(w.sagas.start(def, "B", "50"));
    w.settle();
    CHECK(w.sagas.status("A") == warren::saga_status::completed);
    const auto b = w.sagas.result("B");
    REQUIRE(b);
    CHECK(b->status == warren::saga_status::rolled_back);
    CHECK(b->error->what == "balance changed from 100 to 70 since it was read");
    CHECK(w.account.balance == 70); // A's update kept

    // B runs again from the start, reading the current balance; under a new id, since the
    // participant remembers B's message ids and would answer them from memory.
    REQUIRE(w.sagas.start(def, "B-again", "50"));
    w.settle();
    CHECK(w.sagas.status("B-again") == warren::saga_status::completed);
    CHECK(w.account.balance == 20);
}
