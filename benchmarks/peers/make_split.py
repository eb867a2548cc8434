"""Write promptgym's own split of a dataset as train/dev/test JSONL (fields input, target,
choices) plus split.json (the starting instruction, labels, sizes). The start is what promptgym
starts from: the dataset's description, or its neutral instruction for a dataset without one
(e.g. SST-2).

Runs in promptgym's environment (run.py calls it with promptgym's python):
    python make_split.py --dataset example:sentiment --seed 0 \
        --train-size 20 --dev-size 30 --test-size 100 --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from promptgym.data.dataset import split_dataset
from promptgym.data.loaders import load_dataset
from promptgym.runner.setup import NEUTRAL_CHOICE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-size", type=int, required=True)
    ap.add_argument("--dev-size", type=int, required=True)
    ap.add_argument("--test-size", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    dataset = load_dataset(args.dataset)
    if not dataset.is_choice or dataset.labels is None:
        raise SystemExit(f"{args.dataset}: the peers benchmark needs a classification task with one label set")
    splits = split_dataset(dataset, train_size=args.train_size, test_size=args.test_size,
                           dev_size=args.dev_size, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "dev", "test"):
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for ex in getattr(splits, name):
                f.write(json.dumps({"input": ex.input, "target": ex.target, "choices": list(ex.choices)})
                        + "\n")
    meta = {"dataset": args.dataset, "seed": args.seed, "description": dataset.description or NEUTRAL_CHOICE,
            "labels": list(dataset.labels), "train": len(splits.train), "dev": len(splits.dev),
            "test": len(splits.test)}
    (out / "split.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
