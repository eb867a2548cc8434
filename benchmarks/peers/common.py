"""Shared by the peers' scripts: the split files, the one answer parser, the proxy's control calls,
and the paired statistics (numpy and scipy: both environments, the peers' and promptgym's, have them)."""

from __future__ import annotations

import argparse
import json
import re
import string
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

# --- the split --------------------------------------------------------------------------------


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def labels_of(rows: list[dict[str, Any]]) -> list[str]:
    """The shared label set, in the file's order (every row of a split has the same choices)."""
    return list(rows[0]["choices"])


# --- parsing: the same rule as promptgym's match_option (src/promptgym/tasks/parsing.py) ----------

_LEADS = re.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+)?(?:answer|output|label|sentiment|result)\s*(?:is\s*[:\-]|is\s+|[:\-])"
    r"|a\s*[:\-])\s*",
    re.IGNORECASE)
_PUNCT = string.punctuation + "“”‘’«»"


def normalize(text: str) -> str:
    text = " ".join(text.split()).casefold()
    return text.strip(_PUNCT + " ")


def extract_answer(text: str) -> str:
    for line in text.strip().splitlines():
        line = _LEADS.sub("", line.strip())
        line = line.strip().strip(_PUNCT + " ")
        if line:
            return line
    return ""


def parse_label(text: str | None, labels: list[str]) -> str | None:
    """The label a free-text answer names, or None: an exact (case-insensitive, punctuation-
    stripped) match of the answer's first line (without an "Answer:"-style lead) wins, else the
    label whose whole-word mention comes first (ties: the longer label)."""
    if not text:
        return None
    answer = normalize(extract_answer(text))
    normalized = [normalize(o) for o in labels]
    if answer in normalized:
        return labels[normalized.index(answer)]
    body = normalize(text)
    best: tuple[int, int, int] | None = None
    for i, option in enumerate(normalized):
        if not option:
            continue
        found = re.search(r"(?<!\w)" + re.escape(option) + r"(?!\w)", body)
        if found:
            key = (found.start(), -len(option), i)
            best = key if best is None or key < best else best
    return None if best is None else labels[best[2]]


def correct(text: str | None, target: str, labels: list[str]) -> int:
    got = parse_label(text, labels)
    return int(got is not None and got.casefold() == target.casefold())


def error_line(e: BaseException) -> str:
    """``Type: first line`` of an exception's message (``... last line`` too when it differs)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip() and not ln.strip().startswith("-") and not ln.strip().endswith(":")]
    text = lines[0] if lines else ""
    if len(lines) > 1 and lines[-1] != lines[0]:
        text += " ... " + lines[-1]
    return f"{type(e).__name__}: {text[:600]}"


# --- the proxy's control endpoint ---------------------------------------------------------------


def proxy_control(control: str, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """``control`` is the proxy's root (``http://127.0.0.1:P``); ``path`` e.g. ``phase``."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(f"{control}/_proxy/{path}", data=body, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


# --- paired statistics ------------------------------------------------------------------------


def paired(start: list[float], final: list[float], seed: int = 0, n_boot: int = 10_000) -> dict[str, Any]:
    """Delta (final - start) of the mean with a 95% paired bootstrap interval (percentiles of
    ``n_boot`` resamples of the pairs) and a two-sided sign test on the pairs that differ (for 0/1
    scores that is the exact McNemar test)."""
    n = len(start)
    assert n == len(final) and n > 0
    diffs = np.asarray(final, dtype=float) - np.asarray(start, dtype=float)
    rng = np.random.default_rng(seed)
    boots = np.sort(diffs[rng.integers(0, n, size=(n_boot, n))].mean(axis=1))
    lo, hi = float(boots[int(0.025 * n_boot)]), float(boots[int(0.975 * n_boot) - 1])
    worse, better = int((diffs < 0).sum()), int((diffs > 0).sum())
    p = 1.0 if worse + better == 0 else float(binomtest(better, worse + better, 0.5).pvalue)
    return {"delta": float(diffs.mean()), "interval": [lo, hi], "p_value": p, "worse": worse, "better": better}


def peer_arguments(plans: dict[str, Any]) -> argparse.ArgumentParser:
    """The options every peer script takes (run.py passes them); a script adds its own."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", choices=sorted(plans), required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--base-url", required=True, help="the proxy's /v1 base")
    ap.add_argument("--task-model", default="smollm2", help="the task model's name at the proxy")
    ap.add_argument("--meta-model", default="smollm2", help="the optimizer / reflection model's name at the proxy")
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task-max-tokens", type=int, default=64)
    ap.add_argument("--meta-max-tokens", type=int, default=512)
    ap.add_argument("--out", required=True)
    return ap
