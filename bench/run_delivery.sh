#!/usr/bin/env bash
# Builds bench_delivery in Release, runs it, and writes into docs/bench/ (see
# docs/benchmarks.md):
#   delivery.json            the full run: warren against Boost.Signals2, libsigc++,
#                            std::function, std::deque and moodycamel's queues
#   delivery_warm_heap.json  the threads/ benchmarks again, with glibc keeping freed
#                            memory, so warren's per-message nodes do not page-fault
#                            fresh memory every iteration
#   delivery.png             the chart
# Extra arguments go to the full run, e.g. --benchmark_filter='^emit/'.
#   WARREN_BENCH_BUILD_DIR  build tree (default: build/bench-release)
#   WARREN_BENCH_OUT_DIR    where the files go (default: docs/bench)
#   JOBS                    parallel compile jobs (default: 2)
#   SKIP_WARM_HEAP=1        skip the second run
#   PYTHON                  python with matplotlib (default: python3, else /usr/bin/python3)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${WARREN_BENCH_BUILD_DIR:-$root/build/bench-release}
out=${WARREN_BENCH_OUT_DIR:-$root/docs/bench}
bin=$build/bench/bench_delivery
common=(--benchmark_repetitions=5 --benchmark_report_aggregates_only=true
        --benchmark_min_time=0.2 --benchmark_out_format=json)

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DWARREN_BUILD_BENCHMARKS=ON \
    -DWARREN_BUILD_TESTS=OFF -DWARREN_BUILD_EXAMPLES=OFF -DWARREN_BUILD_TOOLS=OFF \
    -DWARREN_INSTALL=OFF >/dev/null
cmake --build "$build" --target bench_delivery -j "${JOBS:-2}"

mkdir -p "$out"
echo "load before: $(uptime)" >&2
"$bin" "${common[@]}" --benchmark_out="$out/delivery.json" "$@"
if [[ "${SKIP_WARM_HEAP:-0}" != 1 ]]; then
    # No mmap'd blocks and no trimming: the memory of the messages a producer ran ahead
    # with stays in malloc's heap for the next iteration (as in a long-running process),
    # instead of going back to the kernel and faulting in again.
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 \
        "$bin" "${common[@]}" --benchmark_filter='^threads/' \
        --benchmark_out="$out/delivery_warm_heap.json"
fi
echo "load after: $(uptime)" >&2
python=${PYTHON:-python3}
# A python3 earlier in PATH (pyenv, venv) may lack Debian's python3-matplotlib.
if ! "$python" -c 'import matplotlib' 2>/dev/null && [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
"$python" "$root/bench/plot_delivery.py" "$out/delivery.json" "$out/delivery.png"
