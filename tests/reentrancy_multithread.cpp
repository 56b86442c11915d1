// What consumer callbacks may do to a concurrent_broker while other threads do the same:
// publish (to their own queue too), subscribe and unsubscribe (themselves and others),
// declare, bind and delete (their own queue too), purge, and settle deliveries of other
// queues. Each test checks exact outcomes: which messages went where, the counters, and
// that every accepted message is accounted for. The rules are in docs/threading.md; the
// single-threaded cases of each rule, for both policies, are in reentrancy.cpp.

#include <warren/broker.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/threads.hpp"

using warren_test::dispatchers;
using warren_test::joining_thread;
using warren_test::manual_options;
using warren_test::strings;
using warren_test::to_queue;
using warren_test::wait_until;
using namespace std::chrono_literals;

namespace {

using broker = warren::concurrent_broker;
using delivery = broker::delivery;
using subscription = broker::subscription;

/// Everything a thread-safe log of strings needs: callbacks on several threads add, the
/// test thread reads after the threads are done.
class shared_log {
public:
    void add(std::string s) {
        std::lock_guard lock(mutex_);
        items_.push_back(std::move(s));
    }
    [[nodiscard]] strings sorted() const {
        std::lock_guard lock(mutex_);
        strings copy = items_;
        std::sort(copy.begin(), copy.end());
        return copy;
    }
    [[nodiscard]] std::size_t size() const {
        std::lock_guard lock(mutex_);
        return items_.size();
    }

private:
    mutable std::mutex mutex_;
    strings items_;
};

/// Bodies "<prefix>0" ... "<prefix>(n-1)", sorted as strings, to compare with a sorted log.
strings numbered(std::string_view prefix, std::size_t n) {
    strings out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(std::string(prefix) + std::to_string(i));
    std::sort(out.begin(), out.end());
    return out;
}

/// How many times each element occurs more than once, summed: 0 means no duplicates.
std::size_t duplicates(const strings& sorted) {
    std::size_t n = 0;
    for (std::size_t i = 1; i < sorted.size(); ++i) n += sorted[i] == sorted[i - 1] ? 1 : 0;
    return n;
}

/// An exchange type whose route() waits while the gate is shut. A publish through it holds
/// the broker's topology lock (shared) for as long as the test wants, so a test can make a
/// topology change wait at a known point.
struct gate_exchange {
    static constexpr std::string_view type_name = "x-test-gate";
    inline static std::atomic<bool> shut{false};
    inline static std::atomic<bool> entered{false};

    void bind(warren::destination, std::string_view, const warren::field_table&) {}
    void unbind(warren::destination, std::string_view, const warren::field_table&) {}
    void route(const warren::routing_view&, warren::destination_list&) const {
        entered = true;
        while (shut.load()) std::this_thread::sleep_for(1ms);
    }
};

} // namespace

// ---------------------------------------------------------------------------------------
// publishing from callbacks

TEST_CASE("reentrancy (threads): callbacks republish to their own queue and onwards while others publish",
          "[multithread][reentrancy]") {
    // Each message hops through "chain" three times (a callback republishes it to its own
    // queue), then goes to "sink". Three consumers run on three dispatcher threads while
    // two threads publish new messages.
    constexpr std::size_t per_publisher = 1500;
    constexpr std::size_t total = 2 * per_publisher;
    constexpr int hops = 3;
    broker b;
    b.declare_queue("chain");
    b.declare_queue("sink");
    std::atomic<std::size_t> publish_failures{0};
    std::vector<shared_log> hop_log(hops + 1); // ids seen at each hop
    auto hop = [&](delivery& d) {
        const std::string& body = d.body(); // "<id>:<hop>"
        const std::size_t colon = body.find(':');
        const std::string id = body.substr(0, colon);
        const int n = std::stoi(body.substr(colon + 1));
        hop_log[static_cast<std::size_t>(n)].add(id);
        const std::size_t routed = n < hops ? b.publish("", to_queue<broker>("chain", id + ":" + std::to_string(n + 1)))
                                            : b.publish("", to_queue<broker>("sink", id));
        if (routed != 1) ++publish_failures;
        d.ack();
    };
    std::vector<subscription> subs;
    for (int i = 0; i < 3; ++i) subs.push_back(b.subscribe("chain", hop, manual_options("c" + std::to_string(i), 4)));
    {
        dispatchers<broker> pool(b, 3);
        std::vector<joining_thread> publishers;
        for (std::size_t p = 0; p < 2; ++p) {
            publishers.emplace_back([&, p] {
                for (std::size_t i = 0; i < per_publisher; ++i) {
                    if (b.publish("", to_queue<broker>("chain", std::to_string(p * per_publisher + i) + ":0")) != 1) {
                        ++publish_failures;
                    }
                }
            });
        }
        for (auto& t : publishers) t.join();
        REQUIRE(wait_until([&] { return b.message_count("sink") == total; }));
    }
    subs.clear();

    CHECK(publish_failures.load() == 0);
    for (const auto& log : hop_log) CHECK(log.sorted() == numbered("", total)); // each id once per hop
    const auto chain = b.queue_stats("chain");
    CHECK(chain.enqueued == total * (hops + 1));
    CHECK(chain.delivered == chain.enqueued);
    CHECK(chain.acked == chain.enqueued);
    CHECK(chain.ready == 0);
    CHECK(chain.unacked == 0);
    CHECK(chain.accounted());
    strings sink = warren_test::drain(b, "sink");
    std::sort(sink.begin(), sink.end());
    CHECK(sink == numbered("", total));
}

