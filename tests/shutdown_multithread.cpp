// Shutting a concurrent_broker down under load: producers stop, consumers finish their
// running callbacks and stop, subscriptions end (their unacked messages return to the
// queue), and the broker goes away after the threads, with messages still in it. Nothing
// may be lost or handled twice; nothing may be used after it was freed (run under ASan
// and TSan); nothing may leak (ASan's leak check).

#include <warren/broker.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/threads.hpp"

using warren_test::dispatchers;
using warren_test::id_of;
using warren_test::joining_thread;
using warren_test::manual_options;
using warren_test::to_queue;
using warren_test::wait_until;
using namespace std::chrono_literals;

namespace {

using broker = warren::concurrent_broker;
using delivery = broker::delivery;
using subscription = broker::subscription;

/// Publishes ids [first, first + count) to `queue`; returns how many were not routed.
std::size_t publish_ids(broker& b, const std::string& queue, std::size_t first, std::size_t count) {
    std::size_t failed = 0;
    for (std::size_t i = first; i < first + count; ++i) {
        if (b.publish("", to_queue<broker>(queue, std::to_string(i))) != 1) ++failed;
    }
    return failed;
}

} // namespace

TEST_CASE("shutdown: producers stop, consumers stop, subscriptions end: each message acked once or back in the queue",
          "[multithread][shutdown]") {
    constexpr std::size_t producers = 3;
    constexpr std::size_t per_producer = 1500;
    constexpr std::size_t total = producers * per_producer;
    constexpr std::size_t workers = 3;
    constexpr std::size_t batch = 4; // acked together with ack(multiple), within the prefetch of 8
    broker b;
    b.declare_queue("work");

    // A worker keeps deliveries until it has a batch, then handles and acks them at once.
    // Its state is touched only by its own callback, which never runs twice at once, and
    // by the test thread once the dispatchers are joined.
    struct worker_state {
        std::vector<delivery> batch;
        std::vector<std::size_t> processed;
    };
    std::vector<worker_state> states(workers);
    std::vector<subscription> subs;
    for (std::size_t w = 0; w < workers; ++w) {
        subs.push_back(b.subscribe(
            "work",
            [&states, w](delivery& d) {
                worker_state& self = states[w];
                self.batch.push_back(std::move(d));
                if (self.batch.size() < batch) return;
                self.batch.back().ack(true);
                for (const auto& done : self.batch) self.processed.push_back(id_of(done));
                self.batch.clear();
            },
            manual_options("w" + std::to_string(w), 8)));
    }

    std::atomic<std::size_t> unroutable{0};
    auto pool = std::make_unique<dispatchers<broker>>(b, workers);
    {
        std::vector<joining_thread> threads;
        for (std::size_t p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] { unroutable += publish_ids(b, "work", p * per_producer, per_producer); });
        }
    } // 1. producers stop
    pool.reset(); // 2. running callbacks finish, no new ones start

    std::size_t held = 0;
    std::size_t processed = 0;
    std::vector<int> times(total, 0);
    std::vector<bool> was_held(total, false);
    for (const auto& s : states) {
        held += s.batch.size();
        processed += s.processed.size();
        for (std::size_t id : s.processed) ++times[id];
        for (const auto& d : s.batch) was_held[id_of(d)] = true;
    }
    const auto before = b.queue_stats("work");
    // Unacked: what the callbacks hold, and what was handed to a worker as it arrived whose
    // callback the stopped dispatchers never ran.
    const std::size_t handed = before.awaiting_callback;
    CHECK(before.acked == processed);
    CHECK(before.unacked == held + handed);

    subs.clear(); // 3. subscriptions end: the held and handed deliveries go back, in place, redelivered
    for (auto& s : states) s.batch.clear();
    const auto after = b.queue_stats("work");
    CHECK(after.unacked == 0);
    CHECK(after.requeued == held + handed);
    CHECK(after.consumers == 0);
    CHECK(after.ready == total - processed);
    CHECK(after.accounted());

    std::size_t back_redelivered = 0;
    std::size_t held_but_not_redelivered = 0;
    while (auto d = b.try_get("work")) {
        const std::size_t id = id_of(*d);
        ++times[id];
        if (d->redelivered()) ++back_redelivered;
        if (was_held[id] && !d->redelivered()) ++held_but_not_redelivered;
    }
    CHECK(unroutable.load() == 0);
    CHECK(std::count(times.begin(), times.end(), 1) == static_cast<std::ptrdiff_t>(total));
    CHECK(back_redelivered == held + handed);
    CHECK(held_but_not_redelivered == 0);
}

