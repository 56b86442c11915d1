// Synchronous consumers under concurrent_broker: publishers on several threads run the
// receivers' callbacks themselves; a callback never runs twice at once, and a message
// handed while its consumer's callback runs on another thread is run by that thread once
// the callback returns, before its publish returns.

#include <atomic>
#include <cstddef>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/threads.hpp"

using warren_test::joining_thread;

TEST_CASE("synchronous (threads): publishers on four threads run every receiver once, never two callbacks of one consumer at once",
          "[multithread][synchronous]") {
    constexpr std::size_t publishers = 4;
    constexpr std::size_t per_publisher = 5000;
    constexpr std::size_t total = publishers * per_publisher;
    warren::concurrent_broker b;
    b.declare_exchange("signal", "fanout");

    struct receiver {
        std::atomic<int> running{0};
        std::atomic<bool> overlapped{false};
        std::atomic<std::size_t> calls{0};
        std::vector<bool> seen = std::vector<bool>(total, false); // written by one callback at a time
        std::size_t duplicates = 0;
    };
    std::vector<receiver> receivers(3);
    std::vector<warren::concurrent_broker::subscription> subs;
    std::mutex threads_mutex;
    std::set<std::thread::id> callback_threads;
    for (std::size_t r = 0; r < receivers.size(); ++r) {
        const std::string q = "r" + std::to_string(r);
        b.declare_queue(q);
        b.bind_queue(q, "signal");
        warren::consumer_options o;
        o.synchronous = true;
        if (r == 2) o.ack = warren::ack_mode::manual; // acks inside
        subs.push_back(b.subscribe(
            q,
            [&, r](warren::concurrent_broker::delivery& d) {
                receiver& self = receivers[r];
                if (self.running.fetch_add(1) != 0) self.overlapped = true;
                const std::size_t id = std::stoul(d.body());
                if (self.seen[id]) ++self.duplicates;
                self.seen[id] = true;
                if (d.pending()) d.ack();
                {
                    std::lock_guard lock(threads_mutex);
                    callback_threads.insert(std::this_thread::get_id());
                }
                ++self.calls;
                self.running.fetch_sub(1);
            },
            o));
    }
    std::set<std::thread::id> publisher_threads;
    std::atomic<std::size_t> short_routes{0};
    {
        std::vector<joining_thread> threads;
        std::mutex ids_mutex;
        for (std::size_t p = 0; p < publishers; ++p) {
            threads.emplace_back([&, p] {
                {
                    std::lock_guard lock(ids_mutex);
                    publisher_threads.insert(std::this_thread::get_id());
                }
                auto pub = b.make_publisher("signal");
                for (std::size_t i = 0; i < per_publisher; ++i) {
                    if (pub.publish(warren_test::msg("", std::to_string(p * per_publisher + i))) != receivers.size()) ++short_routes;
                }
            });
        }
    }
    // Every publisher has returned, and nothing called dispatch(): every callback has run.
    CHECK(short_routes.load() == 0);
    for (auto& r : receivers) {
        CHECK_FALSE(r.overlapped.load());
        CHECK(r.calls.load() == total);
        CHECK(r.duplicates == 0);
    }
    for (const auto id : callback_threads) CHECK(publisher_threads.count(id) == 1);
    for (std::size_t r = 0; r < receivers.size(); ++r) {
        const auto s = b.queue_stats("r" + std::to_string(r));
        CHECK(s.acked == total);
        CHECK(s.ready == 0);
        CHECK(s.awaiting_callback == 0);
        CHECK(s.unacked == 0);
    }
    CHECK(b.dispatch() == 0);
}