TEST_CASE("reentrancy (threads): callbacks settle deliveries of another queue, into its dead-letter queue too",
          "[multithread][reentrancy][settle]") {
    // The test thread takes every order with a manual get; a "decision" message per order
    // then tells a callback (on one of three dispatcher threads) to ack, reject (dead-letter)
    // or requeue it, while a puller thread takes and acks the requeued orders.
    constexpr std::size_t orders = 600;
    broker b;
    warren::queue_options dead_lettering;
    dead_lettering.arguments = {{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dead"}};
    b.declare_queue("orders", dead_lettering);
    b.declare_queue("dead");
    b.declare_queue("decisions");
    warren_test::send_numbered(b, "orders", "o", static_cast<int>(orders));
    std::vector<std::optional<delivery>> held(orders); // slot i: touched by decision i's callback only
    for (std::size_t i = 0; i < orders; ++i) {
        held[i] = b.try_get("orders", warren::ack_mode::manual);
        REQUIRE(held[i]);
        REQUIRE(held[i]->body() == "o" + std::to_string(i));
    }
    std::atomic<std::size_t> settle_errors{0};
    auto decide = [&](delivery& d) {
        const std::size_t i = std::stoul(d.body());
        try {
            switch (i % 3) {
            case 0: held[i]->ack(); break;
            case 1: held[i]->reject(false); break; // to "dead", routed once the queue's lock is released
            default: held[i]->nack(false, true); break;
            }
        } catch (...) {
            ++settle_errors;
        }
        d.ack();
    };
    std::vector<subscription> subs;
    subs.push_back(b.subscribe("decisions", decide, manual_options("d0", 8)));
    subs.push_back(b.subscribe("decisions", decide, manual_options("d1", 8)));

    constexpr std::size_t requeues = orders / 3;
    shared_log pulled;
    {
        dispatchers<broker> pool(b, 3);
        joining_thread puller([&] {
            const auto deadline = std::chrono::steady_clock::now() + 20s;
            while (pulled.size() < requeues && std::chrono::steady_clock::now() < deadline) {
                auto d = b.try_get_for("orders", 5ms, warren::ack_mode::manual);
                if (!d) continue;
                pulled.add(d->body() + (d->redelivered() ? "*" : ""));
                d->ack();
            }
        });
        std::vector<joining_thread> publishers;
        for (std::size_t p = 0; p < 2; ++p) {
            publishers.emplace_back([&, p] {
                for (std::size_t i = p; i < orders; i += 2) {
                    (void)b.publish("", to_queue<broker>("decisions", std::to_string(i)));
                }
            });
        }
        for (auto& t : publishers) t.join();
        puller.join();
        REQUIRE(wait_until([&] { return b.queue_stats("decisions").acked == orders; }));
    }
    subs.clear();

    CHECK(settle_errors.load() == 0);
    strings expect_dead;
    strings expect_pulled;
    for (std::size_t i = 0; i < orders; ++i) {
        if (i % 3 == 1) expect_dead.push_back("o" + std::to_string(i));
        if (i % 3 == 2) expect_pulled.push_back("o" + std::to_string(i) + "*");
    }
    std::sort(expect_dead.begin(), expect_dead.end());
    std::sort(expect_pulled.begin(), expect_pulled.end());
    CHECK(pulled.sorted() == expect_pulled);
    strings dead = warren_test::drain(b, "dead");
    std::sort(dead.begin(), dead.end());
    CHECK(dead == expect_dead);
    const auto s = b.queue_stats("orders");
    CHECK(s.enqueued == orders);
    CHECK(s.delivered == orders + requeues);
    CHECK(s.acked == orders - orders / 3);
    CHECK(s.requeued == requeues);
    CHECK(s.dead_lettered.rejected == orders / 3);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);
    CHECK(s.accounted());
    CHECK(b.queue_stats("dead").enqueued == orders / 3);
    CHECK(b.queue_stats("decisions").accounted());
}

TEST_CASE("reentrancy (threads): callbacks purge their own queue while others publish and consume",
          "[multithread][reentrancy][purge]") {
    constexpr std::size_t per_publisher = 1500;
    constexpr std::size_t total = 2 * per_publisher;
    broker b;
    b.declare_queue("q");
    std::atomic<std::size_t> purged{0};
    std::atomic<std::size_t> acked{0};
    auto consume = [&](delivery& d) {
        if (d.body().ends_with("purge")) purged += b.purge_queue("q");
        d.ack(); // the in-flight delivery is not ready, so the purge leaves it
        ++acked;
    };
    auto s0 = b.subscribe("q", consume, manual_options("c0", 4));
    auto s1 = b.subscribe("q", consume, manual_options("c1", 4));
    {
        dispatchers<broker> pool(b, 2);
        std::vector<joining_thread> publishers;
        for (std::size_t p = 0; p < 2; ++p) {
            publishers.emplace_back([&, p] {
                for (std::size_t i = 0; i < per_publisher; ++i) {
                    (void)b.publish("", to_queue<broker>("q", std::to_string(p) + "-" + std::to_string(i) +
                                                               (i % 50 == 49 ? "-purge" : "")));
                }
            });
        }
        for (auto& t : publishers) t.join();
        REQUIRE(wait_until([&] {
            const auto s = b.queue_stats("q");
            return s.ready == 0 && s.unacked == 0;
        }));
    }
    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == total);
    CHECK(s.purged == purged.load());
    CHECK(s.acked == acked.load());
    CHECK(s.acked + s.purged == total);
    CHECK(s.delivered == s.acked);
    CHECK(s.accounted());
}

