// Soak test for concurrent_broker (not run in CI): publishers, consumers (subscriptions on
// dispatch threads and a try_get_for puller), topology churn (declare, bind, unbind,
// subscribe, purge, delete) and TTL, max-length and dead-letter queues, all at once, for a
// given number of seconds. Checks the accounting invariant of every queue
// (queue_counters::accounted()) every second and at the end, and at the end that no
// message was lost on the way: each permanent queue accepted or refused exactly what was
// routed to it, and the dead-letter queue got exactly what the queues dead-lettered.
//
//   bench_soak [seconds=120]
//
// Exits 0 only if every check held; a watchdog aborts if no message moves for 20 s (a
// deadlock). Figures and commands: docs/threading.md, "Soak".

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <warren/warren.hpp>

namespace {

using broker_type = warren::concurrent_broker;
using delivery = broker_type::delivery;
using steady = std::chrono::steady_clock;

/// The permanent queues and the keys publishers use, with where each key must go.
enum queue_id : std::size_t { work, ttl, capped, rejecting, permanent_queues };
constexpr std::array<const char*, permanent_queues> queue_names{"work", "ttl", "capped", "rejecting"};
struct key_route {
    const char* key;
    std::array<bool, permanent_queues> reaches; // work, ttl, capped, rejecting
};
// Bindings on "ingress" (topic): work "work.#"; ttl "*.ttl"; capped "#"; rejecting
// "work.#" and "*.ttl".
constexpr std::array<key_route, 4> keys{{
    {"work.a", {true, false, true, true}},
    {"work.b.c", {true, false, true, true}},
    {"x.ttl", {false, true, true, true}},
    {"log.info", {false, false, true, false}},
}};
// Patterns the churn thread binds its temporary queues with.
constexpr std::array<const char*, 4> churn_patterns{"work.*", "#", "*.ttl", "log.#"};

std::atomic<std::uint64_t> failures{0};

void fail(const std::string& what) {
    ++failures;
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
}

/// splitmix64's finaliser: each message's key and fate depend only on its id, yet look
/// independent of each other.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

std::string describe(const warren::queue_counters& c) {
    return "enqueued " + std::to_string(c.enqueued) + ", acked " + std::to_string(c.acked) + ", dead-lettered " +
           std::to_string(c.dead_lettered.total()) + ", dropped " + std::to_string(c.dropped.total()) + ", purged " +
           std::to_string(c.purged) + ", ready " + std::to_string(c.ready) + ", unacked " + std::to_string(c.unacked);
}

/// Checks the invariant on every queue the broker has now (temporary ones included).
std::size_t check_accounting(const broker_type& broker) {
    const warren::topology_snapshot snap = broker.snapshot();
    for (const auto& q : snap.queues) {
        if (!q.counters.accounted()) fail("queue " + q.name + " not accounted: " + describe(q.counters));
    }
    return snap.queues.size();
}

warren::queue_options with_args(warren::field_table args) {
    warren::queue_options o;
    o.arguments = std::move(args);
    return o;
}

} // namespace

