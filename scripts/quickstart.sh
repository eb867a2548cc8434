#!/usr/bin/env bash
# Install promptgym and optimize a prompt on the embedded model (offline, no key).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/promptgym optimize --dataset example:sentiment --method ape --budget 150 \
  --train-size 20 --test-size 60 --seed 0 "$@"
