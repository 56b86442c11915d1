// concurrent_broker under threads: blocking gets, many publishers and consumers, topology
// changes while messages flow, and ending subscriptions whose callbacks are running.
//
// Catch2's assertions are not thread-safe: worker threads only record what they saw, and
// the test thread checks it after joining them.

#include <warren/broker.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/threads.hpp"

using warren_test::id_of;
using warren_test::joining_thread;
using warren_test::send;
using warren_test::strings;
using warren_test::to_queue;
using namespace std::chrono_literals;

namespace {

using broker = warren::concurrent_broker;
using delivery = broker::delivery;
using clock_type = std::chrono::steady_clock;

/// Messages per publisher in the stress test: about a second under TSan on two cores.
constexpr std::size_t stress_messages_per_publisher = 20000;

/// Milliseconds since `start`.
double elapsed_ms(clock_type::time_point start) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
}

/// What one consumer saw: ids in the order it got them, and which were redeliveries.
struct consumer_log {
    std::vector<std::size_t> ids;
    std::vector<bool> redelivered;
    void add(std::size_t id, bool again) {
        ids.push_back(id);
        redelivered.push_back(again);
    }
};

/// Whether each consumer saw every publisher's first deliveries in publishing order: a
/// FIFO queue hands a consumer later messages only after earlier ones left.
bool fifo_per_publisher(const consumer_log& log, std::size_t publishers, std::size_t per) {
    std::vector<std::size_t> last(publishers, 0);
    std::vector<bool> seen(publishers, false);
    for (std::size_t i = 0; i < log.ids.size(); ++i) {
        if (log.redelivered[i]) continue;
        const std::size_t p = log.ids[i] / per;
        const std::size_t n = log.ids[i] % per;
        if (seen[p] && n <= last[p]) return false;
        seen[p] = true;
        last[p] = n;
    }
    return true;
}

} // namespace

// ---------------------------------------------------------------------------------------
// try_get_for

TEST_CASE("concurrent broker: try_get_for times out on an empty queue", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    const auto start = clock_type::now();
    auto d = b.try_get_for("q", 50ms);
    const double waited = elapsed_ms(start);
    CHECK_FALSE(d);
    CHECK(waited >= 50.0);
    CHECK(waited < 2000.0);
    CHECK(b.queue_stats("q").delivered == 0);
}

TEST_CASE("concurrent broker: try_get_for takes a ready message at once", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    send(b, "q", {"a"});
    const auto start = clock_type::now();
    auto d = b.try_get_for("q", 10s, warren::ack_mode::manual);
    CHECK(elapsed_ms(start) < 2000.0);
    REQUIRE(d);
    CHECK(d->body() == "a");
    CHECK(d->pending());
    d->ack();
    CHECK(b.queue_stats("q").acked == 1);
}

TEST_CASE("concurrent broker: try_get_for wakes when another thread publishes", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    std::optional<delivery> got;
    double waited = 0;
    joining_thread waiter([&] {
        const auto start = clock_type::now();
        got = b.try_get_for("q", 20s, warren::ack_mode::manual);
        waited = elapsed_ms(start);
    });
    std::this_thread::sleep_for(50ms);
    REQUIRE(b.publish("", to_queue<broker>("q", "wake up")) == 1);
    waiter.join();
    REQUIRE(got);
    CHECK(got->body() == "wake up");
    CHECK(waited >= 40.0);
    CHECK(waited < 10000.0);
    got->ack();
    CHECK(b.queue_stats("q").acked == 1);
}

TEST_CASE("concurrent broker: try_get_for wakes when a message is requeued", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    send(b, "q", {"a"});
    auto held = b.try_get("q", warren::ack_mode::manual);
    REQUIRE(held);
    std::optional<delivery> got;
    joining_thread waiter([&] { got = b.try_get_for("q", 20s); });
    std::this_thread::sleep_for(50ms);
    held->nack();
    waiter.join();
    REQUIRE(got);
    CHECK(got->body() == "a");
    CHECK(got->redelivered());
}

