// Topic matching: warren::topic_matcher against a naive matcher and a plain trie
// (bench/baselines.hpp), in one binary and one run. docs/benchmarks.md explains the
// workloads and holds the figures; bench/run_topic_match.sh produces them.
//
// Benchmark names read <what>/<workload>/<matcher>/<bindings>:
//   route/...   one route per iteration: the time per iteration is the time per route
//   bind/...    N inserts into a fresh matcher per iteration; items/s counts bindings
//   unbind/...  N erases (in a shuffled order) from a full matcher per iteration
//   memory/...  counters only: bytes per binding (memory_bytes() and the counted heap)

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <warren/topic_matcher.hpp>

#include "baselines.hpp"
#include "topic_workloads.hpp"

// ---------------------------------------------------------------------------
// Heap counting. Every global operator new/delete of the binary goes through these; they
// only count while `heap::counting` is set, which is only while a fixture builds its
// matchers (build_counted), so the timed benchmarks pay one predictable branch per
// allocation (and a warm route allocates nothing in any of the three matchers).
// ---------------------------------------------------------------------------
namespace heap {
bool counting = false;
std::int64_t live_bytes = 0; // usable bytes of blocks allocated minus freed while counting
std::int64_t allocations = 0;
} // namespace heap

void* operator new(std::size_t n) {
    void* p = std::malloc(n == 0 ? 1 : n);
    if (p == nullptr) throw std::bad_alloc();
    if (heap::counting) {
        heap::live_bytes += static_cast<std::int64_t>(malloc_usable_size(p));
        ++heap::allocations;
    }
    return p;
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept {
    if (p != nullptr && heap::counting) heap::live_bytes -= static_cast<std::int64_t>(malloc_usable_size(p));
    std::free(p);
}
void operator delete[](void* p) noexcept { ::operator delete(p); }
void operator delete(void* p, std::size_t) noexcept { ::operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { ::operator delete(p); }

namespace {
using namespace bench; // the workloads (topic_workloads.hpp)

using value_type = std::uint32_t;
using warren_matcher = warren::topic_matcher<value_type>;
using trie_matcher = bench::plain_trie<value_type>;
using naive_matcher = bench::naive_matcher<value_type>;

constexpr std::size_t sizes[] = {1'000, 10'000, 100'000, 1'000'000};
// The naive matcher costs O(bindings) per route: beyond this it would dominate the run.
constexpr std::size_t naive_max_bindings = 100'000;
// warren's cache is two-way set associative: three hit keys that share a pair would evict
// each other on every pass. 256 keys in 4,096 entries put three in one pair for some
// workloads here; in 65,536 entries none do, so every route of the hit runs is a hit.
constexpr std::size_t cache_capacity = 65536;
// The cache size a broker gives each topic exchange (basic_broker::default_routing_cache_capacity).
constexpr std::size_t default_cache_capacity = 1024;


template <class M>
std::unique_ptr<M> build(const workload_data& d) {
    auto m = std::make_unique<M>();
    for (std::size_t i = 0; i < d.patterns.size(); ++i) m->insert(d.patterns[i], static_cast<value_type>(i));
    return m;
}

/// What building one matcher left on the heap (see operator new above).
struct heap_use {
    std::int64_t bytes = 0;
    std::int64_t allocations = 0;
};

template <class M>
std::unique_ptr<M> build_counted(const workload_data& d, heap_use& use) {
    heap::live_bytes = 0;
    heap::allocations = 0;
    heap::counting = true;
    auto m = build<M>(d);
    heap::counting = false;
    use = {heap::live_bytes, heap::allocations};
    return m;
}

template <class M>
std::vector<value_type> results(const M& m, std::string_view key) {
    std::vector<value_type> out;
    m.match(key, [&](value_type v) { out.push_back(v); });
    std::sort(out.begin(), out.end());
    return out;
}

// ---------------------------------------------------------------------------
// One workload at one size, with the three matchers built on first use and checked
// against each other before anything is timed. Only the latest is kept: benchmarks are
// registered grouped by (workload, size), so each is built once and the 1M ones do not
// pile up in memory.
// ---------------------------------------------------------------------------
struct fixture {
    fixture(workload w, std::size_t n) : kind(w), bindings(n), data(make_workload(w, n)) {}

    workload kind;
    std::size_t bindings;
    workload_data data;
    std::unique_ptr<warren_matcher> fast;
    std::unique_ptr<trie_matcher> trie;
    std::unique_ptr<naive_matcher> naive; // only up to naive_max_bindings
    heap_use fast_heap, trie_heap, naive_heap;
    std::size_t fast_memory_bytes = 0; // fast->memory_bytes() right after building

    /// Builds the matchers (counting their heap) and aborts the run if any two disagree
    /// on any key.
    void build_matchers() {
        if (fast) return;
        fast = build_counted<warren_matcher>(data, fast_heap);
        fast_memory_bytes = fast->memory_bytes();
        trie = build_counted<trie_matcher>(data, trie_heap);
        auto slow = build_counted<naive_matcher>(data, naive_heap);
        // Past naive_max_bindings the naive matcher checks a sample: it is O(n) per key.
        const std::size_t naive_keys = bindings <= naive_max_bindings ? std::min(data.keys.size(), key_count) : 64;
        std::size_t matched = 0;
        std::size_t deliveries = 0;
        for (std::size_t i = 0; i < data.keys.size(); ++i) {
            const std::string& key = data.keys[i];
            const auto expected = results(*fast, key);
            const auto from_trie = results(*trie, key);
            const bool naive_ok = i >= naive_keys || results(*slow, key) == expected;
            if (from_trie != expected || !naive_ok) {
                std::fprintf(stderr, "MISMATCH %s/%zu key '%s': warren %zu values, trie %zu, naive %s\n",
                             workload_name(kind), bindings, key.c_str(), expected.size(), from_trie.size(),
                             naive_ok ? "agrees" : "differs");
                std::abort();
            }
            matched += expected.empty() ? 0 : 1;
            deliveries += expected.size();
        }
        // The cache must answer what the trie walk answers, on the miss and on the hit (a
        // key is admitted on its second miss, so the third pass hits).
        fast->set_cache_capacity(cache_capacity);
        for (int pass = 0; pass < 3; ++pass) {
            for (const std::string& key : data.hit_keys) {
                if (results(*fast, key) != results(*trie, key)) {
                    std::fprintf(stderr, "MISMATCH %s/%zu key '%s': warren's cache (pass %d) differs\n",
                                 workload_name(kind), bindings, key.c_str(), pass);
                    std::abort();
                }
            }
        }
        fast->set_cache_capacity(0);
        if (kind == workload::fanout && deliveries != std::min(fanout_matches, bindings)) {
            std::fprintf(stderr, "fanout/%zu: the hot key matched %zu bindings, not %zu\n", bindings, deliveries,
                         fanout_matches);
            std::abort();
        }
        std::fprintf(stderr, "check %s/%zu: %zu keys (naive on %zu), %zu matched, %.2f values per key: all agree\n",
                     workload_name(kind), bindings, data.keys.size(), std::min(naive_keys, data.keys.size()),
                     matched, static_cast<double>(deliveries) / static_cast<double>(data.keys.size()));
        if (bindings <= naive_max_bindings) naive = std::move(slow);
    }
};

std::unique_ptr<fixture> current;

fixture& get_fixture(workload w, std::size_t n) {
    if (!current || current->kind != w || current->bindings != n) {
        current.reset(); // free the previous one first
        current = std::make_unique<fixture>(w, n);
    }
    return *current;
}

// ---------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------
enum class matcher_kind { warren_cache_off, warren_cache_on, warren_cache_hit, plain_trie, naive };

const char* matcher_name(matcher_kind m) {
    switch (m) {
    case matcher_kind::warren_cache_off: return "warren_cache_off";
    case matcher_kind::warren_cache_on: return "warren_cache_on";
    case matcher_kind::warren_cache_hit: return "warren_cache_hit";
    case matcher_kind::plain_trie: return "plain_trie";
    case matcher_kind::naive: return "naive";
    }
    return "?";
}

template <class M>
void route_loop(benchmark::State& state, const M& m, const std::vector<std::string>& keys) {
    const std::size_t mask = keys.size() - 1;
    std::size_t i = 0;
    std::uint64_t sum = 0;
    std::uint64_t delivered = 0;
    auto on_match = [&](value_type v) {
        sum += v;
        ++delivered;
    };
    for (auto _ : state) m.match(keys[i++ & mask], on_match);
    benchmark::DoNotOptimize(sum);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
    state.counters["values_per_route"] =
        static_cast<double>(delivered) / static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
}

void bm_route(benchmark::State& state, workload w, matcher_kind kind) {
    fixture& f = get_fixture(w, static_cast<std::size_t>(state.range(0)));
    f.build_matchers();
    switch (kind) {
    case matcher_kind::warren_cache_off:
        f.fast->set_cache_capacity(0);
        route_loop(state, *f.fast, f.data.keys);
        break;
    case matcher_kind::warren_cache_on: {
        // The broker's default cache on the workload's own keys: what a user gets without
        // tuning. The hit rate is reported beside the time.
        f.fast->set_cache_capacity(default_cache_capacity);
        route_loop(state, *f.fast, f.data.keys);
        const warren::topic_cache_stats& stats = f.fast->cache_stats();
        state.counters["cache_hit_rate"] = stats.hit_rate();
        state.counters["cache_bypassed"] =
            static_cast<double>(stats.bypassed) / static_cast<double>(std::max<std::uint64_t>(stats.lookups + stats.bypassed, 1));
        f.fast->set_cache_capacity(0);
        break;
    }
    case matcher_kind::warren_cache_hit:
        f.fast->set_cache_capacity(cache_capacity);
        for (int pass = 0; pass < 2; ++pass) { // admitted on the second miss
            for (const std::string& k : f.data.hit_keys) f.fast->match(k, [](value_type) {});
        }
        route_loop(state, *f.fast, f.data.hit_keys);
        f.fast->set_cache_capacity(0);
        break;
    case matcher_kind::plain_trie: route_loop(state, *f.trie, f.data.keys); break;
    case matcher_kind::naive: route_loop(state, *f.naive, f.data.keys); break;
    }
}

/// N inserts into a fresh matcher per iteration; the old one is destroyed, and the new one
/// made, while the clock is paused.
template <class M>
void bm_bind(benchmark::State& state, workload w) {
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const workload_data& d = get_fixture(w, n).data;
    std::optional<M> m;
    for (auto _ : state) {
        state.PauseTiming();
        m.reset();
        m.emplace();
        state.ResumeTiming();
        for (std::size_t i = 0; i < n; ++i) m->insert(d.patterns[i], static_cast<value_type>(i));
    }
    benchmark::DoNotOptimize(m);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n));
}

/// N erases, in a shuffled order, from a full matcher per iteration (filled while paused).
template <class M>
void bm_unbind(benchmark::State& state, workload w) {
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const workload_data& d = get_fixture(w, n).data;
    std::optional<M> m;
    for (auto _ : state) {
        state.PauseTiming();
        m.reset();
        m.emplace();
        for (std::size_t i = 0; i < n; ++i) m->insert(d.patterns[i], static_cast<value_type>(i));
        state.ResumeTiming();
        for (std::size_t i : d.erase_order) {
            if (!m->erase(d.patterns[i], static_cast<value_type>(i))) state.SkipWithError("erase failed");
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(n));
}

/// Bytes per binding, from the fixture's build: the heap each matcher holds (counted by
/// the operator new above, in usable bytes, without malloc's per-block header) and, for
/// warren, memory_bytes(). Deterministic, so one "iteration" that times nothing.
void bm_memory(benchmark::State& state, workload w, matcher_kind kind) {
    fixture& f = get_fixture(w, static_cast<std::size_t>(state.range(0)));
    f.build_matchers();
    const heap_use& use = kind == matcher_kind::plain_trie ? f.trie_heap
                          : kind == matcher_kind::naive    ? f.naive_heap
                                                           : f.fast_heap;
    const double per = 1.0 / static_cast<double>(f.bindings);
    for (auto _ : state) {
    }
    state.counters["heap_bytes_per_binding"] = static_cast<double>(use.bytes) * per;
    state.counters["heap_allocs_per_binding"] = static_cast<double>(use.allocations) * per;
    state.counters["text_bytes_per_binding"] = static_cast<double>(f.data.text_bytes) * per;
    if (kind == matcher_kind::warren_cache_off) {
        state.counters["bytes_per_binding"] = static_cast<double>(f.fast_memory_bytes) * per;
    }
}

void register_all() {
    using benchmark::RegisterBenchmark;
    const workload all[] = {workload::selective, workload::wildcard, workload::fanout, workload::distinct};
    for (workload w : all) {
        const std::string wn = workload_name(w);
        for (std::size_t n : sizes) {
            const auto arg = static_cast<std::int64_t>(n);
            for (matcher_kind m : {matcher_kind::warren_cache_off, matcher_kind::warren_cache_on,
                                   matcher_kind::warren_cache_hit, matcher_kind::plain_trie, matcher_kind::naive}) {
                if (m == matcher_kind::naive && n > naive_max_bindings) continue;
                // The distinct keys are there for the cache; its hit run repeats a few of them.
                if (w == workload::distinct && (m == matcher_kind::warren_cache_hit || m == matcher_kind::naive)) continue;
                RegisterBenchmark(("route/" + wn + "/" + matcher_name(m)).c_str(), bm_route, w, m)->Arg(arg);
            }
            if (w == workload::fanout || w == workload::distinct) continue; // their bindings are the selective ones
            RegisterBenchmark(("bind/" + wn + "/warren").c_str(), bm_bind<warren_matcher>, w)->Arg(arg);
            RegisterBenchmark(("bind/" + wn + "/plain_trie").c_str(), bm_bind<trie_matcher>, w)->Arg(arg);
            RegisterBenchmark(("unbind/" + wn + "/warren").c_str(), bm_unbind<warren_matcher>, w)->Arg(arg);
            RegisterBenchmark(("unbind/" + wn + "/plain_trie").c_str(), bm_unbind<trie_matcher>, w)->Arg(arg);
            for (matcher_kind m : {matcher_kind::warren_cache_off, matcher_kind::plain_trie, matcher_kind::naive}) {
                const std::string mn = m == matcher_kind::warren_cache_off ? "warren" : matcher_name(m);
                RegisterBenchmark(("memory/" + wn + "/" + mn).c_str(), bm_memory, w, m)
                    ->Arg(arg)
                    ->Iterations(1)
                    ->Repetitions(1);
            }
        }
    }
}

} // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    // Fail fast: check the three matchers agree on every workload before the long run.
    for (workload w : {workload::selective, workload::wildcard, workload::fanout}) get_fixture(w, 1000).build_matchers();
    current.reset();
    register_all();
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