TEST_CASE("reentrancy (threads): callbacks declare, bind, unbind and delete while others publish",
          "[multithread][reentrancy][topology]") {
    // Each control message makes a callback build a queue reached from "events" by two
    // paths (directly, and through an exchange of its own), publish a marker through
    // "events", find it in its queue exactly once, and tear everything down again; a
    // publisher keeps publishing to "events" meanwhile.
    constexpr std::size_t published = 3000;
    constexpr std::size_t controls = 150;
    broker b;
    b.declare_exchange("events", "fanout");
    b.declare_queue("stable");
    b.bind_queue("stable", "events");
    b.declare_queue("control");
    std::atomic<std::size_t> errors{0};
    std::atomic<std::size_t> markers_once{0};
    std::atomic<std::size_t> handled{0}; // control messages whose callback returned
    auto build_and_tear_down = [&](delivery& d) {
        const std::string i = d.body();
        const std::string queue = "tmp-" + i;
        const std::string exchange = "x-" + i;
        try {
            b.declare_queue(queue);
            b.bind_queue(queue, "events");
            b.declare_exchange(exchange, "topic");
            b.bind_exchange(exchange, "events");
            b.bind_queue(queue, exchange, "#");
            if (b.publish("events", to_queue<broker>("k", "marker-" + i)) < 2) ++errors; // "stable" and its own
            std::size_t own = 0;
            while (auto got = b.try_get(queue)) own += got->body() == "marker-" + i ? 1U : 0U;
            if (own == 1) ++markers_once;
            b.unbind_queue(queue, exchange, "#");
            b.delete_exchange(exchange);
            (void)b.delete_queue(queue);
        } catch (...) {
            ++errors;
        }
        ++handled;
    };
    auto c0 = b.subscribe("control", build_and_tear_down);
    auto c1 = b.subscribe("control", build_and_tear_down);
    std::atomic<std::size_t> unroutable{0};
    {
        dispatchers<broker> pool(b, 2);
        joining_thread publisher([&] {
            auto events = b.make_publisher("events");
            for (std::size_t i = 0; i < published; ++i) {
                if (events.publish(to_queue<broker>("k", "p" + std::to_string(i))) == 0) ++unroutable;
            }
        });
        joining_thread controller([&] {
            for (std::size_t i = 0; i < controls; ++i) {
                (void)b.publish("", to_queue<broker>("control", std::to_string(i)));
            }
        });
        publisher.join();
        controller.join();
        // Not the queue's acked count: automatic deliveries are acked when handed over.
        REQUIRE(wait_until([&] { return handled.load() == controls; }));
    }
    CHECK(errors.load() == 0);
    CHECK(unroutable.load() == 0);
    CHECK(markers_once.load() == controls);
    // "stable" got every message once: the publisher's in order, and every marker.
    strings ps;
    strings markers;
    while (auto d = b.try_get("stable")) (d->body().starts_with("p") ? ps : markers).push_back(d->body());
    REQUIRE(ps.size() == published);
    bool in_order = true;
    for (std::size_t i = 0; i < published; ++i) in_order = in_order && ps[i] == "p" + std::to_string(i);
    CHECK(in_order);
    std::sort(markers.begin(), markers.end());
    CHECK(markers == numbered("marker-", controls));
    std::size_t left_over = 0;
    for (std::size_t i = 0; i < controls; ++i) {
        left_over += b.has_queue("tmp-" + std::to_string(i)) ? 1U : 0U;
        left_over += b.has_exchange("x-" + std::to_string(i)) ? 1U : 0U;
    }
    CHECK(left_over == 0);
    CHECK(b.queue_stats("stable").accounted());
}

