// Delivery: what a message costs through warren's broker, against what users would pick
// instead (Boost.Signals2, libsigc++, a vector of std::function, std::deque, moodycamel's
// ConcurrentQueue and ReaderWriterQueue, a mutex-guarded deque), in one binary and one
// run. bench/run_delivery.sh produces docs/bench/delivery.json; bench/plot_delivery.py
// draws it.
//
// Benchmark names read <group>/<shape>/<peer>/<arg>:
//   batch/...    single thread: publish (or push) N messages, then dispatch (or drain)
//                them all, per iteration; items = messages published. arg = N.
//   emit/...     single thread, the "signal emit" shape: one message, delivered to every
//                subscriber at once, per iteration; items = emits. arg = subscribers.
//                warren_fanout publishes then dispatches; warren_fanout_synchronous has
//                synchronous subscribers, which the publish runs.
//   threads/...  one producer thread, one consumer thread (the benchmark's own): M
//                messages per iteration, real time (items/s = messages/s); cpu_time is
//                the whole process (both threads). arg = M.
//                poll: the consumer spins on a non-blocking take;
//                wait: the consumer blocks with a timeout;
//                4x4: four producer threads, four polling consumer threads, one queue.
//                publish_many / bulk rows: batches of 64 on both sides.
//
// Every peer carries the same body (`event`, 12 bytes) to the same kind of callback (a
// std::function, a slot, a consumer callback) that adds it into a checksum; each
// benchmark checks the checksum and the count against the expected values and fails
// (SkipWithError) on a mismatch, so nothing can be optimised away.

#include <benchmark/benchmark.h>

#include <atomic>

#include <boost/signals2/dummy_mutex.hpp>
#include <boost/signals2/signal.hpp>
#include <boost/signals2/signal_type.hpp>
#include <concurrentqueue/blockingconcurrentqueue.h>
#include <concurrentqueue/concurrentqueue.h>
#include <readerwriterqueue/readerwriterqueue.h>
#include <sigc++/sigc++.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

namespace {

// ---------------------------------------------------------------------------
// The body every peer carries, and the checksum.
// ---------------------------------------------------------------------------
struct event {
    int kind;
    float x;
    float y;
};

/// Message i carries make_event(i % period): bodies differ from one message to the next,
/// and the expected checksum of any count has a closed form.
constexpr std::uint64_t period = 1024;

event make_event(std::uint64_t i) noexcept {
    const auto j = static_cast<std::uint32_t>(i % period);
    return {static_cast<int>(j), static_cast<float>(j & 255U), static_cast<float>(j >> 8)};
}

/// What a callback adds for one event; exact (small whole numbers in the floats).
std::uint64_t weight(const event& e) noexcept {
    return static_cast<std::uint64_t>(e.kind) + static_cast<std::uint64_t>(e.x) + static_cast<std::uint64_t>(e.y);
}

/// The checksum of messages 0 .. n-1, each delivered once.
std::uint64_t expected_sum(std::uint64_t n) noexcept {
    std::uint64_t cycle = 0;
    std::uint64_t partial = 0;
    for (std::uint64_t i = 0; i < period; ++i) {
        cycle += weight(make_event(i));
        if (i < n % period) partial += weight(make_event(i));
    }
    return (n / period) * cycle + partial;
}

/// Fails the benchmark unless `got` matches; keeps the checksum alive either way.
void check(benchmark::State& state, std::uint64_t got, std::uint64_t expected, const char* what) {
    benchmark::DoNotOptimize(got);
    if (got != expected) {
        state.SkipWithError((std::string(what) + ": got " + std::to_string(got) + ", expected " +
                             std::to_string(expected)).c_str());
    }
}

using message = warren::basic_message<event>;
using st_broker = warren::basic_broker<message, warren::single_threaded>;
using mt_broker = warren::basic_broker<message, warren::multi_threaded>; // concurrent_broker with event bodies
using handler = std::function<void(const event&)>;

// ---------------------------------------------------------------------------
// batch: publish N, then dispatch, on one thread.
// ---------------------------------------------------------------------------
enum class topology { direct, topic_cached, topic_uncached, fanout };

/// One warren broker laid out for a batch scenario: exchange "ev" bound to `queues`
/// queues, one subscriber on each, all adding into `sum`.
struct st_fixture {
    st_broker broker;
    std::vector<st_broker::subscription> subs;
    st_broker::publisher pub;
    std::string key;
    std::size_t queues = 1;
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;

