// Instructions per route of warren::topic_matcher, for callgrind (noise-free, unlike time):
//   valgrind --tool=callgrind --collect-atstart=no ./bench_topic_match_callgrind
//       <selective|wildcard|distinct> <bindings> <cache entries, 0 for off>
// Builds the workload of bench/topic_match.cpp, routes every key twice to warm up (and, with
// a cache, to let it admit and step aside as it would), then collects only around 262,144
// more routes, the keys in turn. Prints the route count; read "Collected" from callgrind's
// summary and divide by it. docs/benchmarks.md compares the default cache with none this way.
#include <warren/topic_matcher.hpp>

#include <valgrind/callgrind.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "topic_workloads.hpp"

namespace {

constexpr std::size_t collected_routes = 262144;

std::uint64_t route(const warren::topic_matcher<std::uint32_t>& m, const bench::workload_data& d, std::size_t routes) {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < routes; ++i) {
        m.match(d.keys[i % d.keys.size()], [&](std::uint32_t v) { sum += v; });
    }
    return sum;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s selective|wildcard|distinct BINDINGS CACHE_ENTRIES\n", argv[0]);
        return 2;
    }
    const std::string_view name = argv[1];
    bench::workload kind = bench::workload::selective;
    if (name == "wildcard") {
        kind = bench::workload::wildcard;
    } else if (name == "distinct") {
        kind = bench::workload::distinct;
    } else if (name != "selective") {
        std::fprintf(stderr, "unknown workload '%s'\n", argv[1]);
        return 2;
    }
    const std::size_t bindings = std::strtoul(argv[2], nullptr, 10);
    const std::size_t cache_entries = std::strtoul(argv[3], nullptr, 10);
    const bench::workload_data d = bench::make_workload(kind, bindings);
    warren::topic_matcher<std::uint32_t> m;
    for (std::size_t i = 0; i < d.patterns.size(); ++i) m.insert(d.patterns[i], static_cast<std::uint32_t>(i));
    m.set_cache_capacity(cache_entries);
    std::uint64_t sum = route(m, d, 2 * d.keys.size());
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_TOGGLE_COLLECT;
    sum += route(m, d, collected_routes);
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_STOP_INSTRUMENTATION;
    std::printf("%zu routes (checksum %llu)\n", collected_routes, static_cast<unsigned long long>(sum));
}