// ---------------------------------------------------------------------------------------
// subscriptions ended from callbacks

TEST_CASE("reentrancy (threads): callbacks subscribe, end themselves and end others while messages flow",
          "[multithread][reentrancy][subscription]") {
    // Two "killer" consumers live throughout: each third message they get, they subscribe a
    // new worker; each fourth, they end a worker (waiting for its callback if it runs on
    // another thread). A worker ends its own subscription after five messages. No worker
    // ends another subscription, so no two callbacks wait for each other (see
    // docs/threading.md). Every message must be acked exactly once.
    constexpr std::size_t total = 3000;
    broker b;
    b.declare_queue("q");
    struct slot {
        std::mutex mutex;
        subscription sub;
        subscription take() {
            std::lock_guard lock(mutex);
            return std::move(sub);
        }
    };
    std::mutex pool_mutex;
    std::vector<std::shared_ptr<slot>> pool;
    std::atomic<std::size_t> spawned{0};
    std::atomic<std::size_t> ended_self{0};
    std::atomic<std::size_t> ended_by_killer{0};
    shared_log acked;
    std::atomic<std::size_t> next_worker{0};

    auto worker = [&](const std::shared_ptr<slot>& self) {
        return [&, weak = std::weak_ptr<slot>(self), n = 0](delivery& d) mutable {
            d.ack();
            acked.add(d.body());
            if (++n < 5) return;
            // The handle is stored just after subscribe() returns; until then there is
            // nothing to end, so try again on the next message.
            if (auto s = weak.lock()) {
                subscription mine = s->take();
                if (mine.active()) ++ended_self;
                mine.release(); // its own: no waiting
            }
        };
    };
    auto spawn = [&] {
        auto s = std::make_shared<slot>();
        auto sub = b.subscribe("q", worker(s), manual_options("w" + std::to_string(next_worker++), 2));
        {
            std::lock_guard lock(s->mutex);
            s->sub = std::move(sub);
        }
        std::lock_guard lock(pool_mutex);
        pool.push_back(std::move(s));
        ++spawned;
    };
    auto killer = [&, n = 0](delivery& d) mutable {
        d.ack();
        acked.add(d.body());
        ++n;
        if (n % 3 == 0) spawn();
        if (n % 4 == 0) {
            std::shared_ptr<slot> victim;
            {
                std::lock_guard lock(pool_mutex);
                if (!pool.empty()) {
                    victim = std::move(pool.back());
                    pool.pop_back();
                }
            }
            if (!victim) return;
            // Not under a lock the victim's callback takes: release() may wait for it.
            subscription taken = victim->take();
            if (taken.active()) ++ended_by_killer;
            taken.release();
        }
    };
    auto k0 = b.subscribe("q", killer, manual_options("k0", 2));
    auto k1 = b.subscribe("q", killer, manual_options("k1", 2));
    spawn();
    {
        dispatchers<broker> pool_threads(b, 3);
        joining_thread publisher([&] {
            for (std::size_t i = 0; i < total; ++i) (void)b.publish("", to_queue<broker>("q", "m" + std::to_string(i)));
        });
        publisher.join();
        REQUIRE(wait_until([&] { return acked.size() >= total; }));
    }
    k0.release();
    k1.release();
    for (auto& s : pool) s->take().release();

    const strings got = acked.sorted();
    CHECK(duplicates(got) == 0);
    CHECK(got == numbered("m", total));
    CHECK(spawned.load() > 1);
    CHECK(ended_self.load() > 0);
    CHECK(ended_by_killer.load() > 0);
    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == total);
    CHECK(s.acked == total);
    CHECK(s.delivered == s.acked + s.requeued);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);
    CHECK(s.consumers == 0);
    CHECK(s.accounted());
}