    st_fixture(topology t, std::size_t fanout, bool synchronous = false) {
        std::string pattern;
        switch (t) {
        case topology::direct:
            broker.declare_exchange("ev", "direct");
            key = pattern = "pos";
            break;
        case topology::topic_cached:
        case topology::topic_uncached:
            broker.declare_exchange("ev", "topic");
            pattern = "ev.*.pos";
            key = "ev.unit.pos";
            // Cached: the broker's default (1,024 keys per topic exchange); one key here,
            // so every publish after the first is a hit.
            if (t == topology::topic_uncached) broker.set_routing_cache_capacity(0);
            break;
        case topology::fanout: broker.declare_exchange("ev", "fanout"); break;
        }
        queues = fanout;
        for (std::size_t q = 0; q < queues; ++q) {
            const std::string name = "q" + std::to_string(q);
            broker.declare_queue(name);
            broker.bind_queue(name, "ev", pattern);
            subs.push_back(broker.subscribe(
                name,
                [this](st_broker::delivery& d) {
                    sum += weight(d.body());
                    ++delivered;
                },
                {.synchronous = synchronous}));
        }
        pub = broker.make_publisher("ev");
    }
    st_fixture(const st_fixture&) = delete;
    st_fixture& operator=(const st_fixture&) = delete;

