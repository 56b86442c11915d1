#!/usr/bin/env bash
# Builds warren's libFuzzer targets with clang and fuzzes each for a while.
#
# Usage: fuzz/run.sh [SECONDS] [libFuzzer flags...]     (default: 60 seconds per target)
#   e.g. fuzz/run.sh 600                  ten minutes each
#        fuzz/run.sh 60 -seed=1           a reproducible run
#        FUZZ_TARGETS=broker_fuzz fuzz/run.sh 3600    one target, an hour
#        FUZZ_FRESH=1 fuzz/run.sh         forget the corpora grown by earlier runs
# Environment: FUZZ_TARGETS (default: topic_matcher_fuzz broker_fuzz), FUZZ_BUILD_DIR
# (default build/fuzz), FUZZ_CORPUS (where the grown corpora live, one folder per target,
# default $FUZZ_BUILD_DIR/corpus), CXX_FUZZ (default clang++).
#
# For each target: first replays every committed seed (fuzz/corpus/ for the matcher,
# fuzz/corpus-broker/ for the broker; a regression check), then fuzzes from the seeds plus
# the corpus grown by earlier runs (never committed). Crashes, mismatches and timeouts are
# saved in build/fuzz/artifacts/; the output ends with libFuzzer's figures and a one-line
# summary per target. Exits non-zero on any crash, mismatch or timeout. See docs/fuzzing.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-$root/build/fuzz}"
corpus_root="${FUZZ_CORPUS:-$build/corpus}"
seconds="${1:-60}"
shift || true
read -r -a targets <<<"${FUZZ_TARGETS:-topic_matcher_fuzz broker_fuzz}"

cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" \
    -DCMAKE_BUILD_TYPE=Debug \
    -DWARREN_BUILD_FUZZERS=ON -DWARREN_WERROR=ON \
    -DWARREN_BUILD_TESTS=OFF -DWARREN_BUILD_EXAMPLES=OFF -DWARREN_BUILD_TOOLS=OFF \
    -DWARREN_INSTALL=OFF >/dev/null
cmake --build "$build" --target "${targets[@]}" -j2

# clang 14's sanitizer runtimes cannot cope with the high mmap ASLR entropy of newer
# kernels (vm.mmap_rnd_bits > 28: "unexpected memory mapping"); run without it there.
wrap=()
if [ -r /proc/sys/vm/mmap_rnd_bits ] && [ "$(cat /proc/sys/vm/mmap_rnd_bits)" -gt 28 ]; then
    wrap=(setarch "$(uname -m)" -R)
fi

failed=0
for target in "${targets[@]}"; do
    fuzzer="$build/fuzz/$target"
    extra=()
    case "$target" in
        topic_matcher_fuzz)
            seeds_dir="$root/fuzz/corpus"
            extra=(-dict="$root/fuzz/topic_matcher_fuzz.dict") ;;
        broker_fuzz)
            seeds_dir="$root/fuzz/corpus-broker"
            # Programs of a few hundred operations; a deadlock shows as a timeout.
            extra=(-max_len=4096) ;;
        *)
            echo "fuzz/run.sh: unknown target '$target'" >&2
            exit 2 ;;
    esac
    corpus="$corpus_root/$target"
    log="$build/last-run-$target.log"

    seeds=("$seeds_dir"/*)
    echo "fuzz/run.sh: $target: replaying ${#seeds[@]} seeds"
    if ! "${wrap[@]}" "$fuzzer" "${seeds[@]}" >"$build/seeds-$target.log" 2>&1; then
        grep -v -e '^INFO:' -e '^Executed ' "$build/seeds-$target.log" >&2
        echo "fuzz/run.sh: $target: a seed input fails" >&2
        failed=1
        continue
    fi

    if [ -n "${FUZZ_FRESH:-}" ]; then rm -rf "$corpus"; fi
    mkdir -p "$corpus" "$build/artifacts"
    echo "fuzz/run.sh: $target: fuzzing for ${seconds}s (log: $log)"
    # New inputs go to the first directory only, so the committed seeds stay as they are.
    set +e
    "${wrap[@]}" "$fuzzer" -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${extra[@]}" \
        -artifact_prefix="$build/artifacts/$target-" "$@" "$corpus" "$seeds_dir" >"$log" 2>&1
    rc=$?
    set -e

    grep -v -e '^#[0-9]' -e '^"' -e '^###' -e '^INFO: ' -e 'NEW_FUNC' "$log" | tail -n 40
    last="$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -n 1 || true)"
    echo "fuzz/run.sh: $target: last status: ${last:-none}"
    echo "fuzz/run.sh: $target: corpus: $(find "$corpus" -type f | wc -l) inputs in $corpus"
    if [ "$rc" -ne 0 ]; then
        echo "fuzz/run.sh: $target: FAILED (exit $rc); reproduce with: $fuzzer $build/artifacts/$target-<file>" >&2
        echo "             (WARREN_FUZZ_TRACE=1 prints each operation)" >&2
        failed=1
        continue
    fi
    echo "fuzz/run.sh: $target: OK, no crash, mismatch or timeout in ${seconds}s"
done
exit "$failed"
