#!/usr/bin/env bash
# Every command of README.md, run as a new user would, in order (tests/test_readme.py checks that
# each command in the README's sh blocks stands here, so the two cannot drift apart).
# Uses a throwaway PROMPTGYM_HOME unless one is set. Every dataset it uses ships in the package, so it
# fetches no data (only pip's packages). About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PROMPTGYM_HOME="${PROMPTGYM_HOME:-$(mktemp -d)}"
echo "smoke: PROMPTGYM_HOME=$PROMPTGYM_HOME"
step() { echo; echo "smoke: \$ $*"; "$@"; }

step bash scripts/quickstart.sh
. .venv/bin/activate
step promptgym methods
step promptgym methods --params opro
step promptgym optimize --dataset example:sentiment --method ape --budget 600 \
    --train-size 30 --test-size 100 --seed 0 --dry-run
out=$(mktemp)
promptgym optimize --dataset example:sentiment --method ape --budget 600 \
    --train-size 30 --test-size 100 --seed 0 --json | tee "$out"
RUN_ID=$(tail -n 1 "$out" | python -c 'import json, sys; print(json.load(sys.stdin)["run_id"])')
step promptgym runs
step promptgym show "$RUN_ID"
step promptgym report "$RUN_ID" -o report.html
step promptgym export "$RUN_ID" --format python
step promptgym resume "$RUN_ID"
step promptgym predict "$RUN_ID" --input "The room was clean."
# The README's Python API block, as written there.
python - <<'PY'
import re, pathlib
block = re.search(r"```python\n(.*?)```", pathlib.Path("README.md").read_text(), re.S).group(1)
exec(compile(block, "README.md (Python API)", "exec"))
PY
step bash scripts/test.sh -m "not integration"
# After the dev install: it brings bubblewrap (the code sandbox) and the envs/rl extras.
promptgym optimize --dataset example:python-functions --method ape --budget 60 \
    --train-size 6 --test-size 6 --dev-size 0 --seed 0
# After the dev install (matplotlib for the plots): every method once on example:sentiment.
promptgym bench --preset quick --out bench-quick
# The README's other Python blocks (the prompt-editing environment), as written there.
python - <<'PY'
import re, pathlib
for block in re.findall(r"```python\n(.*?)```", pathlib.Path("README.md").read_text(), re.S)[1:]:
    exec(compile(block, "README.md (Python block)", "exec"), {})
PY
# The examples of docs/data.md and docs/api.md marked <!-- smoke --> (each feature of the data and API pages).
step python scripts/docs_examples.py
echo "smoke: every README command ran"
