# Sourced by scripts/study and scripts/test: create (or reuse) the project's virtual
# environment in .venv with the pinned versions of constraints.txt. Idempotent: a stamp
# records what was installed, and nothing is reinstalled while it matches.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV="${DEEPWIDE_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"
hash="$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
stamp="$VENV/.deepwide-stamp"   # one line per installed variant: "<hash> <extras>"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[deepwide] creating virtual environment in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
installed() {  # a test install also satisfies a plain one
  if [ -z "$EXTRAS" ]; then grep -q "^$hash " "$stamp" 2>/dev/null
  else grep -qx "$hash $EXTRAS" "$stamp" 2>/dev/null; fi
}
if ! installed; then
  echo "[deepwide] installing deepwide and its pinned dependencies (first run: a few minutes)" >&2
  # torch's wheels take several GB: download and unpack them on the venv's own disk (not a
  # possibly small /tmp) and keep no second copy in pip's cache.
  tmp="$VENV/.pip-tmp"
  mkdir -p "$tmp"
  spec="."
  [ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
  (
    export TMPDIR="$tmp" PIP_NO_CACHE_DIR=1
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -c constraints.txt -e "$spec"
  )
  rm -rf "$tmp"
  echo "$hash ${EXTRAS:-base}" >> "$stamp"
fi
export PATH="$VENV/bin:$PATH"
