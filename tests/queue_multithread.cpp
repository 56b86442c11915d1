// Queue features of concurrent_broker under threads: a length-limited queue with a
// dead-letter exchange, publisher confirms at a reject-publish limit, single-active-consumer
// failover and the cancel notification, while publishers, consumers and dispatchers race.
//
// Catch2's assertions are not thread-safe: worker threads only record what they saw, and
// the test thread checks it after joining them.

#include <warren/broker.hpp>
#include <warren/topology.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/threads.hpp"

using warren_test::header_text;
using warren_test::id_of;
using warren_test::joining_thread;
using warren_test::to_queue;
using namespace std::chrono_literals;

namespace {

using broker = warren::concurrent_broker;
using delivery = broker::delivery;
using steady = std::chrono::steady_clock;

/// Waits until `done()` or `limit` passed; returns whether it is done.
bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    const auto deadline = steady::now() + limit;
    while (!done()) {
        if (steady::now() > deadline) return false;
        std::this_thread::sleep_for(200us);
    }
    return true;
}

/// How often each id in [0, n) occurs in `ids`; ids out of range count in `stray`.
std::vector<int> occurrences(const std::vector<std::size_t>& ids, std::size_t n, std::size_t& stray) {
    std::vector<int> times(n, 0);
    for (std::size_t id : ids) {
        if (id < n) ++times[id];
        else ++stray;
    }
    return times;
}

/// Where two sequences first differ, with a little context, or "none".
std::string first_difference(const std::vector<std::size_t>& got, const std::vector<std::size_t>& want) {
    const std::size_t n = std::min(got.size(), want.size());
    std::size_t i = 0;
    while (i < n && got[i] == want[i]) ++i;
    if (i == n && got.size() == want.size()) return "none";
    auto window = [&](const std::vector<std::size_t>& v) {
        std::string out;
        for (std::size_t j = i < 3 ? 0 : i - 3; j < std::min(v.size(), i + 6); ++j) out += std::to_string(v[j]) + " ";
        return out;
    };
    return "at " + std::to_string(i) + ": got " + window(got) + "| expected " + window(want);
}

} // namespace

