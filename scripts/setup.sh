#!/usr/bin/env bash
# Create .venv (if missing) and install promptgym into it with the given extras.
# pip's cache is kept on purpose: llama-cpp-python builds from source once (~8 min on 2 cores),
# later installs reuse the cached wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
# The code sandbox (promptgym.sandbox: code-generation rewards) runs code under bubblewrap; the
# test suite exercises it, so a dev install adds it when missing and we can (root with apt-get).
# Other installs leave the system alone: the sandbox names the missing tool in one line when used.
case ",${extras}," in
  *,dev,*)
    if ! command -v bwrap >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; } >/dev/null 2>&1 \
          || echo "setup: could not install bubblewrap: the code sandbox will not run (apt-get install bubblewrap)" >&2
      else
        echo "setup: bubblewrap (bwrap) is missing: the code sandbox needs it (as root: apt-get install bubblewrap)" >&2
      fi
    fi
    ;;
esac
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[${extras}]"
# The dev extra includes stable-baselines3, which needs torch: install the CPU build first, else pip
# resolves plain 'torch' to a CUDA build of several GB.
case ",${extras}," in
  *,dev,*|*,rl,*)
    if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
      .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>&1 \
        | { grep -v "^WARNING: Location 'file:" || true; }
    fi
    ;;
esac
# pipefail (set above) makes a failed install fail this script; the filter only drops pip's
# warnings about the machine's file:// extra indexes, and an empty output is not an error.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" 2>&1 \
  | { grep -v "^WARNING: Location 'file:" || true; }
