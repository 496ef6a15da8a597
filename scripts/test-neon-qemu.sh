#!/usr/bin/env bash
# The NEON kernels on every CI run: cross-compiles the native core and kernels for aarch64
# (Debian's g++-aarch64-linux-gnu, linked statically) and runs native/test/kernel_test.cpp
# under qemu-user, scalar and neon against scalar and a double reference over every d in
# {1,3,7,8,9,15,16,17,31,32,33,64,101,103,1024}. --quick (fewer rows and queries, every d)
# keeps the emulated run near 15 s; pass --full for the native sizes.
#
#   bash scripts/test-neon-qemu.sh          # prints "neon: N checks passed"
#   bash scripts/test-neon-qemu.sh --full
#
# Exit 3 when the toolchain or qemu is missing (scripts/setup.sh installs both).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
args=(--quick)
if [[ "${1:-}" == --full ]]; then
  args=()
  shift
fi
exec bash "$here/kernel-test.sh" --arch aarch64 -- "${args[@]}" "$@"