TEST_CASE("concurrent queue: a max-length drop-head queue with a dead-letter exchange loses nothing while "
          "publishers, pullers and a consumer ack, nack and reject",
          "[multithread][queue][stress]") {
    constexpr std::size_t publishers = 3;
    constexpr std::size_t per_publisher = 3000;
    constexpr std::size_t total = publishers * per_publisher;
    broker b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    warren::queue_options limited;
    limited.arguments.set("x-max-length", 64);
    limited.arguments.set("x-dead-letter-exchange", "dlx");
    b.declare_queue("work", limited);

    // Every consumer settles by the same rule: some first deliveries go back, some
    // messages are rejected (dead-lettered), the rest acked.
    enum class verdict { ack, requeue, reject };
    auto decide = [](std::size_t id, bool redelivered) {
        if (!redelivered && id % 7 == 0) return verdict::requeue;
        if (id % 11 == 0) return verdict::reject;
        return verdict::ack;
    };
    struct log {
        std::vector<std::size_t> acked;
        std::size_t requeued = 0;
        std::size_t rejected = 0;
        void settle(delivery& d, verdict v) {
            switch (v) {
            case verdict::ack:
                acked.push_back(id_of(d));
                d.ack();
                break;
            case verdict::requeue:
                ++requeued;
                d.reject(true);
                break;
            case verdict::reject:
                ++rejected;
                d.reject(false);
                break;
            }
        }
    };
    constexpr std::size_t pullers = 2;
    std::vector<log> logs(pullers + 1);
    log& consumer_log = logs[pullers];

    warren::consumer_options options;
    options.ack = warren::ack_mode::manual;
    options.prefetch = 8;
    auto sub = b.subscribe(
        "work", [&](delivery& d) { consumer_log.settle(d, decide(id_of(d), d.redelivered())); }, options);

    std::atomic<bool> stop{false};
    std::atomic<std::size_t> published{0};
    std::vector<joining_thread> threads;
    for (std::size_t p = 0; p < publishers; ++p) {
        threads.emplace_back([&, p] {
            auto pub = b.make_publisher("");
            for (std::size_t i = 0; i < per_publisher; ++i) {
                published += pub.publish(to_queue<broker>("work", std::to_string(p * per_publisher + i)));
            }
        });
    }
    for (std::size_t c = 0; c < pullers; ++c) {
        threads.emplace_back([&, c] {
            while (!stop.load()) {
                auto d = b.try_get_for("work", 2ms, warren::ack_mode::manual);
                if (d) logs[c].settle(*d, decide(id_of(*d), d->redelivered()));
            }
        });
    }
    threads.emplace_back([&] {
        while (!stop.load()) {
            if (b.dispatch(32) == 0) std::this_thread::sleep_for(50us);
        }
    });
    for (std::size_t p = 0; p < publishers; ++p) threads[p].join();
    // Nothing is in flight once the queue has nothing ready and nothing unacked: every
    // consumer settles in manual mode.
    const bool drained = wait_for([&] {
        const auto s = b.queue_stats("work");
        return s.ready == 0 && s.unacked == 0;
    });
    stop = true;
    for (auto& t : threads) t.join();
    sub.release();
    REQUIRE(drained);

    std::vector<std::size_t> settled; // each id's one final outcome
    std::size_t acked = 0, requeued = 0, rejected = 0;
    for (const auto& l : logs) {
        settled.insert(settled.end(), l.acked.begin(), l.acked.end());
        acked += l.acked.size();
        requeued += l.requeued;
        rejected += l.rejected;
    }
    std::size_t dead_maxlen = 0, dead_rejected = 0, dead_other = 0;
    while (auto d = b.try_get("dead")) {
        settled.push_back(id_of(*d));
        const std::string reason = header_text(d->properties(), "x-first-death-reason");
        if (reason == "maxlen") ++dead_maxlen;
        else if (reason == "rejected") ++dead_rejected;
        else ++dead_other;
        if (header_text(d->properties(), "x-first-death-queue") != "work") ++dead_other;
    }
    std::size_t stray = 0;
    const auto times = occurrences(settled, total, stray);
    CHECK(published.load() == total);
    CHECK(stray == 0);
    CHECK(dead_other == 0);
    CHECK(std::count(times.begin(), times.end(), 1) == static_cast<std::ptrdiff_t>(total));
    CHECK(dead_rejected == rejected);

    const auto s = b.queue_stats("work");
    CHECK(s.enqueued == total);
    CHECK(s.acked == acked);
    CHECK(s.requeued == requeued);
    CHECK(s.dead_lettered.rejected == rejected);
    CHECK(s.dead_lettered.maxlen == dead_maxlen);
    CHECK(s.dead_lettered.expired == 0);
    CHECK(s.dropped.total() == 0);
    CHECK(s.delivered == acked + requeued + rejected);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);
    CHECK(s.accounted());
    const auto dlx = b.exchange_stats("dlx");
    CHECK(dlx.published == s.dead_lettered.total());
    CHECK(dlx.unroutable == 0);
    const auto dead = b.queue_stats("dead");
    CHECK(dead.enqueued == s.dead_lettered.total());
    CHECK(dead.accounted());
    // The workload took every path.
    CHECK(requeued > 0);
    CHECK(rejected > 0);
    CHECK(dead_maxlen > 0);
    CHECK(acked > 0);
}

