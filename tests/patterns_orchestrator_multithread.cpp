// orchestrator on concurrent_broker across threads: the blocking forms (call_for,
// call_sequence_for, scatter_gather_for) and call_async, with services served by other
// threads, retries on the steady clock and on a manual clock advanced by another thread,
// and calls from several threads at once.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/orchestrator.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/patterns/service_error.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;
using warren::call_status;
using warren_test::joining_thread;
using orchestrator = warren::orchestrator<warren::concurrent_broker>;

namespace {

/// Records the message_ids a service saw, from whichever thread serves it.
struct seen_ids {
    std::mutex mutex;
    std::vector<std::string> ids;
    std::size_t add(const warren::concurrent_broker::delivery& d) {
        std::lock_guard guard(mutex);
        ids.push_back(d.properties().message_id.value_or(""));
        return ids.size();
    }
    std::vector<std::string> all() {
        std::lock_guard guard(mutex);
        return ids;
    }
};

} // namespace

TEST_CASE("orchestrator (threads): call_for retries a request the service lost and returns its reply",
          "[multithread][orchestrator]") {
    warren_test::watchdog guard("call_for retry");
    warren::concurrent_broker b;
    b.set_error_handler([](const auto&) {}); // the lost request: its handler throws
    b.declare_queue("payment");
    seen_ids seen;
    warren::rpc_server server(b, "payment", [&](const warren::concurrent_broker::delivery& d) {
        if (seen.add(d) == 1) throw std::runtime_error("crashed before replying");
        return "paid " + d.body();
    });
    orchestrator o(b);
    warren_test::dispatchers<warren::concurrent_broker> running(b, 1);
    const auto r = o.call_for("payment", "42", {.timeout = 50ms, .retry = warren::retry_policy::fixed(3, 10ms)});
    REQUIRE(r.ok());
    CHECK(r.reply().body == "paid 42");
    CHECK(r.attempts() == 2);
    CHECK(r.history()[1].sent_at - r.history()[0].sent_at >= 60ms);
    CHECK(seen.all() == std::vector<std::string>{r.message_id(), r.message_id()});
    CHECK(o.running() == 0);
}

TEST_CASE("orchestrator (threads): on a manual clock each attempt goes out when another thread advances it",
          "[multithread][orchestrator]") {
    warren_test::watchdog guard("call_for manual clock");
    warren::manual_clock time;
    warren::concurrent_broker b(time);
    b.declare_queue("slow");
    std::mutex m;
    std::vector<warren::clock::duration> arrivals;
    auto sub = b.subscribe(
        "slow",
        [&](warren::concurrent_broker::delivery&) {
            std::lock_guard lock(m);
            arrivals.push_back(time.elapsed());
        },
        {.synchronous = true});
    orchestrator o(b);
    auto count = [&] {
        std::lock_guard lock(m);
        return arrivals.size();
    };
    std::optional<orchestrator::result> got;
    joining_thread caller([&] {
        got.emplace(o.call_for("slow", "x", {.timeout = 100ms, .retry = warren::retry_policy::fixed(2, 50ms)}));
    });
    REQUIRE(warren_test::wait_until([&] { return count() == 1; }));
    time.advance(100ms); // attempt 1 times out; the retry is due at 150 ms
    REQUIRE(warren_test::wait_until([&] { return o.next_due() && o.next_due()->time_since_epoch() == 150ms; }));
    std::this_thread::sleep_for(20ms);
    CHECK(count() == 1);
    time.advance(50ms);
    REQUIRE(warren_test::wait_until([&] { return count() == 2; }));
    time.advance(100ms);
    caller.join();
    REQUIRE(got);
    CHECK(got->status() == call_status::timed_out);
    CHECK(got->attempts() == 2);
    std::lock_guard lock(m);
    CHECK(arrivals == std::vector<warren::clock::duration>{0ms, 150ms});
}

TEST_CASE("orchestrator (threads): call_sequence_for runs the steps on services served by other threads",
          "[multithread][orchestrator][sequence]") {
    warren_test::watchdog guard("call_sequence_for");
    warren::concurrent_broker b;
    for (const char* q : {"payment", "inventory", "shipping"}) b.declare_queue(q);
    warren::rpc_server pay(b, "payment", [](const auto& d) { return d.body() + ">pay"; });
    warren::rpc_server reserve(b, "inventory", [](const auto& d) { return d.body() + ">reserve"; });
    warren::rpc_server ship(b, "shipping", warren::answering_errors([](const auto& d) -> std::string {
                                if (d.body().starts_with("heavy")) throw warren::service_failure("too heavy");
                                return d.body() + ">ship";
                            }));
    orchestrator o(b);
    warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
    const auto pass = [](const warren::message& m) { return m.body; };
    const std::vector<orchestrator::step> steps{
        {"payment", pass, {.timeout = 5s}}, {"inventory", pass, {.timeout = 5s}}, {"shipping", pass, {.timeout = 5s}}};
    const auto s = o.call_sequence_for({.routing_key = {}, .body = "order"}, steps);
    REQUIRE(s.ok());
    CHECK(s.reply().body == "order>pay>reserve>ship");
    const auto failed = o.call_sequence_for({.routing_key = {}, .body = "heavy"}, steps);
    CHECK(failed.failed_step() == 2U);
    CHECK(failed.calls().size() == 3);
}

