// A pool of worker threads consuming one work queue of a warren::concurrent_broker, fed by
// several producer threads, with manual acks and a prefetch limit, and an orderly shutdown
// that loses nothing.
//
// Subscriptions with per-thread dispatch loops, not try_get_for loops, because:
// - Prefetch is a consumer's window, as AMQP's basic.qos is: a get (basic.get) has none,
//   so a pulling thread would have to bound what it holds by itself.
// - A subscription gives back what its consumer holds unacked when it ends: that is the
//   orderly shutdown below. A delivery taken with a get and dropped unsettled stays
//   unacked until its queue is deleted.
// - A consumer's callback never runs on two threads at once, and the broker orders its
//   successive calls, so each worker's state below needs no lock of its own.
// The cost: dispatch() does not block. An idle loop backs off with a short sleep, where
// try_get_for would sleep until a message arrives; prefer that when waking idle threads
// matters more than a prefetch window.
//
// Workers and threads: dispatch() serves every consumer of the broker, so a worker (a
// consumer: its subscription, prefetch window and state) is not tied to one thread. The
// threads are a pool that runs whichever callbacks are due.
//
// Each worker keeps its deliveries until it holds a batch as large as its prefetch, then
// processes the batch and acks it with one ack(multiple). At shutdown:
//   1. producers stop;
//   2. the dispatch loops stop: each finishes the callback it is running and starts none;
//   3. subscriptions end: what the workers hold unacked (an unfinished batch) returns to
//      the queue, in place, marked redelivered, for the next run.
// Then every published message must have been processed exactly once or still be in the
// queue, counted by the id in its body. Exits 0 only if so.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <warren/warren.hpp>

namespace {

using broker_type = warren::concurrent_broker;
using delivery = broker_type::delivery;

constexpr std::size_t producers = 3;
constexpr std::size_t per_producer = 3000;
constexpr std::size_t total = producers * per_producer;
constexpr std::size_t workers = 4;
constexpr std::uint16_t prefetch = 8; // also the batch size

std::size_t id_of(const delivery& d) { return static_cast<std::size_t>(std::stoul(d.body())); }

/// A consumer's own state: touched only by its callback, and by main once the pool is
/// joined.
struct worker {
    std::vector<delivery> batch;        // delivered, not acked yet
    std::vector<std::size_t> processed; // ids whose batch was acked
    std::size_t batches = 0;
    std::uint64_t checksum = 0; // the "work"
};

void process(worker& self) {
    for (const auto& d : self.batch) {
        for (char c : d.body()) self.checksum = self.checksum * 31 + static_cast<unsigned char>(c);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50)); // some I/O per batch
    self.batch.back().ack(true); // the whole batch: every earlier delivery of this consumer
    for (const auto& d : self.batch) self.processed.push_back(id_of(d));
    self.batch.clear();
    ++self.batches;
}

} // namespace

int main() {
    broker_type broker;
    broker.declare_queue("jobs", {.durable = true});

    std::vector<worker> state(workers);
    std::vector<broker_type::subscription> subscriptions;
    for (std::size_t i = 0; i < workers; ++i) {
        subscriptions.push_back(broker.subscribe(
            "jobs",
            [&self = state[i]](delivery& d) {
                self.batch.push_back(std::move(d)); // keep it: unacked until its batch is done
                if (self.batch.size() == prefetch) process(self);
            },
            {.tag = "worker-" + std::to_string(i), .ack = warren::ack_mode::manual, .prefetch = prefetch}));
    }

    // The pool: one dispatch loop per thread.
    std::atomic<bool> running{true};
    std::vector<std::thread> pool;
    for (std::size_t i = 0; i < workers; ++i) {
        pool.emplace_back([&] {
            while (running.load()) {
                // A small budget, so a stop request is seen soon.
                if (broker.dispatch(32) == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
        });
    }

    std::atomic<std::size_t> unroutable{0};
    std::vector<std::thread> producer_threads;
    for (std::size_t p = 0; p < producers; ++p) {
        producer_threads.emplace_back([&, p] {
            auto jobs = broker.make_publisher(""); // the default exchange: routing key = queue
            for (std::size_t i = 0; i < per_producer; ++i) {
                if (jobs.publish({.routing_key = "jobs", .body = std::to_string(p * per_producer + i)}) != 1) {
                    ++unroutable;
                }
                if (i % 100 == 99) std::this_thread::sleep_for(std::chrono::milliseconds(1)); // a steady trickle
            }
        });
    }

    // 1. Producers stop.
    for (auto& t : producer_threads) t.join();
    // 2. The dispatch loops stop; running callbacks finish first.
    running = false;
    for (auto& t : pool) t.join();
    std::size_t held = 0;
    for (const auto& w : state) held += w.batch.size();
    const warren::queue_counters before = broker.queue_stats("jobs");
    // 3. Subscriptions end; what the workers held goes back to the queue. (Releasing from
    //    a pool thread would be fine too: release() waits for a callback running elsewhere.)
    subscriptions.clear();
    for (auto& w : state) w.batch.clear(); // settled by the queue already: just handles now
    const warren::queue_counters after = broker.queue_stats("jobs");

    // Check: each id processed exactly once or still in the queue.
    std::vector<int> seen(total, 0);
    std::size_t processed = 0;
    for (const auto& w : state) {
        processed += w.processed.size();
        for (std::size_t id : w.processed) ++seen[id];
    }
    std::size_t queued = 0;
    std::size_t redelivered = 0;
    while (auto d = broker.try_get("jobs")) {
        ++queued;
        if (d->redelivered()) ++redelivered;
        const std::size_t id = id_of(*d);
        if (id < total) ++seen[id];
    }
    const auto exactly_once = static_cast<std::size_t>(std::count(seen.begin(), seen.end(), 1));

    std::cout << "consumer_pool: " << producers << " producers published " << total << " jobs; " << workers
              << " workers, prefetch " << prefetch << ", acked in batches of " << prefetch << "\n";
    for (std::size_t i = 0; i < workers; ++i) {
        std::cout << "  worker-" << i << ": " << state[i].processed.size() << " jobs in " << state[i].batches
                  << " batches\n";
    }
    std::cout << "  at shutdown: " << processed << " processed, " << held << " held unacked (returned to the queue), "
              << queued - redelivered << " never delivered\n";
    std::cout << "  each job processed exactly once or still queued: " << exactly_once << " of " << total << '\n';

    bool ok = true;
    auto expect = [&ok](bool condition, const char* what) {
        if (!condition) {
            std::cout << "FAILED: " << what << '\n';
            ok = false;
        }
    };
    expect(unroutable.load() == 0, "every job reached the queue");
    expect(exactly_once == total, "every job processed exactly once or still in the queue");
    expect(processed + queued == total, "nothing lost, nothing twice");
    expect(before.acked == processed && before.unacked == held, "the queue counted what the workers did");
    expect(after.unacked == 0 && after.requeued == held && after.consumers == 0,
           "ending the subscriptions returned every unacked job");
    expect(redelivered == held, "the returned jobs come back marked redelivered");
    expect(after.accounted(), "the queue's counters account for every job");
    return ok ? 0 : 1;
}
