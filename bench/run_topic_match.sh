#!/usr/bin/env bash
# Builds bench_topic_match in Release, runs it, and writes into docs/bench/ (see
# docs/benchmarks.md):
#   topic_match.json            the full run
#   topic_match_warm_heap.json  bind again, with glibc keeping freed memory, so the
#                               matcher's growth does not page-fault fresh memory
#   topic_match.png             the chart
# Extra arguments go to the full run, e.g. --benchmark_filter='route/selective'.
#   WARREN_BENCH_BUILD_DIR  build tree (default: build/bench-release)
#   JOBS                    parallel compile jobs (default: 2)
#   SKIP_WARM_HEAP=1        skip the second run
#   PYTHON                  python with matplotlib (default: python3, else /usr/bin/python3)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${WARREN_BENCH_BUILD_DIR:-$root/build/bench-release}
out=$root/docs/bench
bin=$build/bench/bench_topic_match
common=(--benchmark_repetitions=5 --benchmark_report_aggregates_only=true
        --benchmark_min_time=0.2 --benchmark_out_format=json)

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWARREN_BUILD_BENCHMARKS=ON \
    -DWARREN_BUILD_TESTS=OFF -DWARREN_BUILD_EXAMPLES=OFF -DWARREN_BUILD_TOOLS=OFF \
    -DWARREN_INSTALL=OFF >/dev/null
cmake --build "$build" --target bench_topic_match -j "${JOBS:-2}"

mkdir -p "$out"
echo "load before: $(uptime)" >&2
"$bin" "${common[@]}" --benchmark_out="$out/topic_match.json" "$@"
if [[ "${SKIP_WARM_HEAP:-0}" != 1 ]]; then
    # No mmap'd blocks and no trimming: freed memory stays in malloc's heap, so a fresh
    # matcher reuses pages the previous one touched: bind cost without page faults (but
    # for the first of a benchmark's runs, which grows the heap).
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 \
        "$bin" "${common[@]}" --benchmark_filter='^bind/' \
        --benchmark_out="$out/topic_match_warm_heap.json"
fi
echo "load after: $(uptime)" >&2
python=${PYTHON:-python3}
# A python3 earlier in PATH (pyenv, venv) may lack Debian's python3-matplotlib.
if ! "$python" -c 'import matplotlib' 2>/dev/null && [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
"$python" "$root/bench/plot_topic_match.py" "$out/topic_match.json" "$out/topic_match.png"
