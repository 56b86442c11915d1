#!/usr/bin/env bash
# Runs every warren check:
#   gcc    g++ Release, -Werror: unit tests, header self-containment,
#          README example, examples
#   clang  clang++ Debug, -Werror: the same
#   asan   clang++ with AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan   clang++ with ThreadSanitizer, multithread tests only
#   fuzz   clang++ libFuzzer, two targets (fuzz/run.sh): the topic matcher against a
#          reference matcher, and random programs of the broker's public API on both
#          policies; each replays its seeds, then fuzzes WARREN_FUZZ_SECONDS (default 60)
#   cmake consumers: find_package / add_subdirectory / FetchContent
#   rabbitmq  differential tests: warren's routing and queue arguments against a real
#          RabbitMQ (a private rabbitmq-server on loopback, started and stopped by
#          tests/differential/run.sh)
#   compile_time  the 10-line program's compile time as a ratio to Boost.Signals2's
#          equivalent, compiled in the same job (bench/run_compile_time.sh): at most 1 in
#          the compiled mode, at most 5.5 header-only (3.0-4.4 measured: a guard against
#          large regressions), best of 5 compiles each
# Installs missing Debian packages first. Exits non-zero if anything fails.
#
# Usage: ./scripts/test.sh [stage...]   (stages: gcc clang asan tsan fuzz consumers rabbitmq
#                                         compile_time; default: all of them)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------
packages=(cmake ninja-build g++ clang libclang-rt-14-dev catch2)
# The rabbitmq stage needs a RabbitMQ server and rabbitmq-c.
if (($# == 0)) || [[ " $* " == *" rabbitmq "* ]]; then
    packages+=(pkg-config librabbitmq-dev rabbitmq-server)
fi
# The compile_time stage compiles Boost.Signals2's 10-line program beside warren's.
if (($# == 0)) || [[ " $* " == *" compile_time "* ]]; then
    packages+=(libboost-dev)
fi
# shellcheck source=packages.sh
source "$root/scripts/packages.sh"
ensure_packages test.sh "${packages[@]}"

# ---------------------------------------------------------------------------
# Stages. Each runs in a subshell with errexit; a failing stage is recorded
# and the remaining stages still run, so one CI log shows every failure.
# ---------------------------------------------------------------------------
logdir="$root/build/logs"
mkdir -p "$logdir"

tests_passed=0
tests_failed=0
summary=()

preset_stage() {
    local preset="$1" wrap=()
    # clang 14's sanitizer runtimes cannot cope with the high mmap ASLR
    # entropy of newer kernels (vm.mmap_rnd_bits > 28: "unexpected memory
    # mapping"); run sanitized binaries without address randomisation there.
    # (The build runs the test executables too, for test discovery.)
    if [[ $preset == asan || $preset == tsan ]] && [ -r /proc/sys/vm/mmap_rnd_bits ] \
        && [ "$(cat /proc/sys/vm/mmap_rnd_bits)" -gt 28 ]; then
        echo "test.sh: vm.mmap_rnd_bits > 28; running $preset without ASLR (setarch -R)"
        wrap=(setarch "$(uname -m)" -R)
    fi
    cmake --preset "$preset"
    "${wrap[@]}" cmake --build --preset "$preset" -j2
    "${wrap[@]}" ctest --preset "$preset"
}

fuzz_stage() {
    # A corpus of its own, started afresh, so CI runs from the committed seeds and a
    # developer's long-run corpus in build/fuzz/corpus is left alone.
    FUZZ_CORPUS="$root/build/fuzz/ci-corpus" FUZZ_FRESH=1 \
        "$root/fuzz/run.sh" "${WARREN_FUZZ_SECONDS:-60}"
}

consumers_stage() {
    "$root/tests/cmake/run.sh"
}

compile_time_stage() {
    RUNS=5 MAX_RATIO=${WARREN_MAX_COMPILE_RATIO:-1.0} \
        MAX_HEADER_ONLY_RATIO=${WARREN_MAX_HEADER_ONLY_COMPILE_RATIO:-5.5} "$root/bench/run_compile_time.sh"
}

rabbitmq_stage() {
    # The gcc preset's build directory; only the differential tests are built here.
    local dir="$root/build/gcc/tests/differential"
    cmake --preset gcc
    cmake --build --preset gcc -j2 --target routing_differential queue_differential consumer_differential reply_to_differential
    "$root/tests/differential/run.sh" "$dir/routing_differential" -- "$dir/queue_differential" -- "$dir/consumer_differential" -- "$dir/reply_to_differential"
}

run_stage() {
    local name="$1" log="$logdir/$1.log" rc start secs
    shift
    start=$SECONDS
    printf '\n######## %s ########\n' "$name"
    set +e
    ( set -euo pipefail; "$@" ) 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    secs=$((SECONDS - start))

    # Count test results from the stage's closing lines.
    local p=0 f=0 line
    line="$(grep -E '[0-9]+ tests failed out of [0-9]+' "$log" | tail -n1 || true)"
    if [ -n "$line" ]; then
        f="$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")"
        p=$(( $(sed -E 's/.* tests failed out of ([0-9]+).*/\1/' <<<"$line") - f ))
    fi
    line="$(grep -E '^cmake consumers: [0-9]+ passed' "$log" | tail -n1 || true)"
    if [ -n "$line" ]; then
        p="$(sed -E 's/^cmake consumers: ([0-9]+) passed.*/\1/' <<<"$line")"
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1   # failed before/outside the tests (configure, build, consumer)
    fi
    tests_passed=$((tests_passed + p))
    tests_failed=$((tests_failed + f))
    if [ "$rc" -eq 0 ]; then
        summary+=("$(printf '  %-10s OK    %4ss  %s passed' "$name" "$secs" "$p")")
    else
        summary+=("$(printf '  %-10s FAIL  %4ss  %s passed, %s failed (log: %s)' "$name" "$secs" "$p" "$f" "${log#"$root"/}")")
    fi
}

stages=("$@")
if ((${#stages[@]} == 0)); then
    stages=(gcc clang asan tsan fuzz consumers rabbitmq compile_time)
fi

total_start=$SECONDS
for s in "${stages[@]}"; do
    case "$s" in
        gcc|clang|asan)
            run_stage "$s" preset_stage "$s" ;;
        tsan)
            if compgen -G "$root/tests/*_multithread.cpp" >/dev/null; then
                run_stage tsan preset_stage tsan
            else
                summary+=("$(printf '  %-10s SKIP  (no tests/*_multithread.cpp yet)' tsan)")
            fi ;;
        fuzz)
            run_stage fuzz fuzz_stage ;;
        consumers)
            run_stage consumers consumers_stage ;;
        rabbitmq)
            run_stage rabbitmq rabbitmq_stage ;;
        compile_time)
            run_stage compile_time compile_time_stage ;;
        *)
            echo "test.sh: unknown stage '$s' (gcc clang asan tsan fuzz consumers rabbitmq compile_time)" >&2
            exit 2 ;;
    esac
done

echo
echo "test.sh: stages (total $((SECONDS - total_start))s):"
printf '%s\n' "${summary[@]}"
echo "test.sh: ${tests_passed} passed, ${tests_failed} failed"
if ((tests_failed)); then
    exit 1
fi
