"""One promptolution optimizer (OPRO or EvoPrompt GA) on the split, then its start and final
prompts on the test split. Run by run.py in its own process (peers venv); writes one JSON file.

    python peer_promptolution.py --optimizer opro|evoprompt-ga --split DIR \
        --base-url http://127.0.0.1:P/v1 --budget 200 --seed 0 --out result.json

Search: promptolution's own ClassificationTask on the train split (it has no separate validation
set) with its FirstOccurrencePredictor (the first label word in the reply; none -> the first label)
and APILLM (OpenAI-compatible client) for both the task and the meta model. Test: the prompt as
promptolution renders it (``Prompt.construct_prompt()`` + newline + input, its default system
prompt), sent through the same APILLM, the reply parsed with common.parse_label like every peer.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import correct, error_line, labels_of, peer_arguments, proxy_control, read_jsonl  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import promptolution  # noqa: E402
from importlib.metadata import version  # noqa: E402
from promptolution.llms import APILLM  # noqa: E402
from promptolution.optimizers import OPRO, EvoPromptGA  # noqa: E402
from promptolution.predictors import FirstOccurrencePredictor  # noqa: E402
from promptolution.tasks import ClassificationTask  # noqa: E402
from promptolution.utils import Prompt, create_prompt_variation  # noqa: E402


def plan_opro(budget: int, n_train: int) -> dict:
    """One start prompt scored on train, then n_steps x num_instructions_per_step x (1 meta call +
    n_train scoring calls); duplicates are skipped unscored."""
    per = 4
    steps = max(1, (budget - n_train) // (per * (n_train + 1)))
    planned = n_train + steps * per * (n_train + 1)
    return {"knobs": {"n_steps": steps, "num_instructions_per_step": per, "max_num_instructions": 20,
                      "num_few_shots": 3},
            "planned_calls": planned,
            "planned_note": f"{n_train} (start) + {steps} steps x {per} x ({n_train} + 1 meta call)"}


def plan_ga(budget: int, n_train: int) -> dict:
    """Population: the start prompt + (population - 1) paraphrases of it (promptolution's own
    create_prompt_variation, one meta call each); each scored on train; each step = population
    crossover calls + population x n_train scoring calls."""
    for pop in (6, 5, 4, 3):
        init = (pop - 1) + pop * n_train
        steps = (budget - init) // (pop * (n_train + 1))
        if steps >= 2:
            break
    steps = max(1, steps)
    planned = (pop - 1) + pop * n_train + steps * pop * (n_train + 1)
    return {"knobs": {"n_steps": steps, "population": pop, "selection_mode": "wheel"},
            "planned_calls": planned,
            "planned_note": f"{pop - 1} paraphrases + {pop} x {n_train} (initial scores) + {steps} steps x "
                            f"{pop} x ({n_train} + 1 crossover call)"}


PLANS = {"opro": plan_opro, "evoprompt-ga": plan_ga}


class StepErrors(logging.Handler):
    """promptolution's loop catches an exception in a step, logs it and stops: keep those."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        line = f"{record.getMessage()}" + (f" {type(exc).__name__}: {str(exc).strip()[-300:]}" if exc else "")
        self.records.append(line)


def main() -> None:
    ap = peer_arguments(PLANS)
    ap.add_argument("--threads", type=int, default=2, help="APILLM max_concurrent_calls")
    args = ap.parse_args()

    split = Path(args.split)
    meta = json.loads((split / "split.json").read_text())
    train, test = read_jsonl(split / "train.jsonl"), read_jsonl(split / "test.jsonl")
    labels = labels_of(train)
    control = args.base_url.rsplit("/v1", 1)[0]
    plan = PLANS[args.optimizer](args.budget, len(train))
    result: dict = {"peer": f"promptolution-{args.optimizer}",
                    "framework": f"promptolution {version('promptolution')}", "status": "running",
                    "error": None, "knobs": plan["knobs"], "planned_calls": plan["planned_calls"],
                    "planned_note": plan["planned_note"], "start_prompt": meta["description"]}
    out = Path(args.out)

    def save() -> None:
        out.write_text(json.dumps(result, indent=1) + "\n")

    save()
    np.random.seed(args.seed)
    step_errors = StepErrors()
    logging.getLogger("promptolution").addHandler(step_errors)
    common = dict(api_url=args.base_url, api_key="none", max_concurrent_calls=args.threads, call_timeout_s=900.0,
                  gather_timeout_s=6 * 3600.0)
    # APILLM speaks chat only: for a base task model the proxy sends its requests as plain completion
    task_llm = APILLM(model_id=args.task_model, max_tokens=args.task_max_tokens, call_kwargs={"temperature": 0.0},
                      **common)
    meta_llm = APILLM(model_id=args.meta_model, max_tokens=args.meta_max_tokens, **common)
    df = pd.DataFrame({"x": [r["input"] for r in train], "y": [r["target"].lower() for r in train]})
    task = ClassificationTask(df, task_description=meta["description"], x_column="x", y_column="y",
                              eval_strategy="full", seed=args.seed)
    predictor = FirstOccurrencePredictor(task_llm, classes=[c.lower() for c in labels])
    k = plan["knobs"]
    t0 = time.time()
    final_prompt = None
    try:
        if args.optimizer == "opro":
            opt = OPRO(predictor=predictor, task=task, meta_llm=meta_llm, initial_prompts=[meta["description"]],
                       max_num_instructions=k["max_num_instructions"],
                       num_instructions_per_step=k["num_instructions_per_step"], num_few_shots=k["num_few_shots"])
        else:
            population = [meta["description"]] + create_prompt_variation(
                [meta["description"]] * (k["population"] - 1), meta_llm)
            result["initial_population"] = population
            opt = EvoPromptGA(predictor=predictor, task=task, meta_llm=meta_llm, initial_prompts=population,
                              selection_mode=k["selection_mode"])
        prompts = opt.optimize(n_steps=k["n_steps"])  # its own loop logs a failed step and stops
        final_prompt = prompts[0]
        result["status"] = "searched"
        result["final_train_score"] = float(opt.scores[0]) if len(opt.scores) else None
    except BaseException as e:  # a crash is a result
        result["status"] = "crashed"
        result["error"] = error_line(e)
        result["traceback"] = traceback.format_exc()[-4000:]
    result["search_seconds"] = round(time.time() - t0, 1)
    result["logged_errors"] = step_errors.records[-20:]
    stopped = [r for r in step_errors.records if "Error during optimization step" in r]
    if stopped and result["status"] == "searched":
        result["error"] = "stopped early (its loop caught a step error): " + stopped[-1]
    if final_prompt is not None:
        result["final_prompt"] = final_prompt.construct_prompt()
    save()
    if final_prompt is None:
        sys.exit(1)

    proxy_control(control, "phase", {"phase": "test"})
    t1 = time.time()
    xs = [r["input"] for r in test]
    for name, prompt in (("start", Prompt(meta["description"])), ("final", final_prompt)):
        replies = task_llm.get_response([prompt.construct_prompt() + "\n" + x for x in xs])
        result[f"test_{name}"] = [correct(a, r["target"], labels) for a, r in zip(replies, test)]
        result[f"test_{name}_answers"] = replies
        save()
    result["test_seconds"] = round(time.time() - t1, 1)
    result["status"] = "ok"
    save()


if __name__ == "__main__":
    main()