TEST_CASE("concurrent broker: try_get_for returns nothing when its queue is deleted", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    std::optional<delivery> got;
    double waited = 0;
    joining_thread waiter([&] {
        const auto start = clock_type::now();
        got = b.try_get_for("q", 20s);
        waited = elapsed_ms(start);
    });
    std::this_thread::sleep_for(50ms);
    CHECK(b.delete_queue("q") == 0);
    waiter.join();
    CHECK_FALSE(got);
    CHECK(waited < 10000.0); // woken by the deletion, not by the timeout
}

TEST_CASE("concurrent broker: several waiters, each message taken once", "[multithread][try_get_for]") {
    broker b;
    b.declare_queue("q");
    constexpr std::size_t waiters = 4;
    std::vector<std::optional<delivery>> got(waiters);
    std::vector<joining_thread> threads;
    for (std::size_t i = 0; i < waiters; ++i) {
        threads.emplace_back([&, i] { got[i] = b.try_get_for("q", 20s); });
    }
    std::this_thread::sleep_for(50ms);
    for (std::size_t i = 0; i < waiters; ++i) {
        REQUIRE(b.publish("", to_queue<broker>("q", std::to_string(i))) == 1);
    }
    for (auto& t : threads) t.join();
    strings bodies;
    for (auto& d : got) {
        REQUIRE(d);
        bodies.push_back(d->body());
    }
    std::sort(bodies.begin(), bodies.end());
    CHECK(bodies == strings{"0", "1", "2", "3"});
    CHECK(b.message_count("q") == 0);
}

// ---------------------------------------------------------------------------------------
// many publishers, many consumers

TEST_CASE("concurrent broker: publishers and consumers lose and duplicate nothing", "[multithread][stress]") {
    constexpr std::size_t publishers = 4;
    constexpr std::size_t total = publishers * stress_messages_per_publisher;
    broker b;
    b.declare_queue("work");

    std::atomic<std::size_t> processed{0}; // finally acked (or taken automatically)
    std::atomic<std::size_t> requeues{0};
    std::atomic<bool> publish_failed{false};
    auto done = [&] { return processed.load() >= total; };

    // Consumers, each with its own log. Pullers use try_get_for with manual acks and requeue
    // some first deliveries; subscriptions are driven by dispatcher threads. Both
    // subscriptions have a prefetch limit, so that messages also wait ready for the pullers
    // (a consumer with credit is handed every message that finds the queue empty).
    constexpr std::size_t pullers = 2;
    std::vector<consumer_log> logs(pullers + 2);
    consumer_log& manual_log = logs[pullers];
    consumer_log& inline_log = logs[pullers + 1];

    // The manual subscription hands its deliveries to an acker thread.
    std::mutex handoff_mutex;
    std::vector<delivery> handoff;
    warren::consumer_options manual_options;
    manual_options.ack = warren::ack_mode::manual;
    manual_options.prefetch = 16;
    auto manual_sub = b.subscribe(
        "work",
        [&](delivery& d) {
            manual_log.add(id_of(d), d.redelivered());
            std::lock_guard lock(handoff_mutex);
            handoff.push_back(std::move(d));
        },
        manual_options);
    warren::consumer_options inline_options = manual_options;
    inline_options.prefetch = 4;
    auto inline_sub = b.subscribe(
        "work",
        [&](delivery& d) { // acks in its callback
            inline_log.add(id_of(d), d.redelivered());
            d.ack();
            ++processed;
        },
        inline_options);

    std::vector<joining_thread> threads;
    for (std::size_t p = 0; p < publishers; ++p) {
        threads.emplace_back([&, p] {
            auto pub = b.make_publisher("");
            for (std::size_t i = 0; i < stress_messages_per_publisher; ++i) {
                if (pub.publish(to_queue<broker>("work", std::to_string(p * stress_messages_per_publisher + i))) != 1) {
                    publish_failed = true;
                }
            }
        });
    }
    for (std::size_t c = 0; c < pullers; ++c) {
        threads.emplace_back([&, c] {
            while (!done()) {
                auto d = b.try_get_for("work", 5ms, warren::ack_mode::manual);
                if (!d) continue;
                const std::size_t id = id_of(*d);
                logs[c].add(id, d->redelivered());
                if (id % 97 == 0 && !d->redelivered()) {
                    d->nack(); // back to the front, for someone to take again
                    ++requeues;
                } else {
                    d->ack();
                    ++processed;
                }
            }
        });
    }
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            while (!done()) {
                if (b.dispatch(64) == 0) std::this_thread::sleep_for(100us);
            }
        });
    }
    threads.emplace_back([&] { // the acker
        std::vector<delivery> batch;
        while (!done()) {
            {
                std::lock_guard lock(handoff_mutex);
                batch.swap(handoff);
            }
            if (batch.empty()) std::this_thread::sleep_for(100us);
            for (auto& d : batch) {
                d.ack();
                ++processed;
            }
            batch.clear();
        }
    });
    for (auto& t : threads) t.join();
    manual_sub.release();
    inline_sub.release();

    CHECK_FALSE(publish_failed.load());
    CHECK(processed.load() == total);
    // Every id exactly once, counting only final handling: a puller's requeue is not one.
    std::vector<int> times(total, 0);
    std::size_t logged = 0;
    for (const auto& log : logs) logged += log.ids.size();
    CHECK(logged == total + requeues.load());
    std::size_t out_of_range = 0;
    for (std::size_t c = 0; c < logs.size(); ++c) {
        for (std::size_t i = 0; i < logs[c].ids.size(); ++i) {
            const std::size_t id = logs[c].ids[i];
            const bool was_requeued = c < pullers && id % 97 == 0 && !logs[c].redelivered[i];
            if (id >= total) ++out_of_range;
            else if (!was_requeued) ++times[id];
        }
    }
    CHECK(out_of_range == 0);
    CHECK(std::count(times.begin(), times.end(), 1) == static_cast<std::ptrdiff_t>(total));
    for (const auto& log : logs) CHECK(fifo_per_publisher(log, publishers, stress_messages_per_publisher));
    // Both kinds of consumer took part.
    for (const auto& log : logs) CHECK_FALSE(log.ids.empty());

    const auto s = b.queue_stats("work");
    CHECK(s.enqueued == total);
    CHECK(s.requeued == requeues.load());
    CHECK(s.delivered == total + requeues.load());
    CHECK(s.acked == total);
    CHECK(s.dropped.rejected == 0);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);
    CHECK(s.consumers == 0);
}

