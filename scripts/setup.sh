#!/usr/bin/env bash
# One command from a fresh clone to a working rapm, then the main job on the embedded
# default data. Safe to rerun: every step skips work that is already done.
#   bash scripts/setup.sh            # set up + run the main job
#   bash scripts/setup.sh --no-run   # set up only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUN=1
[ "${1:-}" = "--no-run" ] && RUN=0

step() { printf '\n== %s\n' "$*"; }

# 1. System packages: a C++17 toolchain and cmake for the addon; Debian's faiss and
#    OpenBLAS for the faiss-node benchmark peer (optional for the library itself); the ONNX
#    python package, whose checker the tests run on every exported model; the aarch64 cross
#    compiler and qemu-user, which run the NEON kernels in the tests (scripts/test-neon-qemu.sh).
step "system packages"
need=()
for p in cmake g++ make libfaiss-dev libopenblas-dev python3-onnx g++-aarch64-linux-gnu qemu-user-static; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    echo "installed: ${need[*]}"
  else
    echo "missing system packages: ${need[*]} (install them with your package manager, as root)" >&2
    exit 1
  fi
else
  echo "all present"
fi

# 2. npm packages (install scripts are off in .npmrc: see there why).
step "npm packages"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

# 3. The native addon (cmake-js, the default build) and TypeScript.
step "native addon (cmake-js)"
npm run --silent build:native
step "native addon (node-gyp, the alternative build; the tests check both agree)"
bash scripts/build-native-gyp.sh
step "TypeScript"
npm run --silent build:ts
chmod +x dist/cli/bin.js dist/progressive.js 2>/dev/null || true

# 4. faiss-node, the approximate-search backend and benchmark peer (best effort).
step "faiss-node against the system faiss"
bash scripts/build-faiss-node.sh || echo "faiss-node could not be built: approximate search and its benchmark peer are unavailable"

if [ "$RUN" = 1 ]; then
  # Generates the default data into data/chunks on first use (about 200K pairs, 1.6 GB).
  step "main job: progressive validation on the embedded default data"
  node dist/progressive.js --chunks data/chunks --out results/progressive --overwrite
fi