TEST_CASE("shutdown: ending subscriptions while their callbacks run on other threads", "[multithread][shutdown]") {
    // Each consumer's callback uses state of its own, destroyed right after its subscription
    // ends: release() must wait for a callback running elsewhere (ASan and TSan see it if
    // not), and no callback may start after it.
    constexpr std::size_t consumers = 4;
    constexpr std::size_t total = 4000;
    broker b;
    b.declare_queue("q");
    struct state {
        std::string scratch = "alive";
    };
    std::array<std::atomic<std::size_t>, consumers> calls{};
    std::array<std::size_t, consumers> calls_at_release{};
    std::vector<std::unique_ptr<state>> states;
    std::vector<subscription> subs;
    for (std::size_t i = 0; i < consumers; ++i) {
        states.push_back(std::make_unique<state>());
        subs.push_back(b.subscribe(
            "q",
            [s = states.back().get(), &count = calls[i]](delivery& d) {
                s->scratch.assign(d.body());
                std::this_thread::sleep_for(100us); // long enough to be caught running
                s->scratch.append(" done");
                d.ack();
                ++count;
            },
            manual_options("c" + std::to_string(i), 4)));
    }
    {
        dispatchers<broker> pool(b, 3);
        joining_thread producer([&] { (void)publish_ids(b, "q", 0, total); });
        REQUIRE(wait_until([&] { return b.queue_stats("q").acked >= 200; }));
        for (std::size_t i = 0; i < consumers; ++i) {
            subs[i].release();
            calls_at_release[i] = calls[i].load();
            states[i].reset(); // its callback is done with it
            std::this_thread::sleep_for(2ms);
        }
        producer.join();
        std::this_thread::sleep_for(5ms); // time for a wrongly started callback to show
    }
    std::size_t handled = 0;
    for (std::size_t i = 0; i < consumers; ++i) {
        CHECK(calls[i].load() == calls_at_release[i]);
        handled += calls[i].load();
    }
    const auto s = b.queue_stats("q");
    CHECK(s.acked == handled);
    CHECK(s.unacked == 0);
    CHECK(s.requeued == 0); // each callback acked its delivery before its release returned
    CHECK(s.ready == total - handled);
    CHECK(s.consumers == 0);
    CHECK(s.accounted());
}

TEST_CASE("shutdown: pullers stop on a flag and give back what they hold: each message acked once or still queued",
          "[multithread][shutdown]") {
    // The try_get_for style: no subscription, so the pullers give back what they hold
    // themselves (nack with requeue) before they stop. Each settles its own deliveries one
    // by one: ack(multiple) would also settle other threads' gets, which share one owner.
    constexpr std::size_t total = 4000;
    constexpr std::size_t pullers = 3;
    broker b;
    b.declare_queue("q");
    std::atomic<bool> stop{false};
    std::array<std::vector<std::size_t>, pullers> acked;
    std::array<std::size_t, pullers> returned{};
    {
        std::vector<joining_thread> threads;
        for (std::size_t p = 0; p < pullers; ++p) {
            threads.emplace_back([&, p] {
                std::vector<delivery> holding; // acked in twos
                while (!stop.load()) {
                    auto d = b.try_get_for("q", 2ms, warren::ack_mode::manual);
                    if (!d) continue;
                    holding.push_back(std::move(*d));
                    if (holding.size() == 2) {
                        for (auto& x : holding) {
                            x.ack();
                            acked[p].push_back(id_of(x));
                        }
                        holding.clear();
                    }
                }
                for (auto& d : holding) d.nack(false, true);
                returned[p] = holding.size();
            });
        }
        joining_thread producer([&] { (void)publish_ids(b, "q", 0, total); });
        producer.join();
        REQUIRE(wait_until([&] { return b.queue_stats("q").acked >= total / 2; }));
        stop = true;
    }
    std::vector<int> times(total, 0);
    std::size_t acked_count = 0;
    std::size_t returned_count = 0;
    for (std::size_t p = 0; p < pullers; ++p) {
        for (std::size_t id : acked[p]) ++times[id];
        acked_count += acked[p].size();
        returned_count += returned[p];
    }
    const auto s = b.queue_stats("q");
    CHECK(s.acked == acked_count);
    CHECK(s.requeued == returned_count);
    CHECK(s.unacked == 0);
    CHECK(s.ready == total - acked_count);
    CHECK(s.accounted());
    while (auto d = b.try_get("q")) ++times[id_of(*d)];
    CHECK(std::count(times.begin(), times.end(), 1) == static_cast<std::ptrdiff_t>(total));
}