TEST_CASE("concurrent broker: one consumer's callback never runs on two threads at once", "[multithread]") {
    broker b;
    b.declare_queue("q");
    constexpr int messages = 3000;
    std::atomic<bool> inside{false};
    std::atomic<int> overlaps{0};
    std::atomic<int> calls{0};
    std::vector<int> order; // touched only by the callback: TSan checks it is serialised
    auto sub = b.subscribe("q", [&](delivery& d) {
        if (inside.exchange(true)) ++overlaps;
        order.push_back(std::stoi(d.body()));
        inside = false;
        ++calls;
    });
    warren_test::send_numbered(b, "q", "", messages);
    std::vector<joining_thread> dispatchers;
    for (int t = 0; t < 2; ++t) {
        dispatchers.emplace_back([&] {
            while (calls.load() < messages) {
                if (b.dispatch(8) == 0) std::this_thread::yield();
            }
        });
    }
    for (auto& t : dispatchers) t.join();
    CHECK(overlaps.load() == 0);
    REQUIRE(order.size() == static_cast<std::size_t>(messages));
    CHECK(std::is_sorted(order.begin(), order.end())); // one consumer: queue order
}

// ---------------------------------------------------------------------------------------
// topology changes while messages flow

TEST_CASE("concurrent broker: topology changes while publishing", "[multithread][topology]") {
    broker b;
    b.declare_exchange("events", "fanout");
    b.declare_queue("stable");
    b.bind_queue("stable", "events");
    constexpr std::size_t messages = 20000;
    constexpr int rounds = 300;

    std::atomic<bool> publishing{true};
    std::atomic<std::size_t> unroutable{0};
    std::atomic<std::size_t> temp_received{0};
    std::atomic<int> churn_errors{0};

    joining_thread publisher([&] { // one publisher, so "stable" must hold everything in order
        auto pub = b.make_publisher("events");
        for (std::size_t i = 0; i < messages; ++i) {
            if (pub.publish(to_queue<broker>("k", std::to_string(i))) == 0) ++unroutable;
        }
        publishing = false;
    });
    joining_thread queue_churn([&] { // queues come and go, with consumers
        for (int i = 0; i < rounds; ++i) {
            try {
                const std::string name = "tmp-" + std::to_string(i);
                warren::queue_options options;
                options.auto_delete = (i % 2 == 0);
                b.declare_queue(name, options);
                b.bind_queue(name, "events");
                warren::consumer_options manual;
                manual.ack = warren::ack_mode::manual;
                auto sub = b.subscribe(name, [&](delivery&) { ++temp_received; }, manual);
                std::this_thread::sleep_for(200us);
                sub.release(); // unacked go back; an auto-delete queue goes away here
                (void)b.delete_queue(name);
            } catch (...) {
                ++churn_errors;
            }
        }
    });
    joining_thread exchange_churn([&] { // exchanges come and go, with extra paths to "stable"
        for (int i = 0; i < rounds; ++i) {
            try {
                const std::string name = "x-" + std::to_string(i);
                b.declare_exchange(name, "topic");
                b.bind_exchange(name, "events", "");
                b.bind_queue("stable", name, "#"); // a second path: still one copy
                std::this_thread::sleep_for(200us);
                if (i % 2 == 0) b.unbind_queue("stable", name, "#");
                b.delete_exchange(name);
            } catch (...) {
                ++churn_errors;
            }
        }
    });
    joining_thread temporary_consumers([&] { // consumers of the temporary queues are served here
        while (publishing.load()) {
            if (b.dispatch(32) == 0) std::this_thread::sleep_for(100us);
        }
    });
    for (joining_thread* t : {&publisher, &queue_churn, &exchange_churn, &temporary_consumers}) t->join();

    CHECK(churn_errors.load() == 0);
    CHECK(unroutable.load() == 0);
    REQUIRE(b.message_count("stable") == messages);
    bool in_order = true;
    for (std::size_t i = 0; i < messages; ++i) {
        auto d = b.try_get("stable");
        if (!d || d->body() != std::to_string(i)) in_order = false;
    }
    CHECK(in_order);
    int left_over = 0;
    for (int i = 0; i < rounds; ++i) {
        if (b.has_queue("tmp-" + std::to_string(i))) ++left_over;
        if (b.has_exchange("x-" + std::to_string(i))) ++left_over;
    }
    CHECK(left_over == 0);
    CHECK(b.queue_stats("stable").enqueued == messages);
}