TEST_CASE("concurrent queue: publish_confirmed from several threads at a reject-publish limit: every publish is "
          "acked or nacked, and exactly the acked ones are consumed",
          "[multithread][queue][confirm]") {
    constexpr std::size_t publishers = 4;
    constexpr std::size_t per_publisher = 3000;
    broker b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    warren::queue_options reject;
    reject.arguments.set("x-max-length", 16);
    reject.arguments.set("x-overflow", "reject-publish");
    b.declare_queue("reject", reject);
    warren::queue_options reject_dlx;
    reject_dlx.arguments.set("x-max-length-bytes", 64);
    reject_dlx.arguments.set("x-overflow", "reject-publish-dlx");
    reject_dlx.arguments.set("x-dead-letter-exchange", "dlx");
    b.declare_queue("reject-dlx", reject_dlx);
    const std::string names[2] = {"reject", "reject-dlx"};

    // By queue: what publishers learnt from confirms, and what consumers took.
    struct outcome {
        std::vector<std::size_t> acked, nacked;
        std::size_t bad_confirms = 0; // a confirm whose counts contradict its ack
    };
    std::vector<std::array<outcome, 2>> confirms(publishers);
    std::vector<std::array<std::vector<std::size_t>, 2>> consumed(2);
    std::atomic<bool> publishing{true};
    std::atomic<bool> stop{false};
    std::vector<joining_thread> threads;
    for (std::size_t p = 0; p < publishers; ++p) {
        threads.emplace_back([&, p] {
            auto pub = b.make_publisher("");
            for (std::size_t i = 0; i < per_publisher; ++i) {
                const std::size_t id = p * per_publisher + i;
                const std::size_t q = id % 2;
                const warren::confirmation c = pub.publish_confirmed(to_queue<broker>(names[q], std::to_string(id)));
                outcome& o = confirms[p][q];
                if (c.ack) o.acked.push_back(id);
                else o.nacked.push_back(id);
                if (c.returned || c.routed + c.refused != 1 || c.ack != (c.routed == 1)) ++o.bad_confirms;
            }
        });
    }
    for (std::size_t c = 0; c < 2; ++c) {
        threads.emplace_back([&, c] {
            std::size_t turn = c;
            while (!stop.load()) {
                const std::size_t q = turn++ % 2;
                if (auto d = b.try_get(names[q])) consumed[c][q].push_back(id_of(*d));
                else std::this_thread::sleep_for(20us); // let the limit bite
            }
        });
    }
    for (std::size_t p = 0; p < publishers; ++p) threads[p].join();
    publishing = false;
    const bool drained = wait_for([&] { return b.message_count("reject") == 0 && b.message_count("reject-dlx") == 0; });
    stop = true;
    for (auto& t : threads) t.join();
    REQUIRE(drained);

    std::size_t total_acks = 0, total_nacks = 0, bad = 0;
    for (std::size_t q = 0; q < 2; ++q) {
        INFO("queue " << names[q]);
        std::vector<std::size_t> acked, nacked, taken;
        for (const auto& per : confirms) {
            acked.insert(acked.end(), per[q].acked.begin(), per[q].acked.end());
            nacked.insert(nacked.end(), per[q].nacked.begin(), per[q].nacked.end());
            bad += per[q].bad_confirms;
        }
        for (const auto& per : consumed) taken.insert(taken.end(), per[q].begin(), per[q].end());
        total_acks += acked.size();
        total_nacks += nacked.size();
        CHECK(acked.size() + nacked.size() == publishers * per_publisher / 2);
        std::sort(acked.begin(), acked.end());
        std::sort(taken.begin(), taken.end());
        CHECK(taken == acked); // each acked message consumed once, no nacked one
        const auto s = b.queue_stats(names[q]);
        CHECK(s.enqueued == acked.size());
        CHECK(s.refused == nacked.size());
        CHECK(s.acked == acked.size());
        CHECK(s.dead_lettered.total() == 0); // refused messages were never the queue's
        CHECK(s.accounted());
        CHECK(nacked.size() > 0); // the limit was reached
        if (q == 1) {
            // reject-publish-dlx dead-letters exactly the nacked ones, reason maxlen.
            std::vector<std::size_t> dead;
            std::size_t wrong_reason = 0;
            while (auto d = b.try_get("dead")) {
                dead.push_back(id_of(*d));
                if (header_text(d->properties(), "x-first-death-reason") != "maxlen") ++wrong_reason;
            }
            std::sort(dead.begin(), dead.end());
            std::sort(nacked.begin(), nacked.end());
            CHECK(dead == nacked);
            CHECK(wrong_reason == 0);
        }
    }
    CHECK(bad == 0);
    CHECK(total_acks + total_nacks == publishers * per_publisher);
    const auto x = b.exchange_stats("");
    CHECK(x.published == publishers * per_publisher);
    CHECK(x.nacked == total_nacks);
    CHECK(x.unroutable == 0);
}

