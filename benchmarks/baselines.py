"""Where is there headroom? The starting prompt of each dataset, scored held out on each task model.

    python benchmarks/baselines.py [--datasets SPEC,...] [--task-models embedded,gemma3-270m]
                                   [--test-size 150] [--seed 0] [--out benchmarks/results/baselines.json]

For every dataset and task model this scores the prompt a run would start from (the dataset's own
instruction, else promptgym's neutral one) on the test split a run with the same seed holds out
(the test split is cut first, so it does not depend on the train or dev sizes), with the layout a
run on that model uses (chat on SmolLM2; plain on Gemma 3 270M, a base model). Each score comes
with its 95% interval (Wilson for 0/1 scores) and, for choice tasks, the chance level, so the
methods' benchmarks can pick tasks where the start is neither at chance nor at the ceiling.
Answers go through the response cache (PROMPTGYM_CACHE), so a second run costs nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as sps

from promptgym.data import load_dataset, split_dataset
from promptgym.errors import PromptgymError
from promptgym.evaluation import Budget, Evaluator, ResponseCache
from promptgym.models import make_backend
from promptgym.paths import default_cache_url
from promptgym.runner.setup import initial_prompt, task_of
from promptgym.tasks.task import ChoiceTask

APE_TASKS = ("active_to_passive", "antonyms", "cause_and_effect", "common_concept", "diff", "first_word_letter",
             "informal_to_formal", "larger_animal", "letters_list", "negation", "num_to_verbal",
             "orthography_starts_with", "rhymes", "second_word_letter", "sentence_similarity", "sentiment",
             "singular_to_plural", "sum", "synonyms", "taxonomy_animal", "translation_en-de", "translation_en-es",
             "translation_en-fr", "word_in_context")
DEFAULT_DATASETS = ("example:sentiment", "paper:rlprompt/sst-2", "paper:rlprompt/mr", "paper:protegi/liar", "paper:protegi/ethos",
                    *(f"paper:ape/{t}" for t in APE_TASKS))
LAYOUTS = {"gemma3-270m": "plain"}  # a base model has no chat template
MIN_TRAIN = 20  # left out of the test split, as a run's train split would be


def interval(scores: list[float]) -> tuple[float, float]:
    """95% interval of the mean: Wilson for 0/1 scores, percentile bootstrap otherwise."""
    if all(s in (0.0, 1.0) for s in scores):
        ci = sps.binomtest(int(sum(scores)), len(scores)).proportion_ci(0.95, method="wilson")
        return float(ci.low), float(ci.high)
    if len(set(scores)) == 1:
        return scores[0], scores[0]
    res = sps.bootstrap((np.asarray(scores),), np.mean, confidence_level=0.95, random_state=0, method="percentile")
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def baseline(spec: str, model: str, test_size: int, seed: int, cache: ResponseCache,
             generation_test_size: int | None = None) -> dict:
    dataset = load_dataset(spec)
    if not dataset.is_choice and generation_test_size is not None:
        test_size = generation_test_size
    test_n = min(test_size, len(dataset) - MIN_TRAIN)
    splits = split_dataset(dataset, MIN_TRAIN, test_n, seed=seed)
    backend = make_backend(model)
    layout = LAYOUTS.get(model, "chat")
    config = dict(dataset=spec, prompt=None, layout=layout)  # a run's start, as the runner builds it
    task = task_of(config, dataset, "logprob")
    prompt = initial_prompt(config, dataset, task)
    instruction = prompt.instruction
    evaluator = Evaluator(backend, backend, cache, Budget(None))
    started = time.perf_counter()
    result = evaluator.run_task(task, prompt, splits.test, charge=False)
    seconds = time.perf_counter() - started
    low, high = interval(result.scores)
    chance = (float(np.mean([1 / len(e.choices) for e in splits.test])) if isinstance(task, ChoiceTask) else None)
    return dict(dataset=spec, task_model=model, layout=layout, kind="choice" if chance is not None else "free text",
                rows=len(dataset), test=len(splits.test), instruction=instruction, score=result.mean,
                low=low, high=high, chance=chance, seconds=round(seconds, 1),
                example_prediction=result.predictions[0] if result.predictions else None)


FEW = 30  # test rows below which an interval is too wide to place a task (the APE tasks of 30-51 rows)
NEAR_ZERO = 0.10  # free text: an interval whose top is below this leaves a wording method little to work on


def headroom(row: dict) -> str:
    """A word for the table: where a method has something to find. A choice task whose interval
    reaches down to chance is ``at chance``; free text whose interval stays under NEAR_ZERO is
    ``near zero``; an interval at 0.95 or above is ``at ceiling``; under FEW test rows, too few to tell."""
    if row["test"] < FEW:
        return "too few rows"
    if row["chance"] is not None and row["low"] <= row["chance"]:
        return "at chance"
    if row["chance"] is None and row["high"] < NEAR_ZERO:
        return "near zero"
    if row["low"] >= 0.95:
        return "at ceiling"
    return "room"


def table(rows: list[dict]) -> str:
    out = ["| dataset | task model | kind | test n | start score [95% interval] | chance | headroom |",
           "|---|---|---|---:|---|---:|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| {r['dataset']} | {r['task_model']} | | | error: {r['error']} | | |")
            continue
        chance = f"{r['chance']:.2f}" if r["chance"] is not None else "-"
        out.append(f"| {r['dataset']} | {r['task_model']} | {r['kind']} | {r['test']} | "
                   f"{r['score']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {chance} | {headroom(r)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DEFAULT_DATASETS))
    ap.add_argument("--task-models", default="embedded,gemma3-270m")
    ap.add_argument("--test-size", type=int, default=150)
    ap.add_argument("--generation-test-size", type=int, default=None,
                    help="test size of free-text tasks (generating costs more than scoring options)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "baselines.json"))
    ap.add_argument("--rewrite", action="store_true", help="only rewrite the .md from the results file")
    args = ap.parse_args()
    path = Path(args.out)
    if args.rewrite:
        out = json.loads(path.read_text())
        write_markdown(path, out)
        return
    cache = ResponseCache(default_cache_url())
    rows = []
    started = time.perf_counter()
    for model in [m.strip() for m in args.task_models.split(",") if m.strip()]:
        for spec in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            try:
                row = baseline(spec, model, args.test_size, args.seed, cache, args.generation_test_size)
            except PromptgymError as exc:  # a dataset that does not load here is a row, not a stop
                row = dict(dataset=spec, task_model=model, error=str(exc))
            rows.append(row)
            print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    out = dict(benchmark="baselines", date=dt.datetime.now().isoformat(timespec="seconds"),
               machine=dict(cpus=os.cpu_count(), python=platform.python_version()), args=vars(args),
               seconds=round(time.perf_counter() - started, 1), rows=rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    write_markdown(path, out)
    print(table(rows))


def write_markdown(path: Path, out: dict) -> None:
    args = out["args"]
    md = (f"# Baselines: the starting prompt held out (seed {args['seed']}, test up to {args['test_size']}"
          + (f", {args['generation_test_size']} for free text" if args.get("generation_test_size") else "") + ")\n\n"
          f"`python benchmarks/baselines.py` on {out['date'][:10]}, {out['seconds'] / 60:.0f} minutes on "
          f"{out['machine']['cpus']} shared cores. Interval: 95% (Wilson for 0/1 scores). Headroom: `at chance` "
          "when a choice task's interval reaches down to chance, `near zero` when a free-text task's interval "
          f"stays under {NEAR_ZERO:.2f}, `at ceiling` when the interval's bottom is at 0.95 or more, else "
          f"`room`; `too few rows` under {FEW} test rows. Free-text answers are scored by exact match after "
          "normalisation, stricter than the APE "
          "paper's metric on a few tasks (benchmarks/data/README.md).\n\n" + table(out["rows"]) + "\n")
    path.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
