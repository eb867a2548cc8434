"""Pinned request sequences: for every method and a few budgets, seeds and parameter variants, the
hash of (the ordered request keys sent to the model, the candidates recorded with their lineage,
the scores, the returned prompt) on the scripted model.

The hashes were computed on the code before the step-shaped base (commit 212f78f); a method added
later (GRIPS, Promptbreeder, RLPrompt) was pinned when it was added. Resume by replay needs a method to make the same
requests in the same order for a seed, so a refactor that changes any of these hashes changes
behaviour; update a hash only for a deliberate change of the method.
``PROMPTGYM_PRINT_PINS=1 pytest tests/optimizers/test_request_sequence.py -s`` prints them.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from promptgym.optimizers import REGISTRY
from promptgym.optimizers.base import Recorder
from promptgym.testing import ConformanceBackend


CELLS = [  # (method, params, budget, seed[, training examples])
    ("ape", {}, 40, 0), ("ape", {}, 150, 1), ("ape", {"iterations": 1}, None, 2),
    ("opro", {}, 40, 0), ("opro", {}, 150, 1), ("opro", {"steps": 6}, None, 2),
    ("opro", {"patience": 2}, 300, 3),
    ("evoprompt-ga", {}, 40, 0), ("evoprompt-ga", {}, 150, 1), ("evoprompt-ga", {"generations": 2}, None, 2),
    ("evoprompt-de", {}, 40, 0), ("evoprompt-de", {}, 150, 1), ("evoprompt-de", {"generations": 2}, None, 2),
    ("evoprompt-de", {"donor_random": True}, 150, 3),
    ("gpo", {}, 40, 0), ("gpo", {}, 150, 1), ("gpo", {"retrieval": "relevance", "epochs": 2}, None, 2),
    ("gpo", {"warmup": True, "refinement": "edit"}, 300, 3),
    ("protegi", {}, 40, 0), ("protegi", {}, 150, 1), ("protegi", {"rounds": 2}, None, 2),
    ("protegi", {"selector": "successive_rejects"}, 300, 3), ("protegi", {"selector": "uniform"}, 300, 4),
    ("dp2o", {"episodes": 20}, 40, 0), ("dp2o", {"episodes": 20}, 150, 1), ("dp2o", {"episodes": 20}, None, 2),
    ("grips", {}, 40, 0), ("grips", {}, 150, 1), ("grips", {"edits": "del,swap,add"}, None, 2),
    ("grips", {"format_edits": False, "patience": 0}, 300, 3),
    # budgets that run out while a method sets up or in its first step
    *[(m, {"episodes": 20} if m == "dp2o" else {}, b, 7) for m in ("ape", "opro", "evoprompt-ga", "evoprompt-de", "gpo",
                                                                   "protegi", "dp2o", "grips") for b in (5, 12)],
    # a larger training split and no dev split: the plans shrink differently
    ("ape", {}, 100, 5, 30), ("opro", {}, 100, 5, 30), ("evoprompt-ga", {}, 250, 5, 30),
    ("evoprompt-de", {}, 250, 5, 30), ("gpo", {}, 120, 5, 30), ("gpo", {}, 400, 6, 30),
    ("protegi", {}, 120, 5, 30), ("protegi", {}, 700, 6, 30), ("dp2o", {"episodes": 20}, 120, 5, 30),
    ("dp2o", {"episodes": 20, "dev_all_candidates": True}, 400, 6, 30),
    ("grips", {}, 100, 5, 30), ("grips", {"score_set": 10}, 400, 6, 30),
    ("promptbreeder", {}, 40, 0), ("promptbreeder", {}, 150, 1), ("promptbreeder", {}, 12, 7),
    ("promptbreeder", {"population": 4, "generations": 2}, None, 2), ("promptbreeder", {}, 400, 6, 30),
    ("rlprompt", {}, 40, 0), ("rlprompt", {}, 150, 1), ("rlprompt", {}, 12, 7),
    ("rlprompt", {"mode": "replace"}, 300, 3), ("rlprompt", {}, 400, 6, 30),
]

PINS = {
    "ape[]-b40-s0": "b0a0b5e8a1c70984",
    "ape[]-b150-s1": "e1f266c474440ca3",
    "ape[iterations=1]-bNone-s2": "736b34d86e8ba812",
    "opro[]-b40-s0": "2431b282a98866ec",
    "opro[]-b150-s1": "c4d7db0a633715ea",
    "opro[steps=6]-bNone-s2": "d80985a92a8102bf",
    "opro[patience=2]-b300-s3": "8c2fb19aa80a3d6b",
    "evoprompt-ga[]-b40-s0": "291819450064c4ad",
    "evoprompt-ga[]-b150-s1": "f7854c6826965d42",
    "evoprompt-ga[generations=2]-bNone-s2": "f72f0d88964f0e3a",
    "evoprompt-de[]-b40-s0": "f4e46dd0564cf8fb",
    "evoprompt-de[]-b150-s1": "69dcab8c97707819",
    "evoprompt-de[generations=2]-bNone-s2": "284bc1c7a23d5a41",
    "evoprompt-de[donor_random=True]-b150-s3": "f2975208e8bcabed",
    "gpo[]-b40-s0": "dc2cd8a640af17fd",
    "gpo[]-b150-s1": "38a02589a1823557",
    "gpo[retrieval=relevance,epochs=2]-bNone-s2": "7a4ed8d8089f6669",
    "gpo[warmup=True,refinement=edit]-b300-s3": "e8905cdca2903ab7",
    "protegi[]-b40-s0": "ae14c27797ed1ab9",
    "protegi[]-b150-s1": "f8fb80eecb68896e",
    "protegi[rounds=2]-bNone-s2": "d1b4d3ab5e3d4dc1",
    "protegi[selector=successive_rejects]-b300-s3": "e5619a17a88a4739",
    "protegi[selector=uniform]-b300-s4": "aa5d15479b01ca66",
    "dp2o[episodes=20]-b40-s0": "2c16b070ba8e7ca6",
    "dp2o[episodes=20]-b150-s1": "ed844cd4c0577b31",
    "dp2o[episodes=20]-bNone-s2": "ecb7a0d28b3bf16a",
    "ape[]-b100-s5-t30": "9b7b6585464fea8f",
    "opro[]-b100-s5-t30": "7073995888f4c09e",
    "evoprompt-ga[]-b250-s5-t30": "c5d37d79881373e4",
    "evoprompt-de[]-b250-s5-t30": "b2876d6c28c57c19",
    "gpo[]-b120-s5-t30": "27a283b3a74fb52a",
    "gpo[]-b400-s6-t30": "8fa09dffdc974655",
    "protegi[]-b120-s5-t30": "b45e5f1684ffd835",
    "protegi[]-b700-s6-t30": "3b6ae6cc92c3567e",
    "dp2o[episodes=20]-b120-s5-t30": "d028316b69a336f5",
    "dp2o[episodes=20,dev_all_candidates=True]-b400-s6-t30": "cf4f70480170340d",
    "ape[]-b5-s7": "498bf2ca8a980414",
    "ape[]-b12-s7": "12daa289999887da",
    "opro[]-b5-s7": "b79eceb1fb10ff05",
    "opro[]-b12-s7": "f4cfda6419e0238b",
    "evoprompt-ga[]-b5-s7": "6f8c9e2946902067",
    "evoprompt-ga[]-b12-s7": "eaef82d6fea4e01b",
    "evoprompt-de[]-b5-s7": "fd637d23d8647aff",
    "evoprompt-de[]-b12-s7": "072a092cb2c102d8",
    "gpo[]-b5-s7": "22b5145b19fb180f",
    "gpo[]-b12-s7": "a05f0074a2520e21",
    "protegi[]-b5-s7": "b79eceb1fb10ff05",
    "protegi[]-b12-s7": "fc522b80e524bece",
    "dp2o[episodes=20]-b5-s7": "d958788af6baf46e",
    "dp2o[episodes=20]-b12-s7": "a2113fc27281bedf",
    "grips[]-b40-s0": "923d5997b73c105d",
    "grips[]-b150-s1": "a9e29d51104bebf3",
    "grips[edits=del,swap,add]-bNone-s2": "9967d4d466470b05",
    "grips[format_edits=False,patience=0]-b300-s3": "ee17e4f1f5c9d693",
    "grips[]-b5-s7": "b79eceb1fb10ff05",
    "grips[]-b12-s7": "54ef95fcfdbd6355",
    "grips[]-b100-s5-t30": "5cb0555a7bb4de5c",
    "grips[score_set=10]-b400-s6-t30": "3338557a32ab7eef",
    "promptbreeder[]-b40-s0": "c59bf4c420d4205b",
    "promptbreeder[]-b150-s1": "3cb5ea76066b6830",
    "promptbreeder[]-b12-s7": "830d7ab6a28d3431",
    "promptbreeder[population=4,generations=2]-bNone-s2": "4c37c405f2f678f3",
    "promptbreeder[]-b400-s6-t30": "e0287735c62f759e",
    "rlprompt[]-b40-s0": "9cfcd55ec51ac20f",
    "rlprompt[]-b150-s1": "126213f35fe08664",
    "rlprompt[]-b12-s7": "3a3dfe52902d3532",
    "rlprompt[mode=replace]-b300-s3": "dc45dc1f3e90727e",
    "rlprompt[]-b400-s6-t30": "255deb26af1afcc2",
}


class LedgerRecorder(Recorder):
    def __init__(self):
        self.events: list[list] = []

    def candidate(self, prompt, parents, operation):
        self.events.append(["candidate", prompt.id, parents, operation])

    def score(self, prompt, split, result):
        self.events.append(["score", prompt.id, split, round(result.mean, 6), len(result.scores)])


def fingerprint(method: str, params: dict, budget: int | None, seed: int, train: int | None, build,
                scripted_context) -> str:
    backend = ConformanceBackend()
    if train is None:  # the conformance suite's split: 8 train, 4 dev
        ctx = build(budget, backend, cache_name=f"pin-{method}-{seed}.sqlite", seed=seed)
    else:
        ctx = scripted_context(budget=budget, seed=seed, backend=backend, train=train, dev=0,
                               cache_name=f"pin-{method}-{seed}-{train}.sqlite")
    ctx.recorder = LedgerRecorder()
    best = REGISTRY[method](**params).run(ctx)
    blob = json.dumps({"keys": backend.keys, "events": ctx.recorder.events, "best": best.id})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cell_id(cell) -> str:
    method, params, budget, seed, *train = cell
    extra = ",".join(f"{k}={v}" for k, v in params.items())
    return f"{method}[{extra}]-b{budget}-s{seed}" + (f"-t{train[0]}" if train else "")


@pytest.mark.parametrize("cell", CELLS, ids=cell_id)
def test_request_sequence_pinned(cell, build, scripted_context):
    method, params, budget, seed, *train = cell
    got = fingerprint(method, params, budget, seed, train[0] if train else None, build, scripted_context)
    if os.environ.get("PROMPTGYM_PRINT_PINS"):
        print(f'    "{cell_id(cell)}": "{got}",')
        return
    assert got == PINS[cell_id(cell)], "the method's requests, candidates or result changed"