TEST_CASE("concurrent queue: single-active-consumer failover while publishing: one consumer at a time, nothing "
          "lost, acks in publishing order",
          "[multithread][queue][sac]") {
    constexpr std::size_t messages = 6000;
    constexpr std::size_t consumers = 8;
    broker b;
    warren::queue_options sac;
    sac.arguments.set("x-single-active-consumer", true);
    b.declare_queue("q", sac);

    std::atomic<std::uint64_t> clock{0}; // orders events across threads
    struct consumer_log {
        std::vector<delivery> held;     // unacked, acked three at a time
        std::vector<std::size_t> acked; // in ack order
        std::vector<std::uint64_t> at;  // when each delivery arrived
        std::size_t wrong_flag = 0;     // redelivered missing on a repeat
    };
    std::vector<consumer_log> logs(consumers);
    std::vector<std::uint64_t> release_began(consumers, 0);
    std::vector<std::uint64_t> release_ended(consumers, 0);
    std::vector<std::atomic<bool>> seen(messages); // delivered before (touched by one callback at a time)
    std::atomic<std::size_t> acked_total{0};
    std::vector<std::atomic<std::size_t>> acked_by(consumers);
    std::atomic<std::size_t> handovers{0};
    constexpr std::size_t segment = messages / consumers;

    std::vector<std::optional<broker::subscription>> subs(consumers);
    for (std::size_t c = 0; c < consumers; ++c) {
        warren::consumer_options o;
        o.tag = "c" + std::to_string(c);
        o.ack = warren::ack_mode::manual;
        o.prefetch = 10;
        subs[c].emplace(b.subscribe(
            "q",
            [&, c](delivery& d) {
                consumer_log& log = logs[c];
                log.at.push_back(clock.fetch_add(1) + 1);
                const std::size_t id = id_of(d);
                // A first sight may be redelivered too: handed to a consumer that ended before
                // its callback ran (delivered, then requeued, as RabbitMQ does).
                if (seen[id].exchange(true) && !d.redelivered()) ++log.wrong_flag;
                log.held.push_back(std::move(d));
                std::this_thread::yield(); // a callback that takes a moment: handovers meet it running
                if (log.held.size() == 3) {
                    log.held.back().ack(true);
                    for (const auto& h : log.held) log.acked.push_back(id_of(h));
                    log.held.clear();
                    acked_total += 3;
                    acked_by[c] += 3;
                }
            },
            o));
    }

    std::atomic<bool> stop{false};
    std::vector<joining_thread> threads;
    threads.emplace_back([&] {
        // At most `window` messages ahead of the acks, and segment k only after k handovers,
        // so every consumer finds work however the threads are scheduled.
        constexpr std::size_t window = 300;
        auto pub = b.make_publisher("");
        for (std::size_t i = 0; i < messages; ++i) {
            while ((i >= acked_total.load() + window || handovers.load() < i / segment) && !stop.load()) {
                std::this_thread::yield();
            }
            (void)pub.publish(to_queue<broker>("q", std::to_string(i)));
        }
    });
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            while (!stop.load()) {
                if (b.dispatch(16) == 0) std::this_thread::sleep_for(50us);
            }
        });
    }
    // Hand over from one consumer to the next once it has done some work, while messages flow.
    std::vector<bool> next_active_after(consumers - 1, false);
    for (std::size_t c = 0; c + 1 < consumers; ++c) {
        (void)wait_for([&] { return acked_by[c].load() >= segment / 2; });
        release_began[c] = clock.fetch_add(1) + 1;
        subs[c].reset();
        release_ended[c] = clock.fetch_add(1) + 1;
        ++handovers;
        const auto snap = b.snapshot();
        for (const auto& sc : snap.consumers) {
            if (sc.tag == "c" + std::to_string(c + 1)) next_active_after[c] = sc.active;
        }
    }
    // The last one acks whatever it holds once the publisher is done; messages % 3 may leave some.
    threads[0].join();
    const bool all = wait_for([&] { return acked_total.load() + 3 > messages && b.message_count("q") == 0; });
    stop = true;
    for (auto& t : threads) t.join();
    REQUIRE(all);
    consumer_log& last = logs[consumers - 1];
    if (!last.held.empty()) {
        last.held.back().ack(true);
        for (const auto& h : last.held) last.acked.push_back(id_of(h));
        last.held.clear();
    }
    subs[consumers - 1].reset();

    // Acks in order across the handovers: each consumer's unacked messages went back to
    // their places and the next consumer took them first.
    std::vector<std::size_t> order;
    for (const auto& log : logs) order.insert(order.end(), log.acked.begin(), log.acked.end());
    std::vector<std::size_t> expected(messages);
    for (std::size_t i = 0; i < messages; ++i) expected[i] = i;
    CHECK(order.size() == messages);
    CHECK(first_difference(order, expected) == "none");
    for (std::size_t c = 0; c < consumers; ++c) {
        INFO("consumer " << c);
        CHECK(logs[c].wrong_flag == 0);
        CHECK_FALSE(logs[c].at.empty());
        // Only the active consumer receives: c's deliveries all came before its release
        // ended, and c+1's all after c's release began.
        if (c + 1 < consumers && !logs[c].at.empty() && !logs[c + 1].at.empty()) {
            CHECK(*std::max_element(logs[c].at.begin(), logs[c].at.end()) < release_ended[c]);
            CHECK(*std::min_element(logs[c + 1].at.begin(), logs[c + 1].at.end()) > release_began[c]);
            CHECK(next_active_after[c]);
        }
    }
    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == messages);
    CHECK(s.acked == messages);
    CHECK(s.delivered == messages + s.requeued);
    CHECK(s.redelivered == s.requeued);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);
    CHECK(s.accounted());
}

