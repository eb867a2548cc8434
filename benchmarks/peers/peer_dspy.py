"""One DSPy optimizer (COPRO, MIPROv2 or GEPA) on the split, then its start and final programs on
the test split. Run by run.py in its own process (peers venv); writes one JSON file.

    python peer_dspy.py --optimizer copro|mipro|gepa --split DIR --base-url http://127.0.0.1:P/v1 \
        --budget 200 --seed 0 --out result.json

The program: ``dspy.Predict`` of a signature whose instructions are the task's description, one
input field ``text`` and one output field ``label`` (str). DSPy's default adapter (ChatAdapter,
which falls back to JSONAdapter when it cannot parse) formats the call and parses the reply; the
``label`` it returns is then parsed with common.parse_label. A reply no adapter can parse raises
(an "AdapterParseError"): during the search DSPy's own evaluator scores that example 0 (as long
as ``max_errors`` allows: set high here, see --max-errors), on the test split it is a wrong answer.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network look-up at import

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import correct, error_line, labels_of, peer_arguments, proxy_control, read_jsonl  # noqa: E402

import dspy  # noqa: E402


def make_lm(base_url: str, model: str, max_tokens: int, temperature: float | None, retries: int) -> dspy.LM:
    # DSPy's client may send the cap as max_completion_tokens, which llama.cpp's server ignores:
    # the cap it reads, max_tokens, goes in the request body as well. A chat LM for a base model too:
    # the proxy sends its requests as plain completion (DSPy's own text LM, model_type="text", fails
    # client-side in its JSONAdapter fallback: the completions client takes no response_format).
    return dspy.LM(f"openai/{model}", api_base=base_url, api_key="none", temperature=temperature,
                   max_tokens=max_tokens, extra_body={"max_tokens": max_tokens}, num_retries=retries,
                   cache=True)


def make_program(description: str) -> dspy.Module:
    return dspy.Predict(dspy.Signature("text -> label", description))


def to_examples(rows: list[dict]) -> list[dspy.Example]:
    return [dspy.Example(text=r["input"], target=r["target"]).with_inputs("text") for r in rows]


def instruction_of(program: dspy.Module) -> dict:
    pred = program.predictors()[0]
    sig = pred.signature
    prefix = sig.fields["label"].json_schema_extra.get("prefix")
    return {"instruction": sig.instructions, "output_prefix": prefix, "demos": len(pred.demos or [])}


# --- each optimizer's knobs, planned from the budget ------------------------------------------


def plan_copro(budget: int, n_train: int, n_dev: int) -> dict:
    """COPRO scores every candidate on its trainset (here: train). Calls ~ depth * breadth * n_train
    evaluations + 1 + (depth - 1) proposal requests (each asks for n completions)."""
    depth = 3
    breadth = max(2, (budget - depth) // (depth * n_train))
    while depth > 1 and depth * breadth * n_train + depth > budget and breadth == 2:
        depth -= 1
    planned = depth * breadth * n_train + depth
    return {"knobs": {"breadth": breadth, "depth": depth, "init_temperature": 1.4}, "planned_calls": planned,
            "planned_note": f"{depth} rounds x {breadth} candidates x {n_train} train examples + {depth} proposal requests"}


def _mipro_calls(n_train: int, n_dev: int, n_cand: int, trials: int, mb: int, full_every: int) -> int:
    proposals = math.ceil(n_train / 10) + 1 + 2 + n_cand  # data summary, program summary, candidates
    full = trials // full_every + (1 if trials % full_every else 0)
    return proposals + n_dev + mb * trials + n_dev * full


def plan_mipro(budget: int, n_train: int, n_dev: int) -> dict:
    """MIPROv2 zero-shot (instructions only, like the other methods here), auto=None: the number of
    instruction candidates, trials and the minibatch are chosen so that its own estimate (proposal
    calls + a full dev evaluation of the default program + minibatch trials + periodic full dev
    evaluations) fits the budget."""
    mb = min(10, n_dev)
    full_every = 5
    best = None
    for n_cand in (6, 5, 4, 3, 2):
        for trials in range(30, 0, -1):
            c = _mipro_calls(n_train, n_dev, n_cand, trials, mb, full_every)
            if c <= budget and trials >= n_cand:
                best = (n_cand, trials, c)
                break
        if best:
            break
    if best is None:
        best = (2, 2, _mipro_calls(n_train, n_dev, 2, 2, mb, full_every))
    n_cand, trials, c = best
    return {"knobs": {"auto": None, "num_candidates": n_cand, "num_trials": trials, "minibatch_size": mb,
                      "minibatch_full_eval_steps": full_every, "max_bootstrapped_demos": 0,
                      "max_labeled_demos": 0},
            "planned_calls": c,
            "planned_note": f"~{c - n_dev * (1 + trials // full_every + (1 if trials % full_every else 0)) - mb * trials} "
                            f"proposal calls + dev {n_dev} (default program) + {trials} trials x {mb} + periodic full dev evals"}


def plan_gepa(budget: int, n_train: int, n_dev: int) -> dict:
    """GEPA's own budget is max_metric_calls (task-model rollouts); each iteration adds about one
    reflection call per 2 x reflection_minibatch_size (3) + 1 rollouts, so 6/7 of the budget."""
    m = max(n_dev + 6, budget * 6 // 7)
    return {"knobs": {"max_metric_calls": m, "reflection_minibatch_size": 3, "use_merge": True},
            "planned_calls": m + (m - n_dev) // 7,
            "planned_note": f"{m} metric calls + ~{(m - n_dev) // 7} reflection calls"}


PLANS = {"copro": plan_copro, "mipro": plan_mipro, "gepa": plan_gepa}


def main() -> None:
    ap = peer_arguments(PLANS)
    ap.add_argument("--max-errors", type=int, default=1_000_000,
                    help="DSPy's max_errors: parse failures allowed before its evaluator gives up")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    split = Path(args.split)
    meta = json.loads((split / "split.json").read_text())
    train, dev, test = (read_jsonl(split / f"{n}.jsonl") for n in ("train", "dev", "test"))
    labels = labels_of(train)
    control = args.base_url.rsplit("/v1", 1)[0]
    plan = PLANS[args.optimizer](args.budget, len(train), len(dev))
    result: dict = {"peer": f"dspy-{args.optimizer}", "framework": f"dspy {dspy.__version__}",
                    "status": "running", "error": None, "knobs": plan["knobs"],
                    "planned_calls": plan["planned_calls"], "planned_note": plan["planned_note"],
                    "start_prompt": meta["description"]}
    out = Path(args.out)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    save()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)  # no answers from earlier runs
    task_lm = make_lm(args.base_url, args.task_model, args.task_max_tokens, 0.0, retries=3)
    meta_lm = make_lm(args.base_url, args.meta_model, args.meta_max_tokens, None, retries=3)
    dspy.configure(lm=task_lm, max_errors=args.max_errors)

    def metric(gold, pred, trace=None):
        return float(correct(getattr(pred, "label", None), gold.target, labels))

    def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        said = getattr(pred, "label", None)
        ok = correct(said, gold.target, labels)
        note = (f"Correct: the label is '{gold.target}'." if ok else
                f"Wrong: the answer was {said!r}; the correct label is '{gold.target}'. "
                f"The answer must be exactly one of: {', '.join(labels)}.")
        return dspy.Prediction(score=float(ok), feedback=note)

    student = make_program(meta["description"])
    trainset, devset = to_examples(train), to_examples(dev)
    k = plan["knobs"]
    t0 = time.time()
    try:
        if args.optimizer == "copro":
            opt = dspy.COPRO(prompt_model=meta_lm, metric=metric, breadth=k["breadth"], depth=k["depth"],
                             init_temperature=k["init_temperature"])
            final = opt.compile(student, trainset=trainset,
                                eval_kwargs={"num_threads": args.threads, "display_progress": False})
        elif args.optimizer == "mipro":
            opt = dspy.MIPROv2(metric=metric, prompt_model=meta_lm, task_model=task_lm, auto=None,
                               num_candidates=k["num_candidates"], max_bootstrapped_demos=0,
                               max_labeled_demos=0, num_threads=args.threads, seed=args.seed,
                               max_errors=args.max_errors, verbose=False)
            final = opt.compile(student, trainset=trainset, valset=devset, num_trials=k["num_trials"],
                                minibatch_size=k["minibatch_size"],
                                minibatch_full_eval_steps=k["minibatch_full_eval_steps"])
        else:
            opt = dspy.GEPA(metric=feedback_metric, max_metric_calls=k["max_metric_calls"],
                            reflection_lm=meta_lm, reflection_minibatch_size=k["reflection_minibatch_size"],
                            use_merge=k["use_merge"], num_threads=args.threads, seed=args.seed,
                            log_dir=str(out.parent / f"gepa-{out.stem}"))
            final = opt.compile(student, trainset=trainset, valset=devset)
        result["status"] = "searched"
    except BaseException as e:  # a crash is a result
        result["status"] = "crashed"
        result["error"] = error_line(e)
        result["traceback"] = traceback.format_exc()[-4000:]
        final = None
    result["search_seconds"] = round(time.time() - t0, 1)
    if final is not None:
        result.update({f"final_{k_}": v for k_, v in instruction_of(final).items()})
        result["final_prompt"] = result["final_instruction"]
    save()
    if final is None:
        sys.exit(1)

    # --- the test split: counted apart, never charged -------------------------------------
    proxy_control(control, "phase", {"phase": "test"})
    t1 = time.time()
    for name, program in (("start", student), ("final", final)):
        scores, answers, errors = [], [], 0
        for row in test:
            try:
                said = program(text=row["input"]).label
            except Exception as e:  # the adapter could not parse the reply: a wrong answer
                said, errors = f"<{type(e).__name__}>", errors + 1
            answers.append(said)
            scores.append(correct(said, row["target"], labels))
        result[f"test_{name}"] = scores
        result[f"test_{name}_answers"] = answers
        result[f"test_{name}_errors"] = errors
        save()
    result["test_seconds"] = round(time.time() - t1, 1)
    result["status"] = "ok"
    save()


if __name__ == "__main__":
    main()