TEST_CASE("concurrent broker: subscribing and unsubscribing on a busy queue", "[multithread][topology]") {
    broker b;
    b.declare_queue("q");
    constexpr std::size_t messages = 20000;
    std::atomic<std::size_t> handled{0};
    std::atomic<bool> publishing{true};
    std::vector<joining_thread> threads;
    threads.emplace_back([&] {
        for (std::size_t i = 0; i < messages; ++i) (void)b.publish("", to_queue<broker>("q", "m"));
        publishing = false;
    });
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&, t] {
            warren::consumer_options manual;
            manual.ack = warren::ack_mode::manual;
            manual.tag = "churn-" + std::to_string(t);
            while (publishing.load() || handled.load() < messages) {
                // A consumer that acks half of what it gets; the rest returns on release.
                int n = 0;
                auto sub = b.subscribe(
                    "q",
                    [&](delivery& d) {
                        if (++n % 2 == 0) return;
                        d.ack();
                        ++handled;
                    },
                    manual);
                for (int k = 0; k < 4; ++k) (void)b.dispatch(16);
            }
        });
    }
    for (auto& t : threads) t.join();
    const auto s = b.queue_stats("q");
    CHECK(handled.load() == messages);
    CHECK(s.acked == messages);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);
    CHECK(s.consumers == 0);
    CHECK(s.delivered == s.acked + s.requeued);
}

