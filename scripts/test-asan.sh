#!/usr/bin/env bash
# Builds rapm.node with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
# (build/Release is left alone) and runs the native test files against it.
#
#   bash scripts/test-asan.sh [extra vitest args]
#
# node itself is not instrumented, so the matching libasan/libubsan are LD_PRELOADed;
# vitest's forks inherit the environment (LD_PRELOAD, *SAN_OPTIONS, RAPM_NATIVE).
# Reports go to build-asan/logs/ (so none is lost in a worker's piped stderr) and
# are printed at the end. Exit status is non-zero on a test failure or on any
# sanitizer report.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/build-asan"
logs="$out/logs"
addon="$out/Release/rapm.node"

fail() {
  echo "test-asan: ERROR: $*" >&2
  exit 1
}

cd "$root"
[[ -x node_modules/.bin/cmake-js && -x node_modules/.bin/vitest ]] ||
  fail "cmake-js/vitest not installed: run 'npm ci' first"

# 1. Sanitized build in its own folder (separate CMake cache: build/ is untouched).
start=$SECONDS
mkdir -p "$out"
echo "test-asan: building $addon (RAPM_SANITIZE=ON), log: $out/build.log"
if ! node_modules/.bin/cmake-js compile -O "$out" --CDRAPM_SANITIZE=ON --CDCMAKE_BUILD_TYPE=Release \
  >"$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log" >&2
  fail "sanitized build failed (full log: $out/build.log)"
fi
[[ -f "$addon" ]] || fail "build finished but $addon is missing (see $out/build.log)"
echo "test-asan: built in $((SECONDS - start))s"

# 2. The runtimes the addon was linked against: the compiler CMake used, checked with ldd.
cxx="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$out/CMakeCache.txt" | head -n1)"
cxx="${cxx:-g++}"
runtime() { # libasan.so / libubsan.so -> absolute path of the real file
  local p
  p="$("$cxx" -print-file-name="$1")"
  [[ "$p" == /* && -e "$p" ]] || fail "$cxx does not know $1 (install the compiler's sanitizer runtime)"
  readlink -f "$p"
}
asan="$(runtime libasan.so)"
ubsan="$(runtime libubsan.so)"
linked="$(ldd "$addon")"
for lib in "$asan" "$ubsan"; do
  base="$(basename "$lib")"
  grep -q "${base%%.so*}.so" <<<"$linked" || fail "$addon is not linked against ${base%%.so*} (was RAPM_SANITIZE applied?)"
  linked_path="$(awk -v b="${base%%.so*}.so" 'index($1, b) == 1 { print $3 }' <<<"$linked" | head -n1)"
  [[ -z "$linked_path" || "$(readlink -f "$linked_path")" == "$lib" ]] ||
    fail "$addon links $(readlink -f "$linked_path") but $cxx provides $lib"
done

# The patched faiss-node addon (scripts/faiss-node/rapm-faiss-node.patch: searchAsync's worker
# thread, typed-array I/O) sanitized too, when faiss-node builds here (it is optional): the
# library loads it through RAPM_FAISS_NODE instead of node_modules' unsanitized copy.
if bash scripts/build-faiss-node.sh --asan >"$out/faiss-node-build.log" 2>&1 &&
  ldd "$root/build-faiss-node/asan/faiss-node.node" | grep -q libasan; then
  export RAPM_FAISS_NODE="$root/build-faiss-node/asan/faiss-node.node"
  echo "test-asan: faiss-node sanitized too ($RAPM_FAISS_NODE)"
else
  echo "test-asan: faiss-node sanitized build unavailable (see $out/faiss-node-build.log); ANN tests use the unsanitized addon or skip"
fi

rm -rf "$logs"
mkdir -p "$logs"
export RAPM_NATIVE="$addon"
export LD_PRELOAD="$asan:$ubsan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
echo "test-asan: LD_PRELOAD=$LD_PRELOAD"

status=0
output="$out/test-output.log"
# 3. Smoke: the raw API at every SIMD level, sync and async, f32 and bf16 keys.
node --input-type=module -e '
  import { createRequire } from "node:module";
  const b = createRequire(import.meta.url)(process.env.RAPM_NATIVE);
  const rnd = (n) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
  for (const level of b.simdLevels()) {
    b.setSimdLevel(level);
    for (const bf16 of [false, true]) {
      const [n, d, dv, q, k] = [777, 37, 5, 29, 9];
      const ds = new b.Datastore(d, dv, bf16);
      ds.addSync(rnd(n * d), rnd(n * dv), Int32Array.from({ length: n }, (_, i) => i % 13), n);
      await ds.add(rnd(64 * d), rnd(64 * dv), new Int32Array(64), 64);
      for (const agg of [0, 1, 2]) {
        const o = [new Float32Array(q * dv), new Int32Array(q * k), new Float32Array(q * k), new Float32Array(q * k)];
        ds.searchSync(rnd(q * d), q, k, 0.1, agg, null, ...o);
        await ds.search(rnd(q * d), q, k, 0.1, agg, new Int32Array(q).fill(3), ...o);
      }
    }
  }
  console.log("test-asan: smoke ok (" + b.simdLevels().join(", ") + ")");
' 2>&1 | tee "$output" || status=$?

# 4. The native test files (gyp-build.test.ts compares two fixed unsanitized builds: not here).
# Not here either, as they exercise no rapm native code the others do not: the pgvector files
# (SQL through PGlite's wasm Postgres; 32 s under the sanitizers) and ann-factory (the factory
# grammar, checked in TypeScript before faiss, in child processes; 23 s).
node_modules/.bin/vitest run --config test/vitest.config.ts --passWithNoTests \
  --exclude '**/gyp-build.test.ts' --exclude '**/pgvector*.test.ts' --exclude '**/ann-factory.test.ts' \
  test/native test/retrieval "$@" 2>&1 | tee -a "$output" ||
  status=$?

# 5. Second guard: any sanitizer report anywhere fails the run, whatever the exit codes said.
reports=("$logs"/*)
if [[ -e "${reports[0]}" ]]; then
  for r in "${reports[@]}"; do
    echo "===== $r" >&2
    cat "$r" >&2
  done
  [[ "$status" -ne 0 ]] || status=1
  echo "test-asan: FAILED: sanitizer report(s) in $logs" >&2
fi
if grep -qE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$output"; then
  [[ "$status" -ne 0 ]] || status=1
  echo "test-asan: FAILED: sanitizer report in the test output ($output)" >&2
fi
if grep -qE 'No test files found' "$output"; then
  echo "test-asan: WARNING: no test files under test/native or test/retrieval ran" >&2
fi
[[ "$status" -eq 0 ]] || fail "exit status $status (output: $output)"
echo "test-asan: OK, no sanitizer reports"