int main(int argc, char** argv) {
    const int seconds = argc > 1 ? std::atoi(argv[1]) : 120;
    if (seconds <= 0) {
        std::fprintf(stderr, "usage: %s [seconds=120]\n", argv[0]);
        return 2;
    }
    broker_type broker;
    broker.declare_exchange("ingress", "topic");
    broker.declare_exchange("dlx", "fanout");
    broker.declare_exchange("dlx-tmp", "fanout"); // the churned queues' dead letters: routed nowhere
    broker.declare_queue("work", with_args({{"x-dead-letter-exchange", "dlx"}}));
    broker.declare_queue("ttl", with_args({{"x-message-ttl", 5}, {"x-dead-letter-exchange", "dlx"}}));
    broker.declare_queue("capped", with_args({{"x-max-length", 1000}})); // drop-head, no dead-letter exchange
    broker.declare_queue("rejecting", with_args({{"x-max-length", 500},
                                                 {"x-overflow", "reject-publish-dlx"},
                                                 {"x-dead-letter-exchange", "dlx"}}));
    broker.declare_queue("dlq");
    broker.bind_queue("work", "ingress", "work.#");
    broker.bind_queue("ttl", "ingress", "*.ttl");
    broker.bind_queue("capped", "ingress", "#");
    broker.bind_queue("rejecting", "ingress", "work.#");
    broker.bind_queue("rejecting", "ingress", "*.ttl");
    broker.bind_queue("dlq", "dlx");
    std::atomic<std::uint64_t> returned{0};
    broker.set_return_handler([&](broker_type::returned_message&) { ++returned; });
    std::atomic<std::uint64_t> callback_errors{0};
    broker.set_error_handler([&](const warren::consumer_error&) { ++callback_errors; });

    // Consumers of "work": manual acks, prefetch 16; each message is acked, requeued once,
    // or rejected (dead-lettered), by its id.
    std::atomic<std::uint64_t> work_acks{0};
    std::atomic<std::uint64_t> work_rejects{0};
    std::atomic<std::uint64_t> work_requeues{0};
    std::vector<broker_type::subscription> subs;
    for (int i = 0; i < 3; ++i) {
        subs.push_back(broker.subscribe(
            "work",
            [&](delivery& d) {
                const std::uint64_t fate = mix(~std::stoull(d.body().substr(d.body().find('-') + 1))) % 20;
                if (fate == 0 && !d.redelivered()) {
                    d.nack(false, true);
                    ++work_requeues;
                } else if (fate == 1) {
                    d.reject(false);
                    ++work_rejects;
                } else {
                    d.ack();
                    ++work_acks;
                }
            },
            {.ack = warren::ack_mode::manual, .prefetch = 16}));
    }
    std::atomic<std::uint64_t> dead_seen{0};
    subs.push_back(broker.subscribe("dlq", [&](delivery&) { ++dead_seen; }));

    std::atomic<bool> producing{true};
    std::atomic<bool> consuming{true};
    std::vector<std::thread> threads;

    // Publishers: keys from the table, a few with a per-message TTL, some mandatory.
    constexpr int publishers = 2;
    std::array<std::array<std::atomic<std::uint64_t>, permanent_queues>, publishers> expected{};
    std::array<std::atomic<std::uint64_t>, publishers> published{};
    std::atomic<std::uint64_t> publish_errors{0};
    for (int p = 0; p < publishers; ++p) {
        threads.emplace_back([&, p] {
            auto ingress = broker.make_publisher("ingress");
            std::uint64_t n = 0;
            while (producing.load(std::memory_order_relaxed)) {
                const key_route& route = keys[mix(n * 2 + static_cast<std::uint64_t>(p)) % keys.size()];
                warren::message m{.routing_key = route.key, .body = std::to_string(p) + "-" + std::to_string(n)};
                if (n % 7 == 0) m.properties.expiration = "3";
                try {
                    (void)ingress.publish(std::move(m), {.mandatory = n % 11 == 0});
                    auto& mine = expected[static_cast<std::size_t>(p)];
                    for (std::size_t q = 0; q < permanent_queues; ++q) {
                        if (route.reaches[q]) mine[q].fetch_add(1, std::memory_order_relaxed);
                    }
                    published[static_cast<std::size_t>(p)].fetch_add(1, std::memory_order_relaxed);
                } catch (const std::exception& e) {
                    ++publish_errors;
                    fail(std::string("publish: ") + e.what());
                }
                if (++n % 64 == 0) std::this_thread::yield();
            }
        });
    }

    // Dispatch threads run the subscriptions' callbacks.
    for (int t = 0; t < 2; ++t) {
        threads.emplace_back([&] {
            while (consuming.load(std::memory_order_relaxed)) {
                if (broker.dispatch(64) == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
            }
        });
    }
    // A puller takes from the TTL queue with try_get_for; the rest of it expires.
    std::atomic<std::uint64_t> ttl_pulled{0};
    threads.emplace_back([&] {
        while (consuming.load(std::memory_order_relaxed)) {
            if (auto d = broker.try_get_for("ttl", std::chrono::milliseconds(1), warren::ack_mode::manual)) {
                d->ack();
                ++ttl_pulled;
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    });

    // Topology churn: temporary queues of every kind, bound directly and through an
    // exchange of their own, consumed briefly, purged, unbound and deleted.
    std::atomic<std::uint64_t> churn_rounds{0};
    std::atomic<std::uint64_t> churn_delivered{0};
    threads.emplace_back([&] {
        std::uint64_t i = 0;
        while (producing.load(std::memory_order_relaxed)) {
            const std::string name = "churn-" + std::to_string(i % 8);
            const std::string exchange = "churn-x-" + std::to_string(i % 4);
            const char* pattern = churn_patterns[i % churn_patterns.size()];
            try {
                warren::queue_options options;
                switch (i % 4) {
                case 0: options = with_args({{"x-message-ttl", 1}, {"x-dead-letter-exchange", "dlx-tmp"}}); break;
                case 1: options = with_args({{"x-max-length", 10}, {"x-dead-letter-exchange", "dlx-tmp"}}); break;
                case 2: options = with_args({{"x-max-length", 20}, {"x-overflow", "reject-publish"}}); break;
                default: options.auto_delete = true; break;
                }
                broker.declare_queue(name, options);
                broker.bind_queue(name, "ingress", pattern);
                broker.declare_exchange(exchange, "fanout");
                broker.bind_exchange(exchange, "ingress", "work.#");
                broker.bind_queue(name, exchange);
                auto sub = broker.subscribe(
                    name,
                    [&](delivery& d) {
                        ++churn_delivered;
                        d.ack();
                    },
                    {.ack = warren::ack_mode::manual, .prefetch = 4});
                std::this_thread::sleep_for(std::chrono::microseconds(300));
                if (i % 3 == 0) (void)broker.purge_queue(name);
                if (!broker.queue_stats(name).accounted()) fail("churned queue " + name + " not accounted");
                sub.release(); // an auto-delete queue goes here
                if (broker.has_queue(name)) broker.unbind_queue(name, "ingress", pattern);
                broker.delete_exchange(exchange);
                (void)broker.delete_queue(name);
            } catch (const std::exception& e) {
                fail(std::string("churn: ") + e.what());
            }
            ++churn_rounds;
            ++i;
        }
    });

    // Check every second; print every ten; stop after `seconds`.
    const auto start = steady::now();
    std::uint64_t checks = 0;
    std::uint64_t last_moved = 0;
    auto last_progress = start;
    auto moved = [&] {
        std::uint64_t n = work_acks + work_rejects + work_requeues + dead_seen + ttl_pulled + churn_rounds;
        for (const auto& p : published) n += p.load();
        return n;
    };
    for (int s = 1; s <= seconds; ++s) {
        std::this_thread::sleep_until(start + std::chrono::seconds(s));
        const std::size_t queues = check_accounting(broker);
        for (const char* q : queue_names) {
            if (!broker.queue_stats(q).accounted()) fail(std::string("queue ") + q + " not accounted");
        }
        ++checks;
        const std::uint64_t now_moved = moved();
        if (now_moved != last_moved) {
            last_moved = now_moved;
            last_progress = steady::now();
        } else if (steady::now() - last_progress > std::chrono::seconds(20)) {
            std::fprintf(stderr, "FAILED: nothing moved for 20 s: deadlock?\n");
            std::abort();
        }
        if (s % 10 == 0 || s == seconds) {
            std::uint64_t pub = 0;
            for (const auto& p : published) pub += p.load();
            std::printf("[%4d s] published %llu, work acked %llu, dead letters %llu, churn rounds %llu, %zu queues, "
                        "failures %llu\n",
                        s, static_cast<unsigned long long>(pub), static_cast<unsigned long long>(work_acks.load()),
                        static_cast<unsigned long long>(dead_seen.load()),
                        static_cast<unsigned long long>(churn_rounds.load()), queues,
                        static_cast<unsigned long long>(failures.load()));
            std::fflush(stdout);
        }
    }

    // Stop producing and churning; let the consumers finish what is left.
    producing = false;
    const auto publishing_ended = steady::now();
    threads[0].join();
    threads[1].join();
    threads.back().join(); // churn
    const auto drained = [&] {
        const auto w = broker.queue_stats("work");
        const auto t = broker.queue_stats("ttl");
        const auto d = broker.queue_stats("dlq");
        return w.ready + w.unacked + t.ready + t.unacked + d.ready == 0;
    };
    const auto drain_deadline = steady::now() + std::chrono::seconds(30);
    while (!drained() && steady::now() < drain_deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!drained()) fail("the consumers did not drain work, ttl and dlq within 30 s");
    consuming = false;
    for (std::size_t t = 2; t + 1 < threads.size(); ++t) threads[t].join();
    subs.clear();
    const double elapsed = std::chrono::duration<double>(publishing_ended - start).count();

    // Final checks.
    check_accounting(broker);
    ++checks;
    std::array<warren::queue_counters, permanent_queues> stats;
    for (std::size_t q = 0; q < permanent_queues; ++q) {
        stats[q] = broker.queue_stats(queue_names[q]);
        std::uint64_t want = 0;
        for (const auto& p : expected) want += p[q].load();
        if (stats[q].enqueued + stats[q].refused != want) {
            fail(std::string("queue ") + queue_names[q] + ": accepted " + std::to_string(stats[q].enqueued) +
                 " + refused " + std::to_string(stats[q].refused) + ", but " + std::to_string(want) +
                 " were routed to it");
        }
    }
    std::uint64_t total_published = 0;
    for (const auto& p : published) total_published += p.load();
    const auto ingress = broker.exchange_stats("ingress");
    if (ingress.published != total_published) {
        fail("ingress counted " + std::to_string(ingress.published) + " publishes");
    }
    if (ingress.unroutable != 0 || returned.load() != 0) fail("a message was unroutable");
    const auto dlx = broker.exchange_stats("dlx");
    const std::uint64_t died = stats[work].dead_lettered.total() + stats[ttl].dead_lettered.total() +
                               stats[rejecting].dead_lettered.total() + stats[rejecting].refused;
    if (dlx.published != died) {
        fail("dlx got " + std::to_string(dlx.published) + " dead letters of " + std::to_string(died));
    }
    // Dead letters may still arrive after the drain (expired heads of "rejecting" leave
    // whenever a dispatch or queue_stats looks at it): compare with what was delivered.
    const auto dlq = broker.queue_stats("dlq");
    if (dlq.enqueued != dlx.routed || dead_seen.load() != dlq.delivered) {
        fail("dlq: enqueued " + std::to_string(dlq.enqueued) + " of " + std::to_string(dlx.routed) +
             " dead letters routed, delivered " + std::to_string(dlq.delivered) + ", seen " +
             std::to_string(dead_seen.load()));
    }
    if (stats[work].acked != work_acks.load() || stats[work].dead_lettered.rejected != work_rejects.load()) {
        fail("work's counters differ from its consumers' acks and rejects");
    }
    if (callback_errors.load() != 0) fail("a callback threw");

    std::uint64_t delivered = dlq.delivered + churn_delivered.load();
    for (const auto& s : stats) delivered += s.delivered;
    std::printf("\nsoak: %d s, %d publishers, 2 dispatch threads, 1 puller, 1 churn thread\n", seconds, publishers);
    std::printf("  published   %12llu  (%.0f/s)\n", static_cast<unsigned long long>(total_published),
                static_cast<double>(total_published) / elapsed);
    std::printf("  delivered   %12llu  (%.0f/s)\n", static_cast<unsigned long long>(delivered),
                static_cast<double>(delivered) / elapsed);
    std::printf("  work        %s; requeued %llu, rejected %llu\n", describe(stats[work]).c_str(),
                static_cast<unsigned long long>(stats[work].requeued),
                static_cast<unsigned long long>(stats[work].dead_lettered.rejected));
    std::printf("  ttl         %s; expired %llu, pulled %llu\n", describe(stats[ttl]).c_str(),
                static_cast<unsigned long long>(stats[ttl].dead_lettered.expired),
                static_cast<unsigned long long>(ttl_pulled.load()));
    std::printf("  capped      %s\n", describe(stats[capped]).c_str());
    std::printf("  rejecting   %s; refused %llu\n", describe(stats[rejecting]).c_str(),
                static_cast<unsigned long long>(stats[rejecting].refused));
    std::printf("  dlq         %s\n", describe(dlq).c_str());
    std::printf("  churn       %llu rounds (%.0f/s), %llu delivered from churned queues\n",
                static_cast<unsigned long long>(churn_rounds.load()),
                static_cast<double>(churn_rounds.load()) / elapsed,
                static_cast<unsigned long long>(churn_delivered.load()));
    std::printf("  checks      %llu accounting rounds over every queue; failures %llu\n",
                static_cast<unsigned long long>(checks), static_cast<unsigned long long>(failures.load()));
    return failures.load() == 0 ? 0 : 1;
}
