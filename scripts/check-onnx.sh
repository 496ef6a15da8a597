#!/usr/bin/env bash
# Run the ONNX checker (onnx.checker.check_model, full_check=True: structure, opset
# schemas and shape inference) on one or more model files.
#   bash scripts/check-onnx.sh models/fusion.onnx [more.onnx ...]
#   bash scripts/check-onnx.sh --probe     # exit 0 when a Python with onnx is available
# Uses $PYTHON when set, else the first of /usr/bin/python3 (Debian's python3-onnx lives
# there) and python3 on PATH that can import onnx. When none can and this runs as root
# with apt-get, installs Debian's python3-onnx first (set RAPM_NO_APT=1 to forbid that).
# Exit codes: 0 all valid, 1 a model failed the check, 2 no usable Python/onnx or bad usage.
set -euo pipefail

find_python() {
  local c
  for c in ${PYTHON:-} /usr/bin/python3 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import onnx' >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

probe=0
if [ "${1:-}" = "--probe" ]; then
  probe=1
  shift
fi
if [ "$probe" = 0 ] && [ $# -eq 0 ]; then
  echo "usage: bash scripts/check-onnx.sh MODEL.onnx [...] | --probe" >&2
  exit 2
fi

if ! PY="$(find_python)"; then
  if [ "$probe" = 1 ]; then
    echo "no Python with the onnx package (install it with: apt-get install python3-onnx)" >&2
    exit 2
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${RAPM_NO_APT:-0}" != 1 ]; then
    echo "check-onnx: installing python3-onnx with apt-get" >&2
    if ! apt-cache policy python3-onnx 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-onnx >/dev/null
  fi
  if ! PY="$(find_python)"; then
    echo "check-onnx: no Python with the onnx package; install it with: apt-get install python3-onnx (as root)" >&2
    exit 2
  fi
fi
[ "$probe" = 1 ] && { echo "$PY"; exit 0; }

"$PY" - "$@" <<'EOF'
import sys
import onnx

bad = 0
for f in sys.argv[1:]:
    try:
        m = onnx.load(f)
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # checker, protobuf and I/O errors alike
        bad += 1
        print(f"FAIL {f}: {type(e).__name__}: {e}", file=sys.stderr)
        continue
    opsets = ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in m.opset_import)
    print(f"ok {f} (onnx {onnx.__version__} checker, ir_version {m.ir_version}, opset {opsets})")
sys.exit(1 if bad else 0)
EOF