    /// One message through, so a topic route is cached before the clock starts.
    void warm_up() {
        (void)pub.publish(message{.routing_key = key, .body = make_event(0)});
        broker.dispatch();
        sum = delivered = 0;
    }
};

void bm_batch_warren(benchmark::State& state, topology t) {
    const auto n = static_cast<std::uint64_t>(state.range(0));
    st_fixture f(t, t == topology::fanout ? 10 : 1);
    f.warm_up();
    std::uint64_t routed = 0;
    for (auto _ : state) {
        for (std::uint64_t i = 0; i < n; ++i) {
            // The message is built here and moved in: what a caller pays per publish.
            routed += f.pub.publish(message{.routing_key = f.key, .body = make_event(i)});
        }
        f.broker.dispatch();
    }
    const auto iterations = static_cast<std::uint64_t>(state.iterations());
    check(state, routed, iterations * n * f.queues, "routed");
    check(state, f.delivered, iterations * n * f.queues, "delivered");
    check(state, f.sum, iterations * expected_sum(n) * f.queues, "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(iterations * n));
    state.counters["deliveries_per_message"] = static_cast<double>(f.queues);
}

/// The floor: a std::deque of events and `handlers` std::function handlers (1, or 10 for
/// fanout's floor), each called with every event.
void bm_batch_std_deque(benchmark::State& state, std::size_t handlers) {
    const auto n = static_cast<std::uint64_t>(state.range(0));
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;
    const std::vector<handler> on_event(handlers, [&](const event& e) {
        sum += weight(e);
        ++delivered;
    });
    std::deque<event> queue;
    for (auto _ : state) {
        for (std::uint64_t i = 0; i < n; ++i) queue.push_back(make_event(i));
        while (!queue.empty()) {
            for (const handler& h : on_event) h(queue.front());
            queue.pop_front();
        }
    }
    const auto iterations = static_cast<std::uint64_t>(state.iterations());
    check(state, delivered, iterations * n * handlers, "delivered");
    check(state, sum, iterations * expected_sum(n) * handlers, "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(iterations * n));
    state.counters["deliveries_per_message"] = static_cast<double>(handlers);
}

/// moodycamel::ConcurrentQueue on one thread, one item at a time (enqueue / try_dequeue,
/// no tokens: the plain API), each dequeued event handed to the handler.
void bm_batch_concurrent_queue(benchmark::State& state) {
    const auto n = static_cast<std::uint64_t>(state.range(0));
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;
    const handler on_event = [&](const event& e) {
        sum += weight(e);
        ++delivered;
    };
    moodycamel::ConcurrentQueue<event> queue(static_cast<std::size_t>(n));
    for (auto _ : state) {
        for (std::uint64_t i = 0; i < n; ++i) queue.enqueue(make_event(i));
        event e{};
        while (queue.try_dequeue(e)) on_event(e);
    }
    const auto iterations = static_cast<std::uint64_t>(state.iterations());
    check(state, delivered, iterations * n, "delivered");
    check(state, sum, iterations * expected_sum(n), "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(iterations * n));
}

/// The same with its bulk API (enqueue_bulk / try_dequeue_bulk), as its documentation
/// recommends for throughput.
void bm_batch_concurrent_queue_bulk(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;
    const handler on_event = [&](const event& e) {
        sum += weight(e);
        ++delivered;
    };
    moodycamel::ConcurrentQueue<event> queue(n);
    std::vector<event> in(n);
    std::vector<event> out(n);
    for (auto _ : state) {
        for (std::size_t i = 0; i < n; ++i) in[i] = make_event(i);
        queue.enqueue_bulk(in.data(), n);
        std::size_t got = 0;
        while ((got = queue.try_dequeue_bulk(out.data(), n)) != 0) {
            for (std::size_t i = 0; i < got; ++i) on_event(out[i]);
        }
    }
    const auto iterations = static_cast<std::uint64_t>(state.iterations());
    check(state, delivered, iterations * n, "delivered");
    check(state, sum, iterations * expected_sum(n), "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(iterations * n));
}

/// moodycamel::ReaderWriterQueue (single producer, single consumer) on one thread.
void bm_batch_rw_queue(benchmark::State& state) {
    const auto n = static_cast<std::uint64_t>(state.range(0));
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;
    const handler on_event = [&](const event& e) {
        sum += weight(e);
        ++delivered;
    };
    moodycamel::ReaderWriterQueue<event> queue(static_cast<std::size_t>(n));
    for (auto _ : state) {
        for (std::uint64_t i = 0; i < n; ++i) queue.enqueue(make_event(i));
        event e{};
        while (queue.try_dequeue(e)) on_event(e);
    }
    const auto iterations = static_cast<std::uint64_t>(state.iterations());
    check(state, delivered, iterations * n, "delivered");
    check(state, sum, iterations * expected_sum(n), "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(iterations * n));
}

// ---------------------------------------------------------------------------
// emit: one message to every subscriber, at once, per iteration.
// ---------------------------------------------------------------------------

/// warren: a fanout exchange to k queues with one subscriber each; publish one message,
/// then dispatch().
void bm_emit_warren(benchmark::State& state) {
    const auto k = static_cast<std::size_t>(state.range(0));
    st_fixture f(topology::fanout, k);
    f.warm_up();
    std::uint64_t i = 0;
    for (auto _ : state) {
        (void)f.pub.publish(message{.routing_key = f.key, .body = make_event(i++)});
        f.broker.dispatch();
    }
    check(state, f.delivered, i * k, "delivered");
    check(state, f.sum, expected_sum(i) * k, "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
}

/// warren as a signal: a fanout exchange to k queues whose subscribers are synchronous
/// (consumer_options::synchronous), so publish runs them; no dispatch().
void bm_emit_warren_synchronous(benchmark::State& state) {
    const auto k = static_cast<std::size_t>(state.range(0));
    st_fixture f(topology::fanout, k, true);
    f.warm_up();
    std::uint64_t i = 0;
    for (auto _ : state) (void)f.pub.publish(message{.routing_key = f.key, .body = make_event(i++)});
    check(state, f.delivered, i * k, "delivered");
    check(state, f.sum, expected_sum(i) * k, "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
}

/// A signal with k slots, emitted once per iteration: Boost.Signals2 (with its default
/// mutex, or with dummy_mutex as a single-threaded user could pick), libsigc++, or a
/// vector of std::function called in a loop.
template <class Signal>
void bm_emit_signal(benchmark::State& state) {
    const auto k = static_cast<std::size_t>(state.range(0));
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;
    Signal signal;
    for (std::size_t s = 0; s < k; ++s) {
        signal.connect([&](const event& e) {
            sum += weight(e);
            ++delivered;
        });
    }
    std::uint64_t i = 0;
    for (auto _ : state) signal.emit(make_event(i++));
    check(state, delivered, i * k, "delivered");
    check(state, sum, expected_sum(i) * k, "checksum");
    state.SetItemsProcessed(static_cast<std::int64_t>(i));
}

// One interface, `connect` and `emit`, over the peers.
struct boost_signal {
    boost::signals2::signal<void(const event&)> impl;
    template <class F>
    void connect(F f) { impl.connect(std::move(f)); }
    void emit(const event& e) { impl(e); }
};
struct boost_signal_dummy_mutex {
    boost::signals2::signal_type<void(const event&),
                                 boost::signals2::keywords::mutex_type<boost::signals2::dummy_mutex>>::type impl;
    template <class F>
    void connect(F f) { impl.connect(std::move(f)); }
    void emit(const event& e) { impl(e); }
};
struct sigc_signal {
    sigc::signal<void(const event&)> impl;
    template <class F>
    void connect(F f) { impl.connect(std::move(f)); }
    void emit(const event& e) { impl.emit(e); }
};
struct function_vector {
    std::vector<handler> impl;
    template <class F>
    void connect(F f) { impl.emplace_back(std::move(f)); }
    void emit(const event& e) {
        for (const handler& h : impl) h(e);
    }
};

// ---------------------------------------------------------------------------
// threads: one producer thread, one consumer thread.
// ---------------------------------------------------------------------------

/// A thread that runs one job at a time, kept for a whole benchmark run so that no
/// thread is created in the timed loop (and per-thread state in the peers, such as
/// ConcurrentQueue's implicit producers, is made once).
class worker {
public:
    worker() : thread_([this] { loop(); }) {}
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;
    ~worker() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        thread_.join();
    }
    void start(std::function<void()> job) {
        {
            std::lock_guard lock(mutex_);
            job_ = std::move(job);
            ++posted_;
        }
        wake_.notify_all();
    }
    void wait() {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return finished_ == posted_; });
    }

private:
    void loop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            wake_.wait(lock, [&] { return stop_ || finished_ != posted_; });
            if (finished_ == posted_) return; // stopping, nothing left to run
            std::function<void()> job = std::move(job_);
            lock.unlock();
            job();
            lock.lock();
            ++finished_;
            wake_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable wake_;
    std::function<void()> job_;
    std::uint64_t posted_ = 0;
    std::uint64_t finished_ = 0;
    bool stop_ = false;
    std::thread thread_; // last: starts once the rest is built
};

/// What a consumer took in one iteration.
struct drained {
    std::uint64_t count = 0;
    std::uint64_t sum = 0;
    void take(const event& e) noexcept {
        sum += weight(e);
        ++count;
    }
};

/// The spin of the polling consumers, the same for every peer: poll again at once, and
/// yield the core after 256 empty polls in a row (two vCPUs, shared). Gives up after 60 s
/// without the expected messages (the iteration then fails its count).
class poller {
public:
    poller() : deadline_(std::chrono::steady_clock::now() + std::chrono::seconds(60)) {}
    void got() noexcept { empty_ = 0; }
    /// False once past the deadline.
    bool idle() {
        if (++empty_ % 256 == 0) {
            std::this_thread::yield();
            if (empty_ % 65536 == 0 && std::chrono::steady_clock::now() > deadline_) return false;
        }
        return true;
    }

private:
    std::uint64_t empty_ = 0;
    std::chrono::steady_clock::time_point deadline_;
};

/// How long a waiting consumer blocks per attempt, and in all before giving up.
constexpr auto wait_step = std::chrono::milliseconds(100);
constexpr auto wait_total = std::chrono::seconds(60);

/// Runs `produce(i)` for i in [0, M) on the worker while the benchmark thread runs
/// `consume(M)`, which returns what it took; checks it.
template <class Produce, class Consume>
void run_pair(benchmark::State& state, Produce produce, Consume consume) {
    const auto m = static_cast<std::uint64_t>(state.range(0));
    const std::uint64_t expected = expected_sum(m);
    worker producer;
    for (auto _ : state) {
        producer.start([&] {
            for (std::uint64_t i = 0; i < m; ++i) produce(i);
        });
        const drained got = consume(m);
        producer.wait();
        check(state, got.count, m, "received");
        check(state, got.sum, expected, "checksum");
        if (state.error_occurred()) break;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(static_cast<std::uint64_t>(state.iterations()) * m));
}

enum class mt_exchange { direct, default_exchange };
enum class mt_consumer { try_get, handle_try_get, handle_try_get_many, try_get_for, dispatch };

/// How many messages a batch take asks for.
constexpr std::size_t take_batch = 64;

void bm_threads_warren(benchmark::State& state, mt_exchange x, mt_consumer c) {
    mt_broker broker;
    broker.declare_queue("q");
    std::string key = "q"; // the default exchange routes to the queue named by the key
    if (x == mt_exchange::direct) {
        broker.declare_exchange("ev", "direct");
        broker.bind_queue("q", "ev", "pos");
        key = "pos";
    }
    auto pub = broker.make_publisher(x == mt_exchange::direct ? "ev" : "");
    drained pushed; // filled by the subscriber (dispatch runs it on the consumer thread)
    mt_broker::subscription sub;
    if (c == mt_consumer::dispatch) {
        sub = broker.subscribe("q", [&pushed](mt_broker::delivery& d) { pushed.take(d.body()); });
    }
    std::uint64_t unrouted = 0; // touched by the producer only, read after wait()
    run_pair(
        state,
        [&](std::uint64_t i) {
            if (pub.publish(message{.routing_key = key, .body = make_event(i)}) != 1) ++unrouted;
        },
        [&](std::uint64_t m) {
            drained got;
            switch (c) {
            case mt_consumer::try_get: {
                poller p;
                while (got.count < m) {
                    if (auto d = broker.try_get("q")) {
                        got.take(d->body());
                        p.got();
                    } else if (!p.idle()) {
                        break;
                    }
                }
                break;
            }
            case mt_consumer::handle_try_get: { // the queue resolved once
                const auto q = broker.make_queue_handle("q");
                poller p;
                while (got.count < m) {
                    if (auto d = q.try_get()) {
                        got.take(d->body());
                        p.got();
                    } else if (!p.idle()) {
                        break;
                    }
                }
                break;
            }
            case mt_consumer::handle_try_get_many: { // up to take_batch under one lock
                const auto q = broker.make_queue_handle("q");
                std::vector<mt_broker::delivery> batch;
                batch.reserve(take_batch);
                poller p;
                while (got.count < m) {
                    batch.clear();
                    if (q.try_get_many(batch, take_batch) != 0) {
                        for (const auto& d : batch) got.take(d.body());
                        p.got();
                    } else if (!p.idle()) {
                        break;
                    }
                }
                break;
            }
            case mt_consumer::try_get_for: {
                const auto give_up = std::chrono::steady_clock::now() + wait_total;
                while (got.count < m) {
                    if (auto d = broker.try_get_for("q", wait_step)) got.take(d->body());
                    else if (std::chrono::steady_clock::now() > give_up) break;
                }
                break;
            }
            case mt_consumer::dispatch: {
                poller p;
                pushed = {};
                while (pushed.count < m) {
                    if (broker.dispatch() != 0) p.got();
                    else if (!p.idle()) break;
                }
                got = pushed;
                break;
            }
            }
            return got;
        });
    check(state, unrouted, 0, "unrouted publishes");
}

/// Bodies collected on a producer thread and published take_batch at a time through
/// `publisher.publish_many`, the last batch when message `last` is in.
class batch_publisher {
public:
    explicit batch_publisher(const mt_broker::publisher& publisher) : publisher_(&publisher) { bodies_.reserve(take_batch); }
    /// Adds message `i`; publishes the batch when it is full or `i` is the producer's last.
    void add(std::uint64_t i, bool last) {
        bodies_.push_back(make_event(i));
        if (bodies_.size() == take_batch || last) {
            routed_ += publisher_->publish_many("pos", bodies_);
            bodies_.clear();
        }
    }
    [[nodiscard]] std::uint64_t routed() const noexcept { return routed_; }

private:
    const mt_broker::publisher* publisher_;
    std::vector<event> bodies_;
    std::uint64_t routed_ = 0;
};

/// 1 producer to 1 consumer with batches on both sides: publish_many of take_batch bodies
/// under one key, try_get_many of up to take_batch through a queue handle.
void bm_threads_warren_batches(benchmark::State& state) {
    mt_broker broker;
    broker.declare_queue("q");
    broker.declare_exchange("ev", "direct");
    broker.bind_queue("q", "ev", "pos");
    const auto pub = broker.make_publisher("ev");
    const auto q = broker.make_queue_handle("q");
    const auto m = static_cast<std::uint64_t>(state.range(0));
    batch_publisher batches(pub); // used by the producer thread only, read after wait()
    run_pair(
        state, [&](std::uint64_t i) { batches.add(i, i + 1 == m); },
        [&](std::uint64_t total) {
            drained got;
            std::vector<mt_broker::delivery> taken;
            taken.reserve(take_batch);
            poller p;
            while (got.count < total) {
                taken.clear();
                if (q.try_get_many(taken, take_batch) != 0) {
                    for (const auto& d : taken) got.take(d.body());
                    p.got();
                } else if (!p.idle()) {
                    break;
                }
            }
            return got;
        });
    check(state, batches.routed(), static_cast<std::uint64_t>(state.iterations()) * m, "routed");
}

/// moodycamel::ConcurrentQueue in bulk: enqueue_bulk / try_dequeue_bulk of take_batch.
void bm_threads_concurrent_queue_bulk(benchmark::State& state) {
    moodycamel::ConcurrentQueue<event> queue;
    const auto m = static_cast<std::uint64_t>(state.range(0));
    std::vector<event> pending; // the producer's
    pending.reserve(take_batch);
    run_pair(
        state,
        [&](std::uint64_t i) {
            pending.push_back(make_event(i));
            if (pending.size() == take_batch || i + 1 == m) {
                queue.enqueue_bulk(pending.data(), pending.size());
                pending.clear();
            }
        },
        [&](std::uint64_t total) {
            drained got;
            poller p;
            std::array<event, take_batch> out{};
            while (got.count < total) {
                if (const std::size_t n = queue.try_dequeue_bulk(out.data(), out.size()); n != 0) {
                    for (std::size_t k = 0; k < n; ++k) got.take(out[k]);
                    p.got();
                } else if (!p.idle()) {
                    break;
                }
            }
            return got;
        });
}

/// moodycamel::ConcurrentQueue, plain enqueue / try_dequeue, polling consumer.
void bm_threads_concurrent_queue(benchmark::State& state) {
    moodycamel::ConcurrentQueue<event> queue;
    run_pair(
        state, [&](std::uint64_t i) { queue.enqueue(make_event(i)); },
        [&](std::uint64_t m) {
            drained got;
            poller p;
            event e{};
            while (got.count < m) {
                if (queue.try_dequeue(e)) {
                    got.take(e);
                    p.got();
                } else if (!p.idle()) {
                    break;
                }
            }
            return got;
        });
}

/// moodycamel::ReaderWriterQueue (SPSC), polling consumer.
/// `producers` threads publish M messages in all (each its share, in order), while
/// `consumers` threads call `take_one(drained&)` (how many messages it took) until M were
/// taken in all; real time, checked as run_pair checks.
template <class Produce, class TakeOne>
void run_group(benchmark::State& state, std::size_t producers, std::size_t consumers, Produce produce, TakeOne take_one) {
    const auto m = static_cast<std::uint64_t>(state.range(0));
    const std::uint64_t expected = expected_sum(m);
    std::vector<std::unique_ptr<worker>> threads;
    for (std::size_t t = 0; t < producers + consumers; ++t) threads.push_back(std::make_unique<worker>());
    std::vector<drained> got(consumers);
    for (auto _ : state) {
        std::atomic<std::uint64_t> taken{0};
        for (auto& g : got) g = {};
        for (std::size_t p = 0; p < producers; ++p) {
            threads[p]->start([&, p] {
                for (std::uint64_t i = p; i < m; i += producers) produce(i);
            });
        }
        for (std::size_t c = 0; c < consumers; ++c) {
            threads[producers + c]->start([&, c] {
                poller idle;
                while (taken.load(std::memory_order_relaxed) < m) {
                    if (const std::size_t n = take_one(got[c]); n != 0) {
                        taken.fetch_add(n, std::memory_order_relaxed);
                        idle.got();
                    } else if (!idle.idle()) {
                        break;
                    }
                }
            });
        }
        for (auto& t : threads) t->wait();
        drained all;
        for (const auto& g : got) {
            all.count += g.count;
            all.sum += g.sum;
        }
        check(state, all.count, m, "received");
        check(state, all.sum, expected, "checksum");
        if (state.error_occurred()) break;
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(static_cast<std::uint64_t>(state.iterations()) * m));
}

/// 4 producers to 4 consumers on one queue: warren through a direct exchange, each
/// consumer taking through a queue handle, one message at a time or `batch` at once.
void bm_threads_4x4_warren(benchmark::State& state, std::size_t batch) {
    mt_broker broker;
    broker.declare_queue("q");
    broker.declare_exchange("ev", "direct");
    broker.bind_queue("q", "ev", "pos");
    const auto q = broker.make_queue_handle("q");
    const auto pub = broker.make_publisher("ev");
    const auto m = static_cast<std::uint64_t>(state.range(0));
    std::atomic<std::uint64_t> unrouted{0};
    run_group(
        state, 4, 4,
        [&](std::uint64_t i) {
            if (batch == 1) {
                if (broker.publish("ev", message{.routing_key = "pos", .body = make_event(i)}) != 1) ++unrouted;
                return;
            }
            thread_local std::vector<event> pending; // each producer thread its own
            pending.push_back(make_event(i));
            if (pending.size() == batch || i + 4 >= m) { // full, or this producer's last
                unrouted += pending.size() - pub.publish_many("pos", pending);
                pending.clear();
            }
        },
        [&](drained& got) {
            if (batch == 1) {
                auto d = q.try_get();
                if (d) got.take(d->body());
                return d ? std::size_t{1} : std::size_t{0};
            }
            thread_local std::vector<mt_broker::delivery> taken; // each consumer thread its own
            const std::size_t n = q.try_get_many(taken, batch);
            for (const auto& d : taken) got.take(d.body());
            taken.clear(); // nothing kept past the call
            return n;
        });
    check(state, unrouted.load(), 0, "unrouted publishes");
}

/// 4 producers to 4 consumers on one moodycamel::ConcurrentQueue.
void bm_threads_4x4_concurrent_queue(benchmark::State& state) {
    moodycamel::ConcurrentQueue<event> queue;
    run_group(
        state, 4, 4, [&](std::uint64_t i) { queue.enqueue(make_event(i)); },
        [&](drained& got) {
            event e{};
            if (!queue.try_dequeue(e)) return std::size_t{0};
            got.take(e);
            return std::size_t{1};
        });
}

/// 4 producers to 4 consumers on one moodycamel::ConcurrentQueue in bulk: enqueue_bulk and
/// try_dequeue_bulk of take_batch, as warren's batched 4-to-4 row publishes and takes.
void bm_threads_4x4_concurrent_queue_bulk(benchmark::State& state) {
    moodycamel::ConcurrentQueue<event> queue;
    const auto m = static_cast<std::uint64_t>(state.range(0));
    run_group(
        state, 4, 4,
        [&](std::uint64_t i) {
            thread_local std::vector<event> pending; // each producer thread its own
            pending.push_back(make_event(i));
            if (pending.size() == take_batch || i + 4 >= m) {
                queue.enqueue_bulk(pending.data(), pending.size());
                pending.clear();
            }
        },
        [&](drained& got) {
            std::array<event, take_batch> out{};
            const std::size_t n = queue.try_dequeue_bulk(out.data(), out.size());
            for (std::size_t k = 0; k < n; ++k) got.take(out[k]);
            return n;
        });
}

void bm_threads_rw_queue(benchmark::State& state) {
    moodycamel::ReaderWriterQueue<event> queue;
    run_pair(
        state, [&](std::uint64_t i) { queue.enqueue(make_event(i)); },
        [&](std::uint64_t m) {
            drained got;
            poller p;
            event e{};
            while (got.count < m) {
                if (queue.try_dequeue(e)) {
                    got.take(e);
                    p.got();
                } else if (!p.idle()) {
                    break;
                }
            }
            return got;
        });
}

/// A blocking consumer: wait_dequeue_timed of moodycamel's blocking queues.
template <class Queue>
void bm_threads_blocking_queue(benchmark::State& state) {
    Queue queue;
    run_pair(
        state, [&](std::uint64_t i) { queue.enqueue(make_event(i)); },
        [&](std::uint64_t m) {
            drained got;
            const auto give_up = std::chrono::steady_clock::now() + wait_total;
            event e{};
            while (got.count < m) {
                if (queue.wait_dequeue_timed(e, wait_step)) got.take(e);
                else if (std::chrono::steady_clock::now() > give_up) break;
            }
            return got;
        });
}

/// The queue many would write themselves: std::deque under a std::mutex, a
/// condition_variable notified per push, one event taken per lock.
void bm_threads_mutex_deque(benchmark::State& state) {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<event> queue;
    run_pair(
        state,
        [&](std::uint64_t i) {
            {
                std::lock_guard lock(mutex);
                queue.push_back(make_event(i));
            }
            ready.notify_one();
        },
        [&](std::uint64_t m) {
            drained got;
            const auto give_up = std::chrono::steady_clock::now() + wait_total;
            while (got.count < m) {
                std::unique_lock lock(mutex);
                if (ready.wait_for(lock, wait_step, [&] { return !queue.empty(); })) {
                    const event e = queue.front();
                    queue.pop_front();
                    lock.unlock();
                    got.take(e);
                } else if (std::chrono::steady_clock::now() > give_up) {
                    break;
                }
            }
            return got;
        });
}

// ---------------------------------------------------------------------------
// Registration. The order is the chart's order.
// ---------------------------------------------------------------------------
constexpr std::int64_t batch_size = 256;
constexpr std::int64_t thread_messages = 65536;

void register_all() {
    using benchmark::RegisterBenchmark;
    RegisterBenchmark("batch/direct/warren", bm_batch_warren, topology::direct)->Arg(batch_size);
    RegisterBenchmark("batch/topic_cached/warren", bm_batch_warren, topology::topic_cached)->Arg(batch_size);
    RegisterBenchmark("batch/topic_uncached/warren", bm_batch_warren, topology::topic_uncached)->Arg(batch_size);
    RegisterBenchmark("batch/fanout10/warren", bm_batch_warren, topology::fanout)->Arg(batch_size);
    RegisterBenchmark("batch/queue/std_deque_function", bm_batch_std_deque, 1)->Arg(batch_size);
    RegisterBenchmark("batch/queue/std_deque_10_functions", bm_batch_std_deque, 10)->Arg(batch_size);
    RegisterBenchmark("batch/queue/moodycamel_concurrent", bm_batch_concurrent_queue)->Arg(batch_size);
    RegisterBenchmark("batch/queue/moodycamel_concurrent_bulk", bm_batch_concurrent_queue_bulk)->Arg(batch_size);
    RegisterBenchmark("batch/queue/moodycamel_rw", bm_batch_rw_queue)->Arg(batch_size);

    for (std::int64_t k : {1, 10}) {
        RegisterBenchmark("emit/sync/warren_fanout", bm_emit_warren)->Arg(k);
        RegisterBenchmark("emit/sync/warren_fanout_synchronous", bm_emit_warren_synchronous)->Arg(k);
        RegisterBenchmark("emit/sync/boost_signals2", bm_emit_signal<boost_signal>)->Arg(k);
        RegisterBenchmark("emit/sync/boost_signals2_dummy_mutex", bm_emit_signal<boost_signal_dummy_mutex>)->Arg(k);
        RegisterBenchmark("emit/sync/sigcxx", bm_emit_signal<sigc_signal>)->Arg(k);
        RegisterBenchmark("emit/sync/std_function_vector", bm_emit_signal<function_vector>)->Arg(k);
    }

    auto threaded = [](benchmark::internal::Benchmark* b) {
        b->Arg(thread_messages)->UseRealTime()->MeasureProcessCPUTime()->Unit(benchmark::kMillisecond);
    };
    using x = mt_exchange;
    using c = mt_consumer;
    threaded(RegisterBenchmark("threads/poll/warren_direct_try_get", bm_threads_warren, x::direct, c::try_get));
    threaded(RegisterBenchmark("threads/poll/warren_default_try_get", bm_threads_warren, x::default_exchange, c::try_get));
    threaded(RegisterBenchmark("threads/poll/warren_direct_handle_try_get", bm_threads_warren, x::direct, c::handle_try_get));
    threaded(RegisterBenchmark("threads/poll/warren_direct_handle_try_get_many", bm_threads_warren, x::direct,
                               c::handle_try_get_many));
    threaded(RegisterBenchmark("threads/poll/warren_direct_dispatch", bm_threads_warren, x::direct, c::dispatch));
    threaded(RegisterBenchmark("threads/poll/warren_default_dispatch", bm_threads_warren, x::default_exchange, c::dispatch));
    threaded(RegisterBenchmark("threads/poll/warren_direct_publish_many_try_get_many", bm_threads_warren_batches));
    threaded(RegisterBenchmark("threads/poll/moodycamel_concurrent", bm_threads_concurrent_queue));
    threaded(RegisterBenchmark("threads/poll/moodycamel_concurrent_bulk", bm_threads_concurrent_queue_bulk));
    threaded(RegisterBenchmark("threads/poll/moodycamel_rw", bm_threads_rw_queue));
    threaded(RegisterBenchmark("threads/wait/warren_direct_try_get_for", bm_threads_warren, x::direct, c::try_get_for));
    threaded(RegisterBenchmark("threads/wait/warren_default_try_get_for", bm_threads_warren, x::default_exchange,
                               c::try_get_for));
    threaded(RegisterBenchmark("threads/wait/moodycamel_blocking_concurrent",
                               bm_threads_blocking_queue<moodycamel::BlockingConcurrentQueue<event>>));
    threaded(RegisterBenchmark("threads/wait/moodycamel_blocking_rw",
                               bm_threads_blocking_queue<moodycamel::BlockingReaderWriterQueue<event>>));
    threaded(RegisterBenchmark("threads/wait/mutex_deque_condvar", bm_threads_mutex_deque));
    threaded(RegisterBenchmark("threads/4x4/warren_direct_handle_try_get", bm_threads_4x4_warren, 1));
    threaded(RegisterBenchmark("threads/4x4/warren_direct_publish_many_try_get_many", bm_threads_4x4_warren, take_batch));
    threaded(RegisterBenchmark("threads/4x4/moodycamel_concurrent", bm_threads_4x4_concurrent_queue));
    threaded(RegisterBenchmark("threads/4x4/moodycamel_concurrent_bulk", bm_threads_4x4_concurrent_queue_bulk));
}

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