// ---------------------------------------------------------------------------------------
// ending a subscription while its callback runs elsewhere

TEST_CASE("concurrent broker: ending a subscription waits for its running callback", "[multithread][subscription]") {
    broker b;
    b.declare_queue("q");
    std::atomic<bool> entered{false};
    std::atomic<int> calls{0};
    bool finished = false; // plain: release() must make the callback's write visible
    auto state = std::make_unique<std::string>("alive");
    std::string seen_state;
    std::optional<broker::subscription> sub;

    SECTION("automatic") {
        sub = b.subscribe("q", [&](delivery& d) {
            entered = true;
            ++calls;
            std::this_thread::sleep_for(100ms);
            seen_state = *state + ":" + d.body();
            finished = true;
        });
        send(b, "q", {"a", "b"});
        joining_thread dispatcher([&] { (void)b.dispatch(); });
        while (!entered.load()) std::this_thread::yield();
        sub.reset();
        CHECK(finished);
        state.reset(); // safe now: the callback is done with it
        dispatcher.join();
        CHECK(seen_state == "alive:a");
        CHECK(b.consumer_count("q") == 0);
        // Once release() began, the consumer got nothing more: b is still there.
        CHECK(calls.load() == 1);
        CHECK(warren_test::drain_marked(b, "q") == strings{"b"});
    }
    SECTION("manual, not settled: requeued once the callback returns") {
        sub = b.subscribe(
            "q",
            [&](delivery&) {
                entered = true;
                ++calls;
                std::this_thread::sleep_for(100ms);
                finished = true;
            },
            warren::consumer_options{.ack = warren::ack_mode::manual});
        send(b, "q", {"a"});
        joining_thread dispatcher([&] { (void)b.dispatch(); });
        while (!entered.load()) std::this_thread::yield();
        sub.reset();
        CHECK(finished);
        dispatcher.join();
        CHECK(calls.load() == 1); // not handed the requeued message again
        auto again = b.try_get("q");
        REQUIRE(again);
        CHECK(again->body() == "a");
        CHECK(again->redelivered());
    }
    SECTION("manual, acked by the callback after the release began: stays acked") {
        sub = b.subscribe(
            "q",
            [&](delivery& d) {
                entered = true;
                std::this_thread::sleep_for(100ms);
                d.ack();
                finished = true;
            },
            warren::consumer_options{.ack = warren::ack_mode::manual, .prefetch = 1}); // b stays ready
        send(b, "q", {"a", "b"});
        joining_thread dispatcher([&] { (void)b.dispatch(1); });
        while (!entered.load()) std::this_thread::yield();
        sub.reset();
        CHECK(finished);
        dispatcher.join();
        const auto s = b.queue_stats("q");
        CHECK(s.acked == 1);
        CHECK(s.requeued == 0);
        CHECK(warren_test::drain_marked(b, "q") == strings{"b"});
    }
}

TEST_CASE("concurrent broker: deleting a queue while a callback runs on it", "[multithread][subscription]") {
    broker b;
    b.declare_queue("q");
    std::atomic<bool> entered{false};
    std::atomic<bool> release{false};
    std::atomic<bool> ack_threw{false};
    warren::consumer_options manual;
    manual.ack = warren::ack_mode::manual;
    manual.prefetch = 1; // b stays ready
    auto sub = b.subscribe(
        "q",
        [&](delivery& d) {
            entered = true;
            while (!release.load()) std::this_thread::yield();
            try {
                d.ack(); // the queue is gone: ignored
            } catch (...) {
                ack_threw = true;
            }
        },
        manual);
    send(b, "q", {"a", "b"});
    std::size_t dispatched = 0;
    joining_thread dispatcher([&] { dispatched = b.dispatch(); });
    while (!entered.load()) std::this_thread::yield();
    CHECK(b.delete_queue("q") == 1);
    CHECK_FALSE(sub.active());
    release = true;
    dispatcher.join();
    CHECK(dispatched == 1);
    CHECK_FALSE(ack_threw.load());
    sub.release();
    CHECK_FALSE(b.has_queue("q"));
}
