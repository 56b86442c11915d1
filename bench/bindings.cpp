// What bindings cost in a broker as their number grows: binding and unbinding N keys of one
// queue, and N queues under one key, and deleting the queue or exchange that holds them,
// against the floor of a plain std::unordered_set of the same keys. See docs/benchmarks.md
// and bench/run_bindings.sh.
//
// Each benchmark times the whole batch of N operations (setup paused) and reports it as
// items per second; ns per binding is its inverse. Sizes grow tenfold, so a cost that is
// O(1) per binding shows the same ns at every size, and an O(n) one ten times as many.
//
// With WARREN_CALLGRIND defined it is instead a small program for callgrind: bind then
// unbind N keys of one queue with collection on only around each phase, e.g.
//   valgrind --tool=callgrind --collect-atstart=no build/.../bench_bindings_callgrind 20000

#include <warren/broker.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#ifdef WARREN_CALLGRIND
#include <cstdio>
#include <cstdlib>
#include <valgrind/callgrind.h>
#else
#include <benchmark/benchmark.h>
#endif

namespace {

constexpr const char* exchange_types[] = {"direct", "topic", "fanout", "headers"};

struct binding_spec {
    std::string key;
    warren::field_table arguments;
};

/// N distinct bindings of an exchange type: keys k.<i> (topic: k.<i>.*), or for headers
/// the arguments {x-match: any, id: i}; shuffled, so that unbinding goes in another order.
std::vector<binding_spec> bindings(const std::string& type, std::size_t n) {
    std::vector<binding_spec> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        if (type == "headers") out.push_back({"", {{"x-match", "any"}, {"id", static_cast<std::int64_t>(i)}}});
        else if (type == "topic") out.push_back({"k." + std::to_string(i) + ".*", {}});
        else out.push_back({"k." + std::to_string(i), {}});
    }
    std::shuffle(out.begin(), out.end(), std::mt19937(7));
    return out;
}

std::vector<std::string> queue_names(std::size_t n) {
    std::vector<std::string> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.push_back("q" + std::to_string(i));
    return out;
}

} // namespace

#ifdef WARREN_CALLGRIND

int main(int argc, char** argv) {
    const std::size_t n = argc > 1 ? static_cast<std::size_t>(std::atol(argv[1])) : 20'000;
    const auto specs = bindings("topic", n);
    warren::broker b;
    b.declare_exchange("x", "topic");
    b.declare_queue("q");
    CALLGRIND_TOGGLE_COLLECT;
    for (const auto& s : specs) b.bind_queue("q", "x", s.key, s.arguments);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_DUMP_STATS_AT("bind");
    CALLGRIND_TOGGLE_COLLECT;
    for (const auto& s : specs) b.unbind_queue("q", "x", s.key, s.arguments);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_DUMP_STATS_AT("unbind");
    std::printf("%zu bindings bound and unbound\n", n);
    return b.snapshot().bindings.empty() ? 0 : 1;
}

#else

