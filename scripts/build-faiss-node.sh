#!/usr/bin/env bash
# Build the optional faiss-node@0.5.1 addon offline against Debian's system faiss.
#
# faiss-node's own install script downloads a prebuilt from GitHub or clones faiss
# (both unreachable here, and .npmrc has ignore-scripts=true). Instead we:
#   1. apt-install libfaiss-dev + libopenblas-dev (+ cmake/g++/make) if missing,
#   2. copy faiss-node's src/ into build-faiss-node/ (gitignored via build-*/) together
#      with scripts/faiss-node/CMakeLists.txt (find_package(faiss) instead of
#      add_subdirectory(deps/faiss)) and scripts/faiss-node/faiss_compat.h (forced
#      include adding faiss::idx_t, missing in faiss 1.7.3), and apply
#      scripts/faiss-node/rapm-faiss-node.patch: fixes the toBuffer()/fromBuffer() leak (a
#      heap VectorIOWriter/Reader holding the whole index, never freed) and adds, on Index,
#      setSearchParam/getSearchParam (faiss::ParameterSpace: nprobe, efSearch, ...),
#      addFloat32/trainFloat32/searchFloat32 (Float32Array in, typed arrays out), and
#      searchAsync (the same search on a libuv worker thread, a Promise; the worker holds the
#      index through a shared_ptr; mutating calls throw code FAISS_INDEX_BUSY meanwhile) with
#      searchesInFlight(),
#   3. build with the local cmake-js (Node-API build: no header download),
#   4. install the result as node_modules/faiss-node/build/Release/faiss-node.node,
#      which is where require('bindings')('faiss-node') in faiss-node/lib/index.js looks.
#
# Idempotent: does nothing if the installed addon already loads and works.
# Usage (from anywhere): bash scripts/build-faiss-node.sh [--force | --asan]
#   --asan: build the same patched addon with AddressSanitizer + UBSan into
#           build-faiss-node/asan/faiss-node.node (node_modules untouched); load it with
#           RAPM_FAISS_NODE=<that file> and LD_PRELOAD of libasan/libubsan (scripts/test-asan.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FORCE=0
ASAN=0
case "${1:-}" in
  --force) FORCE=1 ;;
  --asan) ASAN=1 ;;
  "") ;;
  *) echo "usage: $0 [--force | --asan]" >&2; exit 2 ;;
esac

PKG_DIR="node_modules/faiss-node"
BUILD_DIR="build-faiss-node"
SRC_COPY="$BUILD_DIR/pkg"
TARGET_DIR="$PKG_DIR/build/Release"
TARGET="$TARGET_DIR/faiss-node.node"
APT_PACKAGES=(libfaiss-dev libopenblas-dev cmake g++ make patch)

die() { echo "build-faiss-node: FAILED: $*" >&2; exit 1; }
trap 'rc=$?; [ $rc -ne 0 ] && echo "build-faiss-node: FAILED (exit $rc) at line $LINENO; see output above" >&2' ERR

# Loads faiss-node through its normal entry point and runs a tiny exact search.
smoke_test() {
  node -e '
    const f = require(process.argv[1]);
    const ix = new f.IndexFlatIP(2);
    ix.add([1, 0, 0, 1]);
    const r = ix.search([0.2, 0.9], 1);
    if (r.labels[0] !== 1) throw new Error("unexpected search result " + JSON.stringify(r));
    // The rapm patch (an unpatched build fails here and is rebuilt).
    const iv = f.Index.fromFactory(2, "IVF1,Flat", f.MetricType.METRIC_INNER_PRODUCT);
    iv.trainFloat32(new Float32Array([1, 0, 0, 1]));
    iv.addFloat32(new Float32Array([1, 0, 0, 1]));
    iv.setSearchParam("nprobe", 1);
    if (iv.getSearchParam("nlist") !== 1) throw new Error("nlist not reported");
    if (iv.getSearchParam("nprobe") !== 1) throw new Error("nprobe did not set");
    const t = iv.searchFloat32(new Float32Array([0.2, 0.9]), 1);
    if (!(t.labels instanceof Int32Array) || t.labels[0] !== 1) throw new Error("unexpected searchFloat32 result");
    if (f.Index.fromBuffer(iv.toBuffer()).ntotal() !== 2) throw new Error("toBuffer/fromBuffer round trip failed");
    // searchAsync (a libuv worker thread; a build without it fails here and is rebuilt).
    const p = iv.searchAsync(new Float32Array([0.2, 0.9]), 1);
    if (iv.searchesInFlight() !== 1) throw new Error("searchAsync not counted in flight");
    let refused = false;
    try { iv.addFloat32(new Float32Array([1, 0])); } catch (e) { refused = e.code === "FAISS_INDEX_BUSY"; }
    if (!refused) throw new Error("add during searchAsync was not refused");
    p.then((r) => {
      if (!(r.labels instanceof Int32Array) || r.labels[0] !== 1 || r.distances[0] !== t.distances[0]) throw new Error("unexpected searchAsync result");
      if (iv.searchesInFlight() !== 0) throw new Error("searchAsync still counted after it settled");
    });
  ' "$ROOT/$PKG_DIR" >/dev/null 2>&1
}

