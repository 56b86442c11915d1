#!/usr/bin/env bash
# Builds warren's libFuzzer target with clang and fuzzes it for a while.
#
# Usage: fuzz/run.sh [SECONDS] [libFuzzer flags...]     (default: 60 seconds)
#   e.g. fuzz/run.sh 600                  a ten-minute run
#        fuzz/run.sh 60 -seed=1           a reproducible one
#        FUZZ_FRESH=1 fuzz/run.sh         forget the corpus grown by earlier runs
# Environment: FUZZ_BUILD_DIR (default build/fuzz), FUZZ_CORPUS (the grown corpus,
# default $FUZZ_BUILD_DIR/corpus), CXX_FUZZ (default clang++).
#
# First replays every seed in fuzz/corpus/ (a regression check), then fuzzes from the
# seeds plus the corpus grown by earlier runs in build/fuzz/corpus/ (never committed).
# Crashes and mismatches are saved in build/fuzz/artifacts/; the output ends with
# libFuzzer's figures and a one-line summary. Exits non-zero on any crash or mismatch.
# See docs/fuzzing.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz}"
corpus="${FUZZ_CORPUS:-$build/corpus}"
seconds="${1:-60}"
shift || true

cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" \
    -DCMAKE_BUILD_TYPE=Debug \
    -DWARREN_BUILD_FUZZERS=ON -DWARREN_WERROR=ON \
    -DWARREN_BUILD_TESTS=OFF -DWARREN_BUILD_EXAMPLES=OFF -DWARREN_BUILD_TOOLS=OFF \
    -DWARREN_INSTALL=OFF >/dev/null
cmake --build "$build" --target topic_matcher_fuzz -j2

# clang 14's sanitizer runtimes cannot cope with the high mmap ASLR entropy of newer
# kernels (vm.mmap_rnd_bits > 28: "unexpected memory mapping"); run without it there.
wrap=()
if [ -r /proc/sys/vm/mmap_rnd_bits ] && [ "$(cat /proc/sys/vm/mmap_rnd_bits)" -gt 28 ]; then
    wrap=(setarch "$(uname -m)" -R)
fi
fuzzer="$build/fuzz/topic_matcher_fuzz"

seeds=("$root"/fuzz/corpus/*)
echo "fuzz/run.sh: replaying ${#seeds[@]} seeds"
if ! "${wrap[@]}" "$fuzzer" "${seeds[@]}" >"$build/seeds.log" 2>&1; then
    grep -v -e '^INFO:' -e '^Executed ' "$build/seeds.log" >&2
    echo "fuzz/run.sh: a seed input fails" >&2
    exit 1
fi

if [ -n "${FUZZ_FRESH:-}" ]; then rm -rf "$corpus"; fi
mkdir -p "$corpus" "$build/artifacts"
log="$build/last-run.log"
echo "fuzz/run.sh: fuzzing for ${seconds}s (log: $log)"
# New inputs go to the first directory only, so the committed seeds stay as they are.
set +e
"${wrap[@]}" "$fuzzer" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -dict="$root/fuzz/topic_matcher_fuzz.dict" -artifact_prefix="$build/artifacts/" "$@" "$corpus" "$root/fuzz/corpus" >"$log" 2>&1
rc=$?
set -e

grep -v -e '^#[0-9]' -e '^"' -e '^###' -e '^INFO: ' -e 'NEW_FUNC' "$log" | tail -n 40
last="$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)"
echo "fuzz/run.sh: last status: ${last:-none}"
echo "fuzz/run.sh: corpus: $(find "$corpus" -type f | wc -l) inputs in $corpus"
if [ "$rc" -ne 0 ]; then
    echo "fuzz/run.sh: FAILED (exit $rc); reproduce with: $fuzzer $build/artifacts/<file>" >&2
    echo "             (WARREN_FUZZ_TRACE=1 prints each operation)" >&2
    exit "$rc"
fi
echo "fuzz/run.sh: OK, no crash or mismatch in ${seconds}s"
