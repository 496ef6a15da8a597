#!/usr/bin/env bash
# Builds and runs the standalone kernel test (native/test/kernel_test.cpp): every SIMD level
# the target runs, against the scalar level and a double-precision reference, over
# d in {1,3,7,8,9,15,16,17,31,32,33,64,101,103,1024}. No Node or N-API involved.
#
#   bash scripts/kernel-test.sh                  # this machine's levels (x86-64: scalar, avx2, avx512)
#   bash scripts/kernel-test.sh --asan           # the same with AddressSanitizer + UBSan
#   bash scripts/kernel-test.sh --arch aarch64   # cross-compiled (g++-aarch64-linux-gnu, static),
#                                                # run under qemu-user: scalar and neon
#   bash scripts/kernel-test.sh --arch aarch64 -- --quick --dims 17,1024   # args for the program
#
# Builds go to build-kernel-test/<host|host-asan|aarch64> (incremental). Exit status: the
# program's (0 all passed, 1 a check failed), 3 when the aarch64 toolchain or qemu is missing
# (scripts/setup.sh installs them), 4 when the build fails, 124 when the run exceeds 300 s.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch=host
asan=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="${2:?--arch needs host or aarch64}"; shift 2 ;;
    --asan) asan=1; shift ;;
    --) shift; break ;;
    *) echo "kernel-test: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[[ "$arch" == host || "$arch" == aarch64 ]] || { echo "kernel-test: --arch must be host or aarch64" >&2; exit 2; }

# A sanitizer runtime preloaded by scripts/test-asan.sh must not leak into the compiler or qemu.
unset LD_PRELOAD

cmake_args=(-DCMAKE_BUILD_TYPE=Release -DRAPM_KERNEL_TEST=ON)
run=()
name="$arch"
if [[ "$arch" == aarch64 ]]; then
  cxx="$(command -v aarch64-linux-gnu-g++ || true)"
  qemu="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
  if [[ -z "$cxx" || -z "$qemu" ]]; then
    missing=()
    [[ -n "$cxx" ]] || missing+=("aarch64-linux-gnu-g++ (Debian: g++-aarch64-linux-gnu)")
    [[ -n "$qemu" ]] || missing+=("qemu-aarch64-static (Debian: qemu-user-static)")
    echo "kernel-test: cannot run the NEON kernels: missing ${missing[*]}; run 'bash scripts/setup.sh --no-run' as root" >&2
    exit 3
  fi
  # Static: qemu-user then needs no aarch64 sysroot (libc, libstdc++) at run time.
  cmake_args+=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 "-DCMAKE_CXX_COMPILER=$cxx"
    -DRAPM_KERNEL_TEST_STATIC=ON)
  run=("$qemu")
  [[ "$asan" == 0 ]] || { echo "kernel-test: --asan is for the host build" >&2; exit 2; }
fi
if [[ "$asan" == 1 ]]; then
  cmake_args+=(-DRAPM_SANITIZE=ON)
  name="$arch-asan"
  export ASAN_OPTIONS="${KERNEL_TEST_ASAN_OPTIONS:-abort_on_error=1}"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
fi
command -v ninja >/dev/null && cmake_args+=(-G Ninja)

out="$root/build-kernel-test/$name"
mkdir -p "$out"
start=$SECONDS
if ! { [[ -f "$out/CMakeCache.txt" ]] || cmake -S "$root" -B "$out" "${cmake_args[@]}"; } >"$out/build.log" 2>&1 ||
  ! cmake --build "$out" --target rapm_kernel_test -j 2 >>"$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log" >&2
  echo "kernel-test: build failed (full log: $out/build.log)" >&2
  exit 4
fi
echo "kernel-test: built $out/rapm_kernel_test ($arch$([[ $asan == 1 ]] && echo ', ASan + UBSan')) in $((SECONDS - start))s"
start=$SECONDS
status=0
# Bounded: a hung run (or qemu) is killed after 300 s and reported as exit status 124.
timeout 300 "${run[@]}" "$out/rapm_kernel_test" "$@" || status=$?
echo "kernel-test: ran in $((SECONDS - start))s${run:+ under $(basename "${run[0]}")}, exit status $status"
exit "$status"
