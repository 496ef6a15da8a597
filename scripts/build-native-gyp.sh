#!/usr/bin/env bash
# Builds rapm.node with node-gyp (binding.gyp) into build-gyp/, leaving cmake-js's
# build/Release alone. node-gyp always writes to ./build of the project it runs in,
# so the sources are copied (mtimes kept, so rebuilds are incremental) to
# build-gyp/src and node-gyp runs there.
#
#   bash scripts/build-native-gyp.sh        -> build-gyp/Release/rapm.node
#
# Env: NODEDIR overrides the Node headers directory (default: npm's nodedir, else
# the prefix of the running node); JOBS the parallel jobs (default: max).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/build-gyp"
src="$out/src"
log="$out/build.log"

fail() {
  echo "build-native-gyp: ERROR: $*" >&2
  exit 1
}

cd "$root"
[[ -f binding.gyp ]] || fail "binding.gyp not found in $root"
gyp_bin="$root/node_modules/.bin/node-gyp"
[[ -x "$gyp_bin" ]] || fail "node-gyp is not installed ($gyp_bin missing): run 'npm ci' first"
command -v python3 >/dev/null || fail "python3 is required by node-gyp"

# Node headers: never let node-gyp try to download them.
nodedir="${NODEDIR:-}"
if [[ -z "$nodedir" ]]; then
  nodedir="$(npm config get nodedir 2>/dev/null || true)"
  [[ "$nodedir" == "undefined" || "$nodedir" == "null" ]] && nodedir=""
fi
if [[ -z "$nodedir" ]]; then
  nodedir="$(node -p 'require("path").resolve(process.execPath, "..", "..")')"
fi
[[ -f "$nodedir/include/node/common.gypi" ]] ||
  fail "no Node headers under $nodedir/include/node (set NODEDIR to a directory with include/node/common.gypi)"

mkdir -p "$src" "$out/Release"
# Fresh copy of the sources each time: deleted files disappear, mtimes stay.
rm -rf "$src/native"
cp -a native "$src/native"
cp -p binding.gyp package.json "$src/"

start=$SECONDS
echo "build-native-gyp: node-gyp (nodedir=$nodedir) in $src, log: $log"
if ! (
  cd "$src" &&
    "$gyp_bin" configure --nodedir="$nodedir" --release &&
    "$gyp_bin" build --nodedir="$nodedir" --release --jobs="${JOBS:-max}"
) >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  fail "node-gyp build failed (full log: $log)"
fi

built="$src/build/Release/rapm.node"
[[ -f "$built" ]] || fail "node-gyp finished but $built is missing (see $log)"
cp -p "$built" "$out/Release/rapm.node"

# It must load and report its SIMD levels, or it is no use to anyone.
levels="$(node -e 'console.log(require(process.argv[1]).simdLevels().join(","))' "$out/Release/rapm.node")" ||
  fail "$out/Release/rapm.node was built but does not load"

echo "build-native-gyp: built in $((SECONDS - start))s, simdLevels=$levels"
echo "$out/Release/rapm.node"
