"""GEPA through its own package (``gepa``, not DSPy's wrapper) on the split, then its start and final
prompts on the test split. Run by run.py in its own process (peers venv); writes one JSON file.

    python peer_gepa.py --optimizer gepa --split DIR --base-url http://127.0.0.1:P/v1 \
        --budget 200 --seed 0 --out result.json

The package's default single-prompt adapter (``DefaultAdapter``): the candidate is one text, sent as
the system message with the example's input as the user message, through LiteLLM to the proxy's
OpenAI-compatible endpoint (``openai/<task model>``; chat only, so for a base task model the proxy
sends it as plain completion). Its evaluator is ours, the only part we supply: accuracy on the task's
options (``common.parse_label`` of the reply, the rule every peer is tested by), with feedback text
naming the right label, as in the DSPy GEPA peer. Reflection: the optimizer model through the
package's own LiteLLM wrapper (``reflection_lm`` as a model string). Test: the same adapter answers
every test example with the start and with the returned prompt.

Budget: ``max_metric_calls`` (the package's own knob: task-model rollouts) is 6/7 of the budget, as
for DSPy's GEPA; and a stopper (the package's ``stop_callbacks``) ends the search before an
iteration that could pass the budget counted at the proxy (two minibatches, one reflection call and
a full dev evaluation at most), because a refused call raises out of the package's run
(``raise_on_exception``, default on) and its result would be lost.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network look-up at import

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import correct, error_line, labels_of, peer_arguments, proxy_control, read_jsonl  # noqa: E402

import gepa  # noqa: E402
from gepa.adapters.default_adapter.default_adapter import DefaultAdapter, EvaluationResult  # noqa: E402
from importlib.metadata import version  # noqa: E402

COMPONENT = "system_prompt"
MINIBATCH = 3  # the package's default reflection minibatch


def plan_gepa(budget: int, n_train: int, n_dev: int) -> dict:
    """Rollouts (``max_metric_calls``) take 6/7 of the budget: each iteration adds about one
    reflection call per 2 x minibatch + 1 rollouts. The stopper keeps the worst iteration in."""
    m = max(n_dev + 2 * MINIBATCH, budget * 6 // 7)
    worst = 2 * MINIBATCH + 1 + n_dev
    return {"knobs": {"max_metric_calls": m, "reflection_minibatch_size": MINIBATCH, "use_merge": False,
                      "candidate_selection_strategy": "pareto", "stop_before_iteration_over": worst},
            "planned_calls": min(budget, m + (m - n_dev) // (2 * MINIBATCH + 1)),
            "planned_note": f"{m} metric calls + ~{(m - n_dev) // (2 * MINIBATCH + 1)} reflection calls, "
                            f"stopped before an iteration that could pass the budget ({worst} calls)"}


PLANS = {"gepa": plan_gepa}


class OptionAccuracy:
    """The adapter's evaluator: 1 when the reply names the right option (``parse_label``), with
    feedback for the reflection model."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def __call__(self, data: dict, response: str) -> EvaluationResult:
        ok = correct(response, data["answer"], self.labels)
        note = (f"Correct: the label is '{data['answer']}'." if ok else
                f"Wrong: the answer was {response!r}; the correct label is '{data['answer']}'. "
                f"The answer must be exactly one of: {', '.join(self.labels)}.")
        return EvaluationResult(score=float(ok), feedback=note)


class ProxyBudget:
    """A GEPA stopper: True when the calls counted at the proxy leave too few for one more
    iteration at its most expensive."""

    def __init__(self, control: str, budget: int, worst: int) -> None:
        self.control, self.budget, self.worst = control, budget, worst
        self.stopped_at: int | None = None

    def __call__(self, gepa_state) -> bool:
        used = proxy_control(self.control, "stats")["phases"]["search"]["calls"]
        if used + self.worst > self.budget:
            self.stopped_at = used
            return True
        return False


def to_instances(rows: list[dict]) -> list[dict]:
    return [{"input": r["input"], "additional_context": {}, "answer": r["target"]} for r in rows]


def main() -> None:
    ap = peer_arguments(PLANS)
    ap.add_argument("--threads", type=int, default=2, help="the adapter's LiteLLM workers")
    args = ap.parse_args()

    split = Path(args.split)
    meta = json.loads((split / "split.json").read_text())
    train, dev, test = (read_jsonl(split / f"{n}.jsonl") for n in ("train", "dev", "test"))
    labels = labels_of(train)
    control = args.base_url.rsplit("/v1", 1)[0]
    plan = PLANS[args.optimizer](args.budget, len(train), len(dev))
    k = plan["knobs"]
    result: dict = {"peer": "gepa", "framework": f"gepa {version('gepa')}", "status": "running", "error": None,
                    "knobs": k, "planned_calls": plan["planned_calls"], "planned_note": plan["planned_note"],
                    "start_prompt": meta["description"]}
    out = Path(args.out)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    save()
    endpoint = {"api_base": args.base_url, "api_key": "none"}
    adapter = DefaultAdapter(model=f"openai/{args.task_model}", evaluator=OptionAccuracy(labels),
                             max_litellm_workers=args.threads,
                             litellm_batch_completion_kwargs={**endpoint, "max_tokens": args.task_max_tokens,
                                                              "temperature": 0.0})
    stopper = ProxyBudget(control, args.budget, k["stop_before_iteration_over"])
    start = {COMPONENT: meta["description"]}
    run_dir = out.parent / f"{out.stem}-gepa"
    if run_dir.exists():  # the package resumes from a run_dir's saved state: every run starts fresh
        for f in sorted(run_dir.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    t0 = time.time()
    final = None
    try:
        found = gepa.optimize(seed_candidate=start, trainset=to_instances(train), valset=to_instances(dev),
                              adapter=adapter, reflection_lm=f"openai/{args.meta_model}",
                              reflection_lm_kwargs={**endpoint, "max_tokens": args.meta_max_tokens},
                              reflection_minibatch_size=k["reflection_minibatch_size"],
                              candidate_selection_strategy=k["candidate_selection_strategy"],
                              use_merge=k["use_merge"], max_metric_calls=k["max_metric_calls"],
                              stop_callbacks=stopper, run_dir=str(run_dir), seed=args.seed)
        final = found.best_candidate
        final = final if isinstance(final, dict) else {COMPONENT: str(final)}
        result.update(status="searched", candidates=found.num_candidates, metric_calls=found.total_metric_calls,
                      dev_score_final=found.val_aggregate_scores[found.best_idx],
                      dev_score_start=found.val_aggregate_scores[0], stopped_by_budget_at=stopper.stopped_at)
    except BaseException as e:  # a crash is a result
        result["status"] = "crashed"
        result["error"] = error_line(e)
        result["traceback"] = traceback.format_exc()[-4000:]
    result["search_seconds"] = round(time.time() - t0, 1)
    if final is not None:
        result["final_prompt"] = final[COMPONENT]
    save()
    if final is None:
        sys.exit(1)

    # --- the test split: counted apart, never charged -------------------------------------
    proxy_control(control, "phase", {"phase": "test"})
    t1 = time.time()
    for name, candidate in (("start", start), ("final", final)):
        batch = adapter.evaluate(to_instances(test), candidate, capture_traces=False)
        answers = [o["full_assistant_response"] for o in batch.outputs]
        result[f"test_{name}"] = [correct(a, r["target"], labels) for a, r in zip(answers, test)]
        result[f"test_{name}_answers"] = answers
        save()
    result["test_seconds"] = round(time.time() - t1, 1)
    result["status"] = "ok"
    save()


if __name__ == "__main__":
    main()
