#!/usr/bin/env bash
# Create .venv (if missing) and install promptgym into it with the given extras.
# pip's cache is kept on purpose: llama-cpp-python builds from source once (~8 min on 2 cores),
# later installs reuse the cached wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
# pipefail (set above) makes a failed install fail this script; the filter only drops pip's
# warnings about the machine's file:// extra indexes, and an empty output is not an error.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
