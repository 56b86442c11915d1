#!/usr/bin/env bash
# How long the 10-line program (declare, bind, subscribe, publish, dispatch) takes to
# compile, against Boost.Signals2's 10-line equivalent, in the same run: user CPU seconds
# and peak memory of `g++ -std=c++20 -O2 -c`, best of RUNS (default 3) each, header-only and in the
# compiled mode (-DWARREN_COMPILED_LIB, as linking warren::compiled sets it; the library
# itself is built once, not per program). See docs/benchmarks.md, "Compile time".
#   CXX                     compiler (default: g++)
#   INCLUDE                 warren's include directory (default: this checkout's)
#   MAX_RATIO               if set, fails unless the compiled mode's time is at most
#                           MAX_RATIO times Boost's (CI)
#   MAX_HEADER_ONLY_RATIO   the same for the header-only compile
#   RUNS                    compiles per program, the fastest counting (default: 3)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/bench/compile_time
cxx=${CXX:-g++}
include=${INCLUDE:-$root/include}

# The three compiles take turns, RUNS rounds of them, so that a change of load on a shared
# machine touches all three alike; the fastest of each counts.
# compile_once <source> [flags...]: "<user seconds> <peak KB>".
compile_once() {
    local source=$1
    shift
    { /usr/bin/time -f '%U %M' "$cxx" -std=c++20 -O2 "$@" -c "$source" -o /dev/null; } 2>&1 | tail -n1
}
# keep_best <name> <seconds> <KB>: remembers the fastest compile of <name>.
declare -A best_t best_m
keep_best() {
    if [[ -z ${best_t[$1]:-} ]] || awk -v a="$2" -v b="${best_t[$1]}" 'BEGIN { exit !(a < b) }'; then
        best_t[$1]=$2
        best_m[$1]=$3
    fi
}
has_compiled=0
grep -q WARREN_COMPILED_LIB "$include/warren/compiled.hpp" 2>/dev/null && has_compiled=1
for ((run = 0; run < ${RUNS:-3}; ++run)); do
    keep_best header $(compile_once "$here/warren_ten_lines.cpp" -I"$include")
    if ((has_compiled)); then
        keep_best compiled $(compile_once "$here/warren_ten_lines.cpp" -I"$include" -DWARREN_COMPILED_LIB)
    fi
    keep_best boost $(compile_once "$here/signals2_ten_lines.cpp")
done
header_t=${best_t[header]} header_m=${best_m[header]}
boost_t=${best_t[boost]} boost_m=${best_m[boost]}
compiled_t=${best_t[compiled]:-} compiled_m=${best_m[compiled]:-0}
ratio_of() { awk -v a="$1" -v b="$boost_t" 'BEGIN { printf "%.2f", a / b }'; }
header_ratio=$(ratio_of "$header_t")
printf 'compile time, %s -O2, best of %s (user s, peak MB, ratio to Boost.Signals2):\n' "$("$cxx" --version | head -n1)" "${RUNS:-3}"
printf '  warren 10 lines, header-only     %6.2f s  %5d MB  %5s\n' "$header_t" $((header_m / 1024)) "$header_ratio"
if [[ -n $compiled_t ]]; then
    compiled_ratio=$(ratio_of "$compiled_t")
    printf '  warren 10 lines, compiled mode   %6.2f s  %5d MB  %5s\n' "$compiled_t" $((compiled_m / 1024)) "$compiled_ratio"
fi
printf '  Boost.Signals2 10 lines          %6.2f s  %5d MB\n' "$boost_t" $((boost_m / 1024))

# within <ratio> <limit> <what>: fails the script when ratio > limit.
status=0
within() {
    if [[ -n $2 ]] && ! awk -v r="$1" -v m="$2" 'BEGIN { exit !(r <= m) }'; then
        echo "run_compile_time.sh: $3 compiles $1 times as long as Boost.Signals2 (limit $2)" >&2
        status=1
    fi
}
if [[ -n ${MAX_RATIO:-} && -z $compiled_t ]]; then
    echo "run_compile_time.sh: MAX_RATIO is set but $include has no compiled mode" >&2
    status=1
fi
within "${compiled_ratio:-}" "${MAX_RATIO:-}" "the compiled mode"
within "$header_ratio" "${MAX_HEADER_ONLY_RATIO:-}" "header-only warren"
exit $status
