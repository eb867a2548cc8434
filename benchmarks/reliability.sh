#!/usr/bin/env bash
# The long reliability runs of issue 13, in one command (the short versions are in the test suite):
# fault injection at 30% plus the hard budget over many N (reliability_faults.py), then 20 kill -9
# trials with resumes and concurrent writers (reliability_kills.py). Loopback fake OpenAI server
# only, no language model. Writes benchmarks/results/reliability-{faults,kills}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
PYTHONPATH=src "$py" benchmarks/reliability_faults.py
PYTHONPATH=src "$py" benchmarks/reliability_kills.py --trials 20