[ -f "$PKG_DIR/package.json" ] || die "$PKG_DIR not found; run 'npm install' first"
[ -f "$PKG_DIR/src/faiss.cc" ] || die "$PKG_DIR/src/faiss.cc missing"
[ -x node_modules/.bin/cmake-js ] || die "cmake-js not found in node_modules/.bin; run 'npm install' first"
[ -f node_modules/node-addon-api/napi.h ] || die "node-addon-api not found in node_modules"
PKG_VERSION="$(node -p "require('./$PKG_DIR/package.json').version")"
[ "$PKG_VERSION" = "0.5.1" ] || echo "build-faiss-node: warning: expected faiss-node 0.5.1, found $PKG_VERSION" >&2

if [ "$ASAN" -eq 1 ]; then
  SRC_COPY="$BUILD_DIR/asan-pkg"
  TARGET_DIR="$BUILD_DIR/asan"
  TARGET="$TARGET_DIR/faiss-node.node"
fi

if [ "$FORCE" -eq 0 ] && [ "$ASAN" -eq 0 ] && [ -f "$TARGET" ] && smoke_test; then
  echo "build-faiss-node: OK (already built; $TARGET loads and searches)"
  exit 0
fi

# --- system packages -------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install ${missing[*]}"
    SUDO="sudo"
  fi
  echo "build-faiss-node: installing apt packages: ${missing[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die "apt-get install ${missing[*]} failed"
fi
ls /usr/lib/*/cmake/faiss/faiss-config.cmake >/dev/null 2>&1 || die "faiss CMake config not found (libfaiss-dev broken?)"

# --- scratch source tree ---------------------------------------------------
rm -rf "$SRC_COPY"
mkdir -p "$SRC_COPY"
cp -r "$PKG_DIR/src" "$SRC_COPY/src"
cp scripts/faiss-node/CMakeLists.txt scripts/faiss-node/faiss_compat.h "$SRC_COPY/"
command -v patch >/dev/null || die "patch(1) not found (apt-get install patch)"
patch -d "$SRC_COPY" -p1 --forward --quiet < scripts/faiss-node/rapm-faiss-node.patch \
  || die "scripts/faiss-node/rapm-faiss-node.patch does not apply to $PKG_DIR/src (faiss-node not 0.5.1?)"
# Minimal package.json: "binary.napi_versions" makes cmake-js do a Node-API build
# (node-api-headers + node-addon-api from node_modules; no Node header download).
# node-addon-api is resolved from $ROOT/node_modules (8.x), not faiss-node's nested 6.x.
cat > "$SRC_COPY/package.json" <<'JSON'
{ "name": "faiss-node-offline-build", "version": "0.5.1", "private": true,
  "binary": { "napi_versions": [8] } }
JSON

# --- build -------------------------------------------------------------------
JOBS="$(nproc 2>/dev/null || echo 2)"
start=$(date +%s)
SAN_FLAGS=()
if [ "$ASAN" -eq 1 ]; then
  SAN_FLAGS=(--CDCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
             --CDCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined")
fi
echo "build-faiss-node: building faiss-node against system faiss (-j$JOBS)${SAN_FLAGS[*]:+ with ASan + UBSan}..."
node_modules/.bin/cmake-js build \
  --directory "$SRC_COPY" --out "$SRC_COPY/build" \
  --config Release --parallel "$JOBS" --log-level warn ${SAN_FLAGS[@]+"${SAN_FLAGS[@]}"} \
  || die "cmake-js build failed"

BUILT="$(find "$SRC_COPY/build" -name faiss-node.node -type f | head -n 1)"
[ -n "$BUILT" ] || die "build finished but faiss-node.node was not produced"

mkdir -p "$TARGET_DIR"
cp "$BUILT" "$TARGET.tmp"
mv -f "$TARGET.tmp" "$TARGET"
if [ "$ASAN" -eq 1 ]; then
  echo "build-faiss-node: OK (sanitized build in $(( $(date +%s) - start ))s: $TARGET; load it with RAPM_FAISS_NODE=$ROOT/$TARGET and LD_PRELOAD of libasan + libubsan)"
  exit 0
fi

smoke_test || die "built $TARGET but require('faiss-node') smoke test fails (try: node -e \"require('faiss-node')\")"
echo "build-faiss-node: OK (built in $(( $(date +%s) - start ))s; installed $TARGET)"