TEST_CASE("reentrancy (threads): a callback ending another consumer waits for its callback, which may use the "
          "broker meanwhile",
          "[multithread][reentrancy][subscription]") {
    broker b;
    b.declare_queue("a");
    b.declare_queue("b");
    std::atomic<bool> b_entered{false};
    std::atomic<bool> a_entered{false};
    bool b_finished = false;        // plain: release() must make the callback's writes visible
    bool seen_finished_by_a = false; // written by a's callback, read after joining
    std::size_t routed_by_b = 0;
    std::optional<subscription> sub_b;
    std::optional<subscription> made_by_b;
    sub_b = b.subscribe(
        "b",
        [&](delivery&) {
            b_entered = true;
            (void)wait_until([&] { return a_entered.load(); }, 5s);
            std::this_thread::sleep_for(50ms); // a's callback is meanwhile in release()
            // The waiting release() holds no lock: this callback may publish (to its own
            // queue too), declare, bind and subscribe.
            routed_by_b = b.publish("", to_queue<broker>("b", "from-b"));
            b.declare_queue("made-by-b");
            b.bind_queue("made-by-b", "amq.fanout");
            made_by_b = b.subscribe("made-by-b", [](delivery&) {});
            b_finished = true;
        },
        // Left unsettled: requeued when the callback returns, its consumer gone. Prefetch 1:
        // should the release come late, b is not served "from-b" meanwhile.
        manual_options("b", 1));
    auto sub_a = b.subscribe("a", [&](delivery&) {
        a_entered = true;
        sub_b.reset();
        seen_finished_by_a = b_finished;
    });
    warren_test::send(b, "b", {"b1"});
    joining_thread runs_b([&] { (void)b.dispatch(); });
    REQUIRE(wait_until([&] { return b_entered.load(); }));
    joining_thread runs_a([&] {
        (void)b.publish("", to_queue<broker>("a", "a1"));
        (void)b.dispatch();
    });
    runs_a.join();
    runs_b.join();

    CHECK(seen_finished_by_a);
    CHECK(routed_by_b == 1);
    CHECK(b.consumer_count("b") == 0);
    CHECK(warren_test::drain_marked(b, "b") == strings{"b1*", "from-b"}); // b1 back in its place
    REQUIRE(made_by_b);
    CHECK(made_by_b->active());
    CHECK(b.consumer_count("made-by-b") == 1);
    CHECK(b.queue_stats("a").acked == 1);
}

// ---------------------------------------------------------------------------------------
// deleting queues from callbacks