TEST_CASE("shutdown: a broker destroyed after its threads, with messages queued, unacked and held outside",
          "[multithread][shutdown]") {
    // What is left when the broker goes: ready messages in plain, TTL/dead-letter and
    // length-limited queues (one message shared by all of them), deliveries held unacked by
    // the application, and live subscriptions. ASan's leak check covers the rest.
    auto b = std::make_unique<broker>();
    b->declare_exchange("fan", "fanout");
    warren::queue_options ttl;
    ttl.arguments = {{"x-message-ttl", 60000}, {"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dlq"}};
    warren::queue_options capped;
    capped.arguments = {{"x-max-length", 100}, {"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dlq"}};
    b->declare_queue("plain");
    b->declare_queue("ttl", ttl);
    b->declare_queue("capped", capped);
    b->declare_queue("dlq");
    for (const char* q : {"plain", "ttl", "capped"}) b->bind_queue(q, "fan");

    std::mutex held_mutex;
    std::vector<delivery> held;
    std::atomic<int> cancels{0};
    warren::consumer_options keeper = manual_options("keeper", 50);
    keeper.on_cancel = [&] { ++cancels; };
    std::vector<subscription> subs;
    subs.push_back(b->subscribe(
        "plain",
        [&](delivery& d) {
            std::lock_guard lock(held_mutex);
            held.push_back(std::move(d));
        },
        keeper));
    subs.push_back(b->subscribe("dlq", [](delivery&) {}));
    constexpr std::size_t per_producer = 1000;
    {
        dispatchers<broker> pool(*b, 2);
        std::vector<joining_thread> producers;
        for (std::size_t p = 0; p < 2; ++p) {
            producers.emplace_back([&, p] {
                auto fan = b->make_publisher("fan");
                for (std::size_t i = 0; i < per_producer; ++i) {
                    (void)fan.publish(to_queue<broker>("", std::to_string(p * per_producer + i)));
                }
            });
        }
        for (auto& t : producers) t.join();
        REQUIRE(wait_until([&] {
            std::lock_guard lock(held_mutex);
            return held.size() == 50; // the keeper's prefetch
        }));
    } // every thread joined
    auto got = b->try_get("ttl", warren::ack_mode::manual);
    REQUIRE(got);
    const auto plain = b->queue_stats("plain");
    CHECK(plain.ready == 2 * per_producer - 50);
    CHECK(plain.unacked == 50);
    CHECK(b->queue_stats("capped").ready == 100);
    CHECK(b->queue_stats("dlq").enqueued == 2 * per_producer - 100); // dropped from capped's head
    const std::string first_held = held.front().body();
    const std::string got_body = got->body();

    b.reset();

    CHECK(cancels.load() == 0); // the broker's end is not a basic.cancel
    for (const auto& s : subs) CHECK_FALSE(s.active());
    for (auto& s : subs) s.release();
    // Deliveries outlive the broker: readable, and settling them does nothing.
    CHECK(held.front().body() == first_held);
    REQUIRE_NOTHROW(held.front().ack());
    REQUIRE_NOTHROW(held.back().reject(false));
    REQUIRE_NOTHROW(got->nack(false, true));
    CHECK(got->body() == got_body);
    CHECK((got_body == "0" || got_body == std::to_string(per_producer))); // the first of one producer
    held.clear();
}
