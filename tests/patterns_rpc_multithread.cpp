// rpc_client and rpc_server on concurrent_broker across threads: call_for and call_async
// served by another thread, with synchronous and with dispatched replies, timeouts, and
// calls from several threads at once.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <string>
#include <vector>

#include <warren/patterns/rpc_client.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/threads.hpp"

using namespace std::chrono_literals;
using warren_test::joining_thread;

namespace {

auto echo(const warren::concurrent_broker::delivery& d) { return "re:" + d.body(); }

} // namespace

TEST_CASE("rpc (threads): call_for on concurrent_broker returns the reply served by another thread",
          "[multithread][rpc]") {
    warren_test::watchdog guard("call_for round trips");
    warren::concurrent_broker b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", echo);
    const auto replies = GENERATE(warren::rpc_replies::synchronous, warren::rpc_replies::dispatched);
    CAPTURE(static_cast<int>(replies));
    warren::rpc_client client(b, {.replies = replies});
    warren_test::dispatchers<warren::concurrent_broker> running(b, 1);
    for (int i = 0; i < 50; ++i) {
        const auto reply = client.call_for("", "rpc_queue", std::to_string(i), 5s);
        REQUIRE(reply.body == "re:" + std::to_string(i));
    }
    CHECK(client.pending() == 0);
    CHECK(client.late_replies() == 0);
    running.stop();
    CHECK(b.queue_stats("rpc_queue").acked == 50);
}

TEST_CASE("rpc (threads): call_for throws on timeout and counts the late reply", "[multithread][rpc]") {
    warren_test::watchdog guard("call_for timeout");
    warren::concurrent_broker b;
    b.declare_queue("rpc_queue"); // nobody serves it yet
    warren::rpc_client client(b);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(client.call_for("", "rpc_queue", "x", 30ms), Catch::Contains("got no reply in time (timeout 30 ms)"));
    CHECK(std::chrono::steady_clock::now() - start >= 30ms);
    CHECK(client.pending() == 0);
    // The server comes up and answers the stale request: late, dropped.
    warren::rpc_server server(b, "rpc_queue", echo);
    (void)b.dispatch();
    CHECK(client.late_replies() == 1);
}

TEST_CASE("rpc (threads): call_for on a manual clock times out when another thread advances it",
          "[multithread][rpc]") {
    warren_test::watchdog guard("call_for manual clock");
    warren::manual_clock time;
    warren::concurrent_broker b(time);
    b.declare_queue("rpc_queue");
    warren::rpc_client client(b);
    std::atomic<bool> failed{false};
    joining_thread caller([&] {
        try {
            (void)client.call_for("", "rpc_queue", "x", 1s);
        } catch (const warren::error&) {
            failed = true;
        }
    });
    REQUIRE(warren_test::wait_until([&] { return client.pending() == 1; }));
    std::this_thread::sleep_for(30ms);
    CHECK_FALSE(failed.load()); // the clock has not moved: still waiting
    time.advance(1s);
    caller.join();
    CHECK(failed.load());
    CHECK(client.timeouts() == 1);
}

TEST_CASE("rpc (threads): call_async's future gets the reply or the timeout error", "[multithread][rpc]") {
    warren_test::watchdog guard("call_async");
    warren::manual_clock time;
    warren::concurrent_broker b(time);
    b.declare_queue("rpc_queue");
    b.declare_queue("silent");
    warren::rpc_server server(b, "rpc_queue", echo);
    warren::rpc_client client(b);
    warren_test::dispatchers<warren::concurrent_broker> running(b, 1);
    auto answered = client.call_async("", "rpc_queue", "a", 5s);
    auto unanswered = client.call_async("", "silent", "b", 5s);
    REQUIRE(answered.wait_for(5s) == std::future_status::ready);
    CHECK(answered.get().body == "re:a");
    CHECK(unanswered.wait_for(10ms) == std::future_status::timeout);
    time.advance(5s);
    CHECK(client.expire() == 1);
    REQUIRE(unanswered.wait_for(0s) == std::future_status::ready);
    CHECK_THROWS_AS(unanswered.get(), warren::error);
}

TEST_CASE("rpc (threads): a future of a client destroyed with the call pending is broken", "[multithread][rpc]") {
    warren::concurrent_broker b;
    b.declare_queue("silent");
    std::future<warren::message> f;
    {
        warren::rpc_client client(b);
        f = client.call_async("", "silent", "x", 5s);
    }
    CHECK_THROWS_AS(f.get(), std::future_error);
}

TEST_CASE("rpc (threads): concurrent calls from several threads each get their own reply", "[multithread][rpc]") {
    warren_test::watchdog guard("concurrent calls", 60s);
    constexpr int callers = 4;
    constexpr int per_caller = 200;
    warren::concurrent_broker b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", echo, {.prefetch = 4});
    const auto replies = GENERATE(warren::rpc_replies::synchronous, warren::rpc_replies::dispatched);
    CAPTURE(static_cast<int>(replies));
    warren::rpc_client client(b, {.replies = replies});
    warren_test::dispatchers<warren::concurrent_broker> running(b, 2);
    std::atomic<int> wrong{0};
    std::atomic<int> right{0};
    {
        std::vector<joining_thread> threads;
        for (int t = 0; t < callers; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < per_caller; ++i) {
                    const std::string body = std::to_string(t) + "/" + std::to_string(i);
                    try {
                        if (i % 2 == 0) {
                            (client.call_for("", "rpc_queue", body, 20s).body == "re:" + body ? right : wrong)++;
                        } else {
                            (client.call_async("", "rpc_queue", body, 20s).get().body == "re:" + body ? right : wrong)++;
                        }
                    } catch (...) {
                        ++wrong;
                    }
                }
            });
        }
    }
    running.stop();
    CHECK(wrong.load() == 0);
    CHECK(right.load() == callers * per_caller);
    CHECK(client.pending() == 0);
    CHECK(client.late_replies() == 0);
    CHECK(client.unknown_replies() == 0);
    CHECK(server.replies() == static_cast<std::size_t>(callers * per_caller));
}
