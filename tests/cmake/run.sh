#!/usr/bin/env bash
# Proves the three ways a downstream CMake project can consume warren:
#   1. find_package(warren) against an installed copy (cmake --install),
#      and against the build tree (warren_DIR=<build dir>, no install),
#   2. add_subdirectory(<warren checkout>),
#   3. FetchContent (SOURCE_DIR = the local checkout; no network).
# Each also builds the compiled mode (warren::compiled) and runs a program linked to it.
# Each consumer (tests/cmake/<way>/) is configured, built and run.
#
# Usage: tests/cmake/run.sh        (compiler: $CXX if set, else CMake's default)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/warren-consumers.XXXXXX")"
trap 'rm -rf "$work"' EXIT

gen=()
if command -v ninja >/dev/null 2>&1; then gen=(-G Ninja); fi

passed=0
log() { printf '\n=== consumers: %s\n' "$*"; }

# consumer NAME SOURCE_SUBDIR [extra cmake args...]: configure, build, run.
consumer() {
    local name="$1" dir="$2"; shift 2
    log "$name"
    cmake -S "$here/$dir" -B "$work/$name" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
    cmake --build "$work/$name" -j2
    "$work/$name/consumer"
    "$work/$name/consumer_compiled" # prints hello
    echo "consumer $name: OK"
    passed=$((passed + 1))
}

log "install warren into $work/prefix"
cmake -S "$src" -B "$work/warren-build" "${gen[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DWARREN_BUILD_TESTS=OFF -DWARREN_BUILD_EXAMPLES=OFF \
    -DWARREN_BUILD_TOOLS=OFF -DWARREN_BUILD_BENCHMARKS=OFF \
    -DWARREN_INSTALL=ON
cmake --build "$work/warren-build" -j2
cmake --install "$work/warren-build" --prefix "$work/prefix"
test -f "$work/prefix/share/cmake/warren/warrenConfig.cmake"
test -f "$work/prefix/share/cmake/warren/warrenConfigVersion.cmake"
test -f "$work/prefix/include/warren/warren.hpp"
test -f "$work/prefix/share/warren/src/warren.cpp"
if [ -e "$work/prefix/include/warren/amqp" ]; then
    echo "error: include/warren/amqp/ must not be installed with warren::warren" >&2
    exit 1
fi

consumer find_package-installed find_package -DCMAKE_PREFIX_PATH="$work/prefix"
consumer find_package-build-tree find_package -Dwarren_DIR="$work/warren-build"
consumer add_subdirectory add_subdirectory -DWARREN_SOURCE_DIR="$src"
consumer fetch_content fetch_content -DWARREN_SOURCE_DIR="$src"

echo
echo "cmake consumers: $passed passed, 0 failed"