TEST_CASE("concurrent queue: on_cancel runs once per consumer when another thread deletes the queue, and may "
          "declare it again and subscribe while publishers and dispatchers run",
          "[multithread][queue][cancel]") {
    broker b;
    b.declare_queue("q");
    std::mutex subs_mutex;
    std::vector<broker::subscription> subs;
    std::atomic<std::size_t> cancels{0};
    std::atomic<std::size_t> consumed{0};
    std::function<warren::consumer_options()> renewing; // a consumer that replaces itself when cancelled
    renewing = [&] {
        warren::consumer_options o;
        o.on_cancel = [&] {
            ++cancels;
            b.declare_queue("q");
            auto sub = b.subscribe("q", [&](delivery&) { ++consumed; }, renewing());
            std::lock_guard lock(subs_mutex);
            subs.push_back(std::move(sub));
        };
        return o;
    };
    for (int i = 0; i < 2; ++i) subs.push_back(b.subscribe("q", [&](delivery&) { ++consumed; }, renewing()));

    std::atomic<bool> stop{false};
    std::atomic<std::size_t> routed{0};
    std::vector<joining_thread> threads;
    threads.emplace_back([&] {
        for (std::size_t i = 0; !stop.load(); ++i) routed += b.publish("", to_queue<broker>("q", std::to_string(i)));
    });
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            while (!stop.load()) {
                if (b.dispatch(16) == 0) std::this_thread::sleep_for(50us);
            }
        });
    }
    constexpr std::size_t rounds = 40;
    std::size_t deleted_ready = 0;
    for (std::size_t r = 0; r < rounds; ++r) {
        std::this_thread::sleep_for(1ms);
        deleted_ready += b.delete_queue("q"); // runs both on_cancel here, which redeclare
    }
    stop = true;
    for (auto& t : threads) t.join();

    CHECK(cancels.load() == 2 * rounds);
    REQUIRE(b.has_queue("q"));
    CHECK(b.consumer_count("q") == 2);
    const auto after = b.queue_stats("q"); // left: ready, or handed to a consumer whose callback is still to run
    const std::size_t left = after.ready + after.awaiting_callback;
    CHECK(consumed.load() + deleted_ready + left == routed.load());
    std::lock_guard lock(subs_mutex);
    const auto active = std::count_if(subs.begin(), subs.end(), [](const auto& s) { return s.active(); });
    CHECK(active == 2);
    CHECK(subs.size() == 2 + 2 * rounds);
}
