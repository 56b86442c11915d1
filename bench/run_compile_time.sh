#!/usr/bin/env bash
# How long the 10-line program (declare, bind, subscribe, publish, dispatch) takes to
# compile, against Boost.Signals2's 10-line equivalent, in the same run: user CPU seconds
# and peak memory of `g++ -std=c++20 -O2 -c`, best of 3 each. See docs/benchmarks.md,
# "Compile time".
#   CXX          compiler (default: g++)
#   INCLUDE      warren's include directory (default: this checkout's)
#   MAX_RATIO    if set, fails unless warren's time is at most MAX_RATIO times Boost's (CI)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/bench/compile_time
cxx=${CXX:-g++}
include=${INCLUDE:-$root/include}

# best <source> [flags...]: "<user seconds> <peak KB>" of the fastest of three compiles.
best() {
    local source=$1 best_t="" best_m="" t m
    shift
    for _ in 1 2 3; do
        read -r t m < <( { /usr/bin/time -f '%U %M' "$cxx" -std=c++20 -O2 "$@" -c "$source" -o /dev/null; } 2>&1 | tail -n1)
        if [[ -z $best_t ]] || awk -v a="$t" -v b="$best_t" 'BEGIN { exit !(a < b) }'; then best_t=$t; best_m=$m; fi
    done
    echo "$best_t $best_m"
}

read -r warren_t warren_m < <(best "$here/warren_ten_lines.cpp" -I"$include")
read -r boost_t boost_m < <(best "$here/signals2_ten_lines.cpp")
ratio=$(awk -v a="$warren_t" -v b="$boost_t" 'BEGIN { printf "%.2f", a / b }')
printf 'compile time, %s -O2, best of 3 (user s, peak MB):\n' "$("$cxx" --version | head -n1)"
printf '  warren 10 lines      %6.2f s  %5d MB\n' "$warren_t" $((warren_m / 1024))
printf '  Boost.Signals2 10    %6.2f s  %5d MB\n' "$boost_t" $((boost_m / 1024))
printf '  ratio                %6s\n' "$ratio"
if [[ -n ${MAX_RATIO:-} ]] && ! awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN { exit !(r <= m) }'; then
    echo "run_compile_time.sh: warren compiles $ratio times as long as Boost.Signals2 (limit $MAX_RATIO)" >&2
    exit 1
fi