namespace {

/// Binds N keys of one queue (argument 0: N; argument 1: the exchange type).
void keys_bind(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::string type = exchange_types[state.range(1)];
    const auto specs = bindings(type, n);
    for (auto _ : state) {
        state.PauseTiming();
        auto b = std::make_unique<warren::broker>();
        b->declare_exchange("x", type);
        b->declare_queue("q");
        state.ResumeTiming();
        for (const auto& s : specs) b->bind_queue("q", "x", s.key, s.arguments);
        state.PauseTiming();
        b.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(type);
}

/// Unbinds N keys of one queue, in another order than they were bound.
void keys_unbind(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::string type = exchange_types[state.range(1)];
    const auto specs = bindings(type, n);
    auto order = specs;
    std::shuffle(order.begin(), order.end(), std::mt19937(11));
    for (auto _ : state) {
        state.PauseTiming();
        auto b = std::make_unique<warren::broker>();
        b->declare_exchange("x", type);
        b->declare_queue("q");
        for (const auto& s : specs) b->bind_queue("q", "x", s.key, s.arguments);
        state.ResumeTiming();
        for (const auto& s : order) b->unbind_queue("q", "x", s.key, s.arguments);
        state.PauseTiming();
        b.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(type);
}

/// Deletes the one queue that holds N bindings: deletion drops them all.
void keys_delete_queue(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::string type = exchange_types[state.range(1)];
    const auto specs = bindings(type, n);
    for (auto _ : state) {
        state.PauseTiming();
        auto b = std::make_unique<warren::broker>();
        b->declare_exchange("x", type);
        b->declare_queue("q");
        for (const auto& s : specs) b->bind_queue("q", "x", s.key, s.arguments);
        state.ResumeTiming();
        (void)b->delete_queue("q");
        state.PauseTiming();
        b.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(type);
}

/// Binds N queues under one key of one exchange (argument 1: the exchange type).
void queues_bind(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::string type = exchange_types[state.range(1)];
    const auto names = queue_names(n);
    const warren::field_table args = type == "headers" ? warren::field_table{{"x-match", "any"}, {"a", 1}} : warren::field_table{};
    for (auto _ : state) {
        state.PauseTiming();
        auto b = std::make_unique<warren::broker>();
        b->declare_exchange("x", type);
        for (const auto& q : names) b->declare_queue(q);
        state.ResumeTiming();
        for (const auto& q : names) b->bind_queue(q, "x", "k", args);
        state.PauseTiming();
        b.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(type);
}

/// Unbinds N queues from one key, in another order than they were bound.
void queues_unbind(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::string type = exchange_types[state.range(1)];
    const auto names = queue_names(n);
    auto order = names;
    std::shuffle(order.begin(), order.end(), std::mt19937(11));
    const warren::field_table args = type == "headers" ? warren::field_table{{"x-match", "any"}, {"a", 1}} : warren::field_table{};
    for (auto _ : state) {
        state.PauseTiming();
        auto b = std::make_unique<warren::broker>();
        b->declare_exchange("x", type);
        for (const auto& q : names) b->declare_queue(q);
        for (const auto& q : names) b->bind_queue(q, "x", "k", args);
        state.ResumeTiming();
        for (const auto& q : order) b->unbind_queue(q, "x", "k", args);
        state.PauseTiming();
        b.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(type);
}

/// Declares N queues, then deletes them (each deletion drops its binding from a long list).
void queues_declare_delete(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const auto names = queue_names(n);
    for (auto _ : state) {
        state.PauseTiming();
        auto b = std::make_unique<warren::broker>();
        b->declare_exchange("x", "fanout");
        state.ResumeTiming();
        for (const auto& q : names) b->declare_queue(q);
        for (const auto& q : names) b->bind_queue(q, "x");
        for (const auto& q : names) (void)b->delete_queue(q);
        state.PauseTiming();
        b.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

/// The floor: inserting and erasing the same N keys in a std::unordered_set.
void floor_set(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const auto specs = bindings("direct", n);
    const bool erase = state.range(1) != 0;
    for (auto _ : state) {
        state.PauseTiming();
        auto set = std::make_unique<std::unordered_set<std::string>>();
        if (erase) {
            for (const auto& s : specs) set->insert(s.key);
        }
        state.ResumeTiming();
        for (const auto& s : specs) {
            if (erase) set->erase(s.key);
            else set->insert(s.key);
        }
        state.PauseTiming();
        set.reset();
        state.ResumeTiming();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(erase ? "erase" : "insert");
}

void key_sizes(benchmark::internal::Benchmark* b) {
    for (std::int64_t type = 0; type < 4; ++type) {
        for (std::int64_t n : {2'000, 20'000, 200'000}) b->Args({n, type});
    }
}
void queue_sizes(benchmark::internal::Benchmark* b) {
    for (std::int64_t type = 0; type < 4; ++type) {
        for (std::int64_t n : {2'000, 20'000}) b->Args({n, type});
    }
}

} // namespace

BENCHMARK(keys_bind)->Apply(key_sizes)->Unit(benchmark::kMillisecond);
BENCHMARK(keys_unbind)->Apply(key_sizes)->Unit(benchmark::kMillisecond);
BENCHMARK(keys_delete_queue)->Apply(key_sizes)->Unit(benchmark::kMillisecond);
BENCHMARK(queues_bind)->Apply(queue_sizes)->Unit(benchmark::kMillisecond);
BENCHMARK(queues_unbind)->Apply(queue_sizes)->Unit(benchmark::kMillisecond);
BENCHMARK(queues_declare_delete)->Arg(2'000)->Arg(20'000)->Unit(benchmark::kMillisecond);
BENCHMARK(floor_set)->ArgsProduct({{2'000, 20'000, 200'000}, {0, 1}})->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();

#endif