TEST_CASE("orchestrator (threads): scatter_gather_for returns what came by the deadline", "[multithread][orchestrator][gather]") {
    warren_test::watchdog guard("scatter_gather_for");
    warren::concurrent_broker b;
    b.declare_queue("inventory");
    b.declare_queue("shipping");
    b.declare_queue("silent");
    warren::rpc_server stock(b, "inventory", [](const auto& d) { return "in stock: " + d.body(); });
    warren::rpc_server quote(b, "shipping", [](const auto& d) { return "5 EUR for " + d.body(); });
    orchestrator o(b);
    warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
    const auto start = std::chrono::steady_clock::now();
    const auto g = o.scatter_gather_for({{"inventory", "book"}, {"shipping", "book"}, {"silent", "book", {.timeout = 10s}}},
                                        {.deadline = 300ms});
    CHECK(std::chrono::steady_clock::now() - start >= 300ms);
    CHECK(g.replied() == 2);
    CHECK(g.timed_out() == 1);
    CHECK(g[2].status() == call_status::timed_out);
    const auto quorum = o.scatter_gather_for({{"inventory", "a"}, {"shipping", "a"}, {"silent", "a", {.timeout = 10s}}},
                                             {.deadline = 10s, .quorum = 2});
    CHECK(quorum.ok());
    CHECK(quorum.cancelled() == 1);
    CHECK(o.running() == 0);
}

TEST_CASE("orchestrator (threads): call_async's future gets the outcome, retries driven by a polling thread",
          "[multithread][orchestrator]") {
    warren_test::watchdog guard("call_async");
    warren::concurrent_broker b;
    b.set_error_handler([](const auto&) {});
    b.declare_queue("flaky");
    std::atomic<int> calls{0};
    warren::rpc_server server(b, "flaky", [&](const auto& d) {
        if (++calls == 1) throw std::runtime_error("lost");
        return d.body();
    });
    orchestrator o(b);
    warren_test::dispatchers<warren::concurrent_broker> running(b, 1);
    std::atomic<bool> stop{false};
    joining_thread poller([&] {
        while (!stop) {
            (void)o.poll();
            std::this_thread::sleep_for(1ms);
        }
    });
    auto f = o.call_async({"flaky", "x", {.timeout = 30ms, .retry = warren::retry_policy::fixed(3, 5ms)}});
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    const auto r = f.get();
    stop = true;
    CHECK(r.ok());
    CHECK(r.attempts() == 2);
}

TEST_CASE("orchestrator (threads): calls from several threads at once each get their own reply",
          "[multithread][orchestrator]") {
    warren_test::watchdog guard("concurrent orchestration", 60s);
    constexpr int callers = 4;
    constexpr int per_caller = 50;
    warren::concurrent_broker b;
    b.declare_queue("echo");
    warren::rpc_server server(b, "echo", [](const auto& d) { return "re:" + d.body(); }, {.prefetch = 4});
    orchestrator o(b);
    warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
    std::atomic<int> wrong{0};
    std::atomic<int> right{0};
    {
        std::vector<joining_thread> threads;
        for (int t = 0; t < callers; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < per_caller; ++i) {
                    const std::string body = std::to_string(t) + "/" + std::to_string(i);
                    if (i % 2 == 0) {
                        const auto r = o.call_for("echo", body, {.timeout = 20s});
                        (r.ok() && r.reply().body == "re:" + body ? right : wrong)++;
                    } else {
                        const auto g = o.scatter_gather_for({{"echo", body + "a"}, {"echo", body + "b"}}, {.deadline = 20s});
                        (g.complete() && g[0].reply().body == "re:" + body + "a" && g[1].reply().body == "re:" + body + "b"
                             ? right
                             : wrong)++;
                    }
                }
            });
        }
    }
    running.stop();
    CHECK(wrong.load() == 0);
    CHECK(right.load() == callers * per_caller);
    CHECK(o.running() == 0);
    CHECK(o.late_replies() == 0);
}

TEST_CASE("orchestrator (threads): a future of an orchestrator destroyed with its call running is broken",
          "[multithread][orchestrator]") {
    warren::concurrent_broker b;
    b.declare_queue("silent");
    std::future<orchestrator::result> f;
    {
        orchestrator o(b);
        f = o.call_async({"silent", "x", {.timeout = 5s}});
    }
    CHECK_THROWS_AS(f.get(), std::future_error);
}
