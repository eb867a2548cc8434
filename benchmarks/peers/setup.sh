#!/usr/bin/env bash
# Creates benchmarks/peers/.venv (gitignored) with gepa, DSPy and promptolution, pinned in
# requirements.txt. Separate from promptgym's environment on purpose. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
if [ ! -x "$here/.venv/bin/python" ]; then
    "$python" -m venv "$here/.venv"
fi
# If a future pin pulls torch, install torch==2.13.0 first (a CPU build is on this machine's disk;
# otherwise pip may fetch a multi-GB CUDA build): "$here/.venv/bin/pip" install torch==2.13.0
"$here/.venv/bin/pip" install --quiet -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "import dspy, gepa, promptolution, scipy; from importlib.metadata import version; print('peers venv ok: dspy', dspy.__version__, 'gepa', version('gepa'))"
