#!/usr/bin/env bash
# Builds and runs the warren tour (examples/tour.cpp).
# Usage: ./scripts/demo.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

packages=(cmake ninja-build g++)
# shellcheck source=packages.sh
source "$root/scripts/packages.sh"
ensure_packages demo.sh "${packages[@]}"

cmake --preset dev -DWARREN_BUILD_TESTS=OFF >/dev/null
cmake --build --preset dev -j2 --target tour
exec ./build/dev/examples/tour