TEST_CASE("reentrancy (threads): a callback deletes its own queue while others publish to it and consume from it",
          "[multithread][reentrancy][delete]") {
    broker b;
    b.declare_queue("doomed");
    b.declare_queue("notices");
    std::atomic<std::size_t> seen{0};
    std::atomic<std::size_t> dropped{0};
    std::atomic<int> deletions{0};
    shared_log cancelled;
    auto options = [&](const std::string& tag) {
        warren::consumer_options o;
        o.tag = tag;
        // Runs once the broker's locks are released, so it may use the broker.
        o.on_cancel = [&, tag] {
            cancelled.add(tag + (b.has_queue("doomed") ? ":queue there" : ":queue gone"));
            (void)b.publish("", to_queue<broker>("notices", tag));
        };
        return o;
    };
    auto consume = [&](delivery&) {
        if (++seen == 400) {
            ++deletions;
            dropped = b.delete_queue("doomed");
        }
    };
    auto c0 = b.subscribe("doomed", consume, options("c0"));
    auto c1 = b.subscribe("doomed", consume, options("c1"));
    std::atomic<std::size_t> routed{0};
    {
        dispatchers<broker> pool(b, 3);
        std::vector<joining_thread> publishers;
        for (int p = 0; p < 2; ++p) {
            publishers.emplace_back([&] {
                // Until the queue is gone: then the default exchange routes nowhere.
                for (std::size_t i = 0; i < 1000000; ++i) {
                    const std::size_t n = b.publish("", to_queue<broker>("doomed", "m"));
                    if (n == 0) break;
                    routed += n;
                }
            });
        }
        for (auto& t : publishers) t.join();
        REQUIRE(wait_until([&] { return cancelled.size() == 2; }));
    }
    CHECK(deletions.load() == 1);
    // Automatic acks: every routed message was either delivered or dropped, ready, with
    // the queue; delete_queue counts the ready ones as the queue closes.
    CHECK(routed.load() == seen.load() + dropped.load());
    CHECK(cancelled.sorted() == strings{"c0:queue gone", "c1:queue gone"});
    strings notices = warren_test::drain(b, "notices");
    std::sort(notices.begin(), notices.end());
    CHECK(notices == strings{"c0", "c1"});
    CHECK_FALSE(b.has_queue("doomed"));
    CHECK_FALSE(c0.active());
    CHECK_FALSE(c1.active());
}

// ---------------------------------------------------------------------------------------
// subscriptions ended while another thread subscribes

TEST_CASE("reentrancy (threads): a consumer that subscribes while the last one leaves keeps an auto-delete queue",
          "[multithread][reentrancy][auto-delete]") {
    // release() of the last consumer cancels it, then deletes the auto-delete queue under
    // the topology lock. A publish through gate_exchange holds that lock (shared), so the
    // deletion waits while another thread subscribes. The new consumer must either find the
    // queue gone (NOT_FOUND) or keep it: never be cancelled with it unannounced.
    broker b;
    b.register_exchange_type<gate_exchange>();
    b.declare_exchange("gate", "x-test-gate");
    warren::queue_options auto_delete;
    auto_delete.auto_delete = true;
    b.declare_queue("auto", auto_delete);
    auto first = b.subscribe("auto", [](delivery&) {});

    gate_exchange::entered = false;
    gate_exchange::shut = true;
    joining_thread holder([&] { (void)b.publish("gate", to_queue<broker>("k", "held")); });
    REQUIRE(wait_until([] { return gate_exchange::entered.load(); }));
    joining_thread leaver([&] { first.release(); }); // cancels, then waits for the lock
    // Opens the gate whatever happens below: where the lock lets no new reader pass a
    // waiting writer, subscribe() waits too.
    joining_thread opener([] {
        std::this_thread::sleep_for(300ms);
        gate_exchange::shut = false;
    });
    std::this_thread::sleep_for(50ms);

    std::atomic<int> cancels{0};
    warren::consumer_options options;
    options.on_cancel = [&] { ++cancels; };
    std::optional<subscription> second;
    std::string refused;
    try {
        second = b.subscribe("auto", [](delivery&) {}, options);
    } catch (const warren::error& e) {
        refused = e.what();
    }
    opener.join();
    holder.join();
    leaver.join();

    if (second) {
        INFO("subscribed before the deletion ran: the queue is in use again and stays");
        CHECK(second->active());
        CHECK(b.has_queue("auto"));
        CHECK(b.consumer_count("auto") == 1);
        CHECK(cancels.load() == 0);
        second->release(); // now it is the last one: the queue goes
        CHECK_FALSE(b.has_queue("auto"));
    } else {
        CHECK(refused == "NOT_FOUND - no queue 'auto'");
        CHECK_FALSE(b.has_queue("auto"));
    }
}
