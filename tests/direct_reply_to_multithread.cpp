// Direct reply-to on concurrent_broker across threads: rpc_clients on direct reply-to
// served by another thread, several at once; requesters that come and go while responders
// reply (a reply reaches its requester or routes to nothing, never another one); and two
// threads taking the same consumer tag.

#include <atomic>
#include <chrono>
#include <cstddef>
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

constexpr const char* drt_mt_pseudo_queue = "amq.rabbitmq.reply-to";

auto drt_mt_echo(const warren::concurrent_broker::delivery& d) { return "re:" + d.body(); }

} // namespace

TEST_CASE("direct reply-to (threads): rpc_clients on several threads get their own replies",
          "[multithread][direct_reply_to]") {
    warren_test::watchdog guard("direct reply-to round trips");
    warren::concurrent_broker b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", drt_mt_echo, {.prefetch = 0});
    const auto replies = GENERATE(warren::rpc_replies::synchronous, warren::rpc_replies::dispatched);
    CAPTURE(static_cast<int>(replies));
    warren_test::dispatchers<warren::concurrent_broker> running(b, 1);
    constexpr int threads = 3;
    constexpr int calls = 40;
    std::atomic<int> wrong{0};
    std::atomic<int> right{0};
    {
        std::vector<joining_thread> callers;
        for (int t = 0; t < threads; ++t) {
            callers.emplace_back([&, t] {
                warren::rpc_client client(b, {.replies = replies, .direct_reply_to = true});
                for (int i = 0; i < calls; ++i) {
                    const std::string body = std::to_string(t) + "/" + std::to_string(i);
                    try {
                        if (client.call_for("", "rpc_queue", body, 10s).body == "re:" + body) ++right;
                        else ++wrong;
                    } catch (...) {
                        ++wrong;
                    }
                }
                if (client.unknown_replies() != 0 || client.late_replies() != 0) ++wrong;
            });
        }
    }
    running.stop();
    CHECK(wrong.load() == 0);
    CHECK(right.load() == threads * calls);
    CHECK(server.unroutable_replies() == 0);
    CHECK(b.snapshot().queues.size() == 1); // no reply queue left behind
}

TEST_CASE("direct reply-to (threads): requesters come and go while a responder replies",
          "[multithread][direct_reply_to]") {
    warren_test::watchdog guard("direct reply-to churn");
    warren::concurrent_broker b;
    b.declare_queue("rpc_queue");
    std::atomic<bool> stop{false};
    std::atomic<std::size_t> routed{0};
    std::atomic<std::size_t> unroutable{0};
    std::atomic<int> misdelivered{0};
    std::atomic<int> received{0};
    // The responder: replies to every request it takes, whether its requester is still
    // there or not.
    joining_thread responder([&] {
        while (!stop.load() || b.message_count("rpc_queue") > 0) {
            auto request = b.try_get("rpc_queue");
            if (!request) {
                std::this_thread::yield();
                continue;
            }
            warren::message reply{.routing_key = *request->properties().reply_to, .body = request->body()};
            if (b.publish("", std::move(reply)) == 1) ++routed;
            else ++unroutable;
        }
    });
    {
        std::vector<joining_thread> requesters;
        for (int t = 0; t < 2; ++t) {
            requesters.emplace_back([&, t] {
                for (int round = 0; round < 100; ++round) {
                    const std::string tag = "requester-" + std::to_string(t);
                    const std::string mine = tag + "/" + std::to_string(round);
                    auto sub = b.subscribe(
                        drt_mt_pseudo_queue,
                        [&, mine](warren::concurrent_broker::delivery& d) {
                            ++received;
                            if (d.body() != mine) ++misdelivered;
                        },
                        {.tag = tag, .synchronous = true});
                    warren::message request{.routing_key = "rpc_queue", .body = mine};
                    request.properties.reply_to = drt_mt_pseudo_queue;
                    (void)b.publish("", std::move(request), {.reply_consumer = tag});
                    if (round % 2 == 0) std::this_thread::yield(); // sometimes wait a little for the reply
                    sub.release();
                }
            });
        }
    }
    stop = true;
    responder.join();
    (void)b.dispatch(); // replies that reached a synchronous consumer's queue while it was busy
    CHECK(misdelivered.load() == 0);
    CHECK(routed.load() + unroutable.load() == 200);
    CHECK(static_cast<std::size_t>(received.load()) <= routed.load());
    CHECK(b.snapshot().queues.size() == 1);
}

TEST_CASE("direct reply-to (threads): of two threads taking one consumer tag, one gets it",
          "[multithread][direct_reply_to]") {
    warren_test::watchdog guard("direct reply-to tag race");
    warren::concurrent_broker b;
    for (int round = 0; round < 50; ++round) {
        std::atomic<int> refused{0};
        std::vector<warren::concurrent_broker::subscription> got(2);
        {
            std::vector<joining_thread> both;
            for (int t = 0; t < 2; ++t) {
                both.emplace_back([&, t] {
                    try {
                        got[static_cast<std::size_t>(t)] =
                            b.subscribe(drt_mt_pseudo_queue, [](warren::concurrent_broker::delivery&) {}, {.tag = "one"});
                    } catch (const warren::error& e) {
                        if (e.code() == warren::reply_code::precondition_failed) ++refused;
                    }
                });
            }
        }
        REQUIRE(refused.load() == 1);
        REQUIRE(got[0].active() != got[1].active());
    }
}
