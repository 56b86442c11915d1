#!/usr/bin/env bash
# Builds bench_bindings in Release and runs it into docs/bench/bindings.json, then counts
# instructions per binding with callgrind (docs/bench/bindings_callgrind.txt). See
# docs/benchmarks.md, "Bindings".
#   WARREN_BENCH_BUILD_DIR  build tree (default: build/bench-release)
#   JOBS                    parallel compile jobs (default: 2)
#   BEFORE=<dir>            also run the same benchmarks built against the include/ of
#                           another checkout (e.g. a worktree of an older commit), up to
#                           20,000 bindings (docs/bench/bindings_before.json)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${WARREN_BENCH_BUILD_DIR:-$root/build/bench-release}
out=$root/docs/bench
common=(--benchmark_repetitions=5 --benchmark_report_aggregates_only=true
        --benchmark_min_time=0.5 --benchmark_out_format=json)

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWARREN_BUILD_BENCHMARKS=ON \
    -DWARREN_BUILD_TESTS=OFF -DWARREN_BUILD_EXAMPLES=OFF -DWARREN_BUILD_TOOLS=OFF \
    -DWARREN_INSTALL=OFF >/dev/null
cmake --build "$build" --target bench_bindings bench_bindings_callgrind -j "${JOBS:-2}"

mkdir -p "$out"
echo "load before: $(uptime)" >&2
"$build/bench/bench_bindings" "${common[@]}" --benchmark_out="$out/bindings.json" "$@"
if [[ -n "${BEFORE:-}" ]]; then
    before_bin=$build/bench/bench_bindings_before
    g++ -std=c++20 -O3 -DNDEBUG -I"$BEFORE/include" "$root/bench/bindings.cpp" -lbenchmark -lpthread -o "$before_bin"
    # Quadratic there: 200,000 bindings would take minutes per repetition.
    "$before_bin" "${common[@]}" --benchmark_filter='/(2000|20000)/' --benchmark_out="$out/bindings_before.json"
fi
echo "load after: $(uptime)" >&2

# Instructions, which the machine's noise does not move: bind, then unbind, N topic keys of
# one queue, collected only around each phase.
{
    for n in 20000 200000; do
        valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$build/callgrind.bindings.$n" \
            "$build/bench/bench_bindings_callgrind" "$n" >/dev/null 2>&1
        for part in 1 2; do
            file=$build/callgrind.bindings.$n.$part
            phase=$(grep -m1 '^desc: Trigger' "$file" | sed 's/.*Client Request: //')
            ir=$(grep -m1 '^summary:' "$file" | awk '{print $2}')
            echo "$n topic keys, $phase: $ir instructions, $((ir / n)) per binding"
        done
    done
} | tee "$out/bindings_callgrind.txt"
