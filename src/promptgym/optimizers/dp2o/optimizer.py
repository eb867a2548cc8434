"""The DP2O optimizer: Stage A (seed selection, dialogue, SUE screening), Stage B (probability
tables, frozen states, REINFORCE policy), and the held-out report / predictions. See the package
docstring for the method and the decisions taken where the paper and code are silent."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.evaluation.evaluator import EvalResult, Evaluator
from promptgym.models.base import OptionScores
from promptgym.optimizers.base import Context, Optimizer, register
from promptgym.optimizers.dp2o import inference
from promptgym.optimizers.dp2o.dialogue import run_dialogue
from promptgym.optimizers.dp2o.policy import PolicyNet, train_policy
from promptgym.optimizers.dp2o.scoring import SueWeights, accuracy, reward, spearman, sue
from promptgym.optimizers.encoders import Encoder, ModelEncoder, TfidfEncoder, encoder_from_spec
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask

ARTIFACT = "dp2o"
EXPECTED_KEEP_RATE = 0.7  # share of requested dialogue items assumed to survive parsing (planning only)


def demo_prompt(base: Prompt, text: str, label: str) -> Prompt:
    """A pool item: the starting prompt with one labelled demonstration."""
    return replace(base, demos=((text, label),))


def plan_budget(limit: float, n_train: int, n_dev: int, n_labels: int, p: dict[str, Any]) -> dict[str, int]:
    """Scale Stage A/B down (never up) so that the expected number of model calls fits ``limit``.

    Cost model (calls): seed scoring ``n_seed x S`` + dialogue turns + screening
    ``candidates x S`` + Stage B tables ``h x (N - S + D)`` + the starting prompt on dev ``D``
    (+ ``candidates x D`` with ``dev_all_candidates``). Reduced in this order: rounds, seed
    candidates, SUE examples, seeds, pool size h.
    """
    size = min(p["sue_examples"] or n_train, n_train)
    n_seed = min(p["seed_candidates"] or n_train, n_train)
    m = min(p["seeds"], n_seed)
    rounds = max(1, int(p["rounds"]))
    h = max(1, int(p["pool_size"]))

    def cost() -> float:
        exchanges = rounds * max(1, m - min(p["window"], m) + 1) * n_labels  # one per label
        turns = exchanges * (1 + p["dialogue_retries"])  # worst case: every exchange re-asked
        cands = math.ceil(exchanges * EXPECTED_KEEP_RATE)
        dev_rows = cands if p["dev_all_candidates"] else min(h, cands)
        return (n_seed * size + turns + cands * size + min(h, cands) * (n_train - size)
                + dev_rows * n_dev + n_dev)

    while cost() > limit:
        if rounds > 1:
            rounds -= 1
        elif n_seed > max(m, 8):
            n_seed = max(m, 8, n_seed * 2 // 3)
        elif size > 8:
            size = max(8, size * 3 // 4)
        elif m > 3:
            m -= 1
        elif n_seed > m:
            n_seed -= 1
        elif h > 2:
            h -= 1
        elif size > 2:
            size -= 1
        else:
            break
    return {"rounds": rounds, "seed_candidates": n_seed, "seeds": m, "sue_examples": size, "pool_size": h,
            "expected_calls": int(cost())}


@dataclass
class _Run:
    """What one optimisation leaves for the held-out report and predictions."""

    labels: tuple[str, ...]
    train: list[Example]
    dev: list[Example]
    pool: list[Prompt] = field(default_factory=list)
    pool_sue: list[float] = field(default_factory=list)
    dev_table: np.ndarray | None = None
    best_index: int = 0
    policy: PolicyNet | None = None
    embedder: Encoder | None = None
    pool_embeddings: np.ndarray | None = None
    calls: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    dev_accuracy: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class _Meter:
    """Model calls and seconds between two points (uncached calls, cached replays, budget)."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.start = self._now()

    def _now(self) -> tuple[int, int, float, float]:
        u = self.evaluator.usage
        return (u.calls, u.cached_calls, self.evaluator.budget.spent, time.perf_counter())

    def read(self) -> tuple[dict[str, int], float]:
        now = self._now()
        calls = {"calls": now[0] - self.start[0], "cached": now[1] - self.start[1],
                 "charged": int(now[2] - self.start[2])}
        return calls, round(now[3] - self.start[3], 3)


def _label_set(examples: Sequence[Example]) -> tuple[str, ...]:
    first = examples[0].choices if examples else None
    if not first or any(e.choices != first for e in examples):
        raise PromptgymError("method 'dp2o' needs a classification dataset whose examples share one label set")
    return tuple(first)


@register
class Dp2oOptimizer(Optimizer):
    name = "dp2o"
    summary = "DP2O: dialogue-written demo pool, SUE screening, per-input prompt policy (REINFORCE)"
    selection_split = "dev"
    defaults: dict[str, Any] = {
        # Stage A: seeds, dialogue, screening
        "seeds": 8,                 # m: top-SUE training examples shown in the dialogue
        "rounds": 3,                # conversations; each has m - window + 1 turns
        "window": 3,                # seeds shown per turn (m - 2 turns per round, as the paper)
        "pool_size": 15,            # h: prompts kept after SUE screening (released code: 15)
        "sue_examples": None,       # training examples SUE is measured on (None: all)
        "seed_candidates": None,    # training examples scored as possible seeds (None: all)
        "sue_supervised": 10.0,
        "sue_unsupervised": 6.5,
        "sue_global": 0.0,
        "temperature": 0.8,
        "dialogue_retries": 2,      # re-ask a dropped exchange (fresh, hotter sample); see dialogue
        "top_p": 0.95,
        "max_tokens": 80,           # one input text per exchange
        "max_history_chars": 4000,
        "dev_fraction": 0.3,        # carved out of train when the run has no dev split
        "dev_all_candidates": False,  # also score every screened candidate on dev (SUE check)
        # Stage B: states, policy, REINFORCE
        "encoder": "auto",          # auto (model if the task model embeds, else tfidf) | model | tfidf
        "hidden": 600,
        "episodes": 200,
        "lr": 1e-3,
        "adam_eps": 1e-5,
        "weight_decay": 0.01,
        "entropy_coef": 0.059,
        "reward_margin": 10.0,
        "reward_entropy": 6.5,
        "reward_norm": "batch",     # batch | running | none
        "normalize_states": True,
        # Inference
        "top_k": 10,
        "inference": "ensemble",    # ensemble | greedy (what predict() answers with)
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["encoder"] not in ("auto", "model", "tfidf"):
            raise PromptgymError("dp2o: encoder must be auto, model or tfidf")
        if self.params["inference"] not in ("ensemble", "greedy"):
            raise PromptgymError("dp2o: inference must be ensemble or greedy")
        if self.params["reward_norm"] not in ("batch", "running", "none"):
            raise PromptgymError("dp2o: reward_norm must be batch, running or none")
        self.run_state: _Run | None = None

    # -- helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _check_task(ctx: Context) -> None:
        task = ctx.task
        if not isinstance(task, ChoiceTask):
            raise PromptgymError("method 'dp2o' works on classification (choice) tasks only")
        if task.scoring != "logprob":
            raise PromptgymError("method 'dp2o' needs class probabilities: use a task model with "
                                 "log-probabilities (--scoring logprob)")

    def _splits(self, ctx: Context) -> tuple[list[Example], list[Example]]:
        if ctx.dev:
            return list(ctx.train), list(ctx.dev)
        n = len(ctx.train)
        if n < 4:
            raise PromptgymError("method 'dp2o' needs at least 4 training examples (or a --dev-size)")
        n_dev = min(n - 2, max(2, round(self.params["dev_fraction"] * n)))
        order = [int(i) for i in ctx.rng.permutation(n)]
        dev_idx = set(order[:n_dev])
        return ([e for i, e in enumerate(ctx.train) if i not in dev_idx],
                [e for i, e in enumerate(ctx.train) if i in dev_idx])

    @staticmethod
    def _probs(result: EvalResult, task: ChoiceTask) -> np.ndarray:
        rows = []
        for resp in result.responses:
            if not isinstance(resp, OptionScores):
                raise PromptgymError("method 'dp2o' needs option log-probabilities from the task model")
            rows.append(task.probabilities(resp))
        return np.vstack(rows)

    @staticmethod
    def _gold(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
        return np.array([labels.index(e.target) for e in examples])

    def _embedder(self, ctx: Context, train: Sequence[Example]) -> Encoder:
        choice = self.params["encoder"]
        if choice == "auto":
            choice = "model" if ctx.evaluator.can_embed("task") else "tfidf"
        if choice == "model":
            return ModelEncoder(ctx.evaluator)
        # Words of a single training input cannot teach the policy anything that transfers,
        # and z-normalisation would make them the loudest features: keep words in >= 2 inputs.
        texts = [e.input for e in train]
        fitted = TfidfEncoder.fit(texts, min_df=2)
        return fitted if fitted.vocab else TfidfEncoder.fit(texts)

    # -- the method ------------------------------------------------------------------------------------
    def optimize(self, ctx: Context) -> Prompt:
        self._check_task(ctx)
        p = self.params
        task: ChoiceTask = ctx.task  # type: ignore[assignment]
        labels = _label_set(list(ctx.train) + list(ctx.dev))
        train, dev = self._splits(ctx)
        run = self.run_state = _Run(labels=labels, train=train, dev=dev)
        stats: dict[str, Any] = {"train_size": len(train), "dev_size": len(dev),
                                 "dev_carved_from_train": not ctx.dev}
        ctx.stats["dp2o"] = stats
        limit = ctx.evaluator.budget.limit
        plan = plan_budget(float("inf") if limit is None else limit, len(train), len(dev), len(labels), p)
        stats["plan"] = plan
        virtual: set[tuple[str, str]] = set()  # distinct (prompt, example) scorings: a fresh run's calls
        spent = {"generate": 0}

        def evaluate(prompt: Prompt, examples: Sequence[Example], split: str) -> np.ndarray:
            virtual.update((prompt.id, e.id) for e in examples)
            return self._probs(ctx.evaluate(prompt, examples, split=split), task)

        def planned_spend() -> int:
            return len(virtual) + spent["generate"]

        # ---------------- Stage A ----------------
        meter = _Meter(ctx.evaluator)
        sue_weights = SueWeights(p["sue_supervised"], p["sue_unsupervised"], p["sue_global"])
        n = len(train)
        sue_set = [train[i] for i in sorted(ctx.rng.choice(n, size=plan["sue_examples"], replace=False))]
        sue_gold = self._gold(sue_set, labels)
        seed_idx = sorted(int(i) for i in ctx.rng.choice(n, size=plan["seed_candidates"], replace=False))
        seed_scores = []
        for i in seed_idx:
            ex = train[i]
            prompt = ctx.add(demo_prompt(ctx.initial, ex.input, ex.target), [ctx.initial], "dp2o:seed-candidate")
            keep = [j for j, e in enumerate(sue_set) if e.id != ex.id]  # a demo never scores itself
            probs = evaluate(prompt, [sue_set[j] for j in keep], "sue")
            seed_scores.append(float(sue(probs, sue_gold[keep], sue_weights)))
        ranked = sorted(range(len(seed_idx)), key=lambda k: (-seed_scores[k], k))
        seeds = [train[seed_idx[k]] for k in ranked[:plan["seeds"]]]
        seed_prompts = [demo_prompt(ctx.initial, e.input, e.target) for e in seeds]
        stats["seeds"] = {"scored": len(seed_idx), "kept": len(seeds),
                          "sue": [round(seed_scores[k], 4) for k in ranked[:plan["seeds"]]]}
        label_word = {lab: ctx.initial.verbalize(lab) for lab in labels}
        dialogue = run_dialogue(
            ctx, seeds, ctx.initial.instruction, labels, label_word, rounds=plan["rounds"], window=p["window"],
            temperature=p["temperature"], top_p=p["top_p"], max_tokens=p["max_tokens"],
            max_history_chars=p["max_history_chars"], known_inputs=list(ctx.train) + list(ctx.dev),
            retries=p["dialogue_retries"])
        spent["generate"] += dialogue.turns
        candidates = [ctx.add(demo_prompt(ctx.initial, it.input, it.label),
                              [seed_prompts[s] for s in it.seeds], "dp2o:dialogue") for it in dialogue.items]
        # Screen as many candidates as the budget allows (a seeded subset when it cannot take all).
        size, n_dev, h = len(sue_set), len(dev), plan["pool_size"]
        remaining = (float("inf") if limit is None else limit) - planned_spend()

        def need(k: int) -> float:
            dev_rows = k if p["dev_all_candidates"] else min(h, k)
            return k * size + min(h, k) * (n - size) + dev_rows * n_dev + n_dev

        n_screen = len(candidates)
        while n_screen > 0 and need(n_screen) > remaining:
            n_screen -= 1
        if n_screen < len(candidates):
            chosen = sorted(int(i) for i in ctx.rng.choice(len(candidates), size=n_screen, replace=False))
            screened = [candidates[i] for i in chosen]
        else:
            screened = candidates
        cand_probs = [evaluate(c, sue_set, "sue") for c in screened]
        cand_sue = [float(sue(pr, sue_gold, sue_weights)) for pr in cand_probs]
        order = sorted(range(len(screened)), key=lambda k: (-cand_sue[k], k))[:h]
        run.pool = [screened[k] for k in order]
        run.pool_sue = [cand_sue[k] for k in order]
        stats["dialogue"] = {"turns": dialogue.turns, "retries": dialogue.retries, "parsed_items": dialogue.parsed,
                             "empty_replies": dialogue.empty_replies, "dropped": dict(sorted(dialogue.dropped.items())),
                             "label_counts": _counts(it.label for it in dialogue.items)}
        stats["pool_before_screening"] = len(candidates)
        stats["pool_screened"] = len(screened)
        stats["pool_after_screening"] = len(run.pool)
        stats["h"] = len(run.pool)
        stats["pool_label_counts"] = _counts(pr.demos[0][1] for pr in run.pool)
        run.calls["stage_a"], run.seconds["stage_a"] = meter.read()
        if not run.pool:
            ctx.log("DP2O: the dialogue produced no usable demonstration; keeping the starting prompt")
            stats["error"] = "empty pool"
            return ctx.initial
        ctx.log(f"DP2O stage A: {len(candidates)} candidates, {len(screened)} screened, pool of {len(run.pool)}")

        # ---------------- Stage B ----------------
        meter = _Meter(ctx.evaluator)
        gold_train, gold_dev = self._gold(train, labels), self._gold(dev, labels)
        train_table = np.stack([evaluate(pr, train, "train") for pr in run.pool])   # (h, N, C)
        dev_table = np.stack([evaluate(pr, dev, "dev") for pr in run.pool])         # (h, D, C)
        run.dev_table = dev_table
        initial_dev = evaluate(ctx.initial, dev, "dev")
        pool_dev_acc = accuracy(dev_table, gold_dev)
        run.best_index = int(np.argmax(pool_dev_acc))  # ties: the higher-SUE prompt
        pool_sue_probs = np.stack([cand_probs[k] for k in order])
        correlation = {"pool": self._correlations(pool_sue_probs, sue_gold, pool_dev_acc, run.pool_sue)}
        if p["dev_all_candidates"] and screened:
            all_dev = np.stack([evaluate(c, dev, "dev") for c in screened])
            correlation["all_screened"] = self._correlations(np.stack(cand_probs), sue_gold,
                                                             accuracy(all_dev, gold_dev), cand_sue)
        stats["sue_dev_spearman"] = correlation
        tables_calls, tables_seconds = meter.read()

        t_embed = time.perf_counter()
        embedder = run.embedder = self._embedder(ctx, train)
        train_states = embedder.embed([e.input for e in train])
        dev_states = embedder.embed([e.input for e in dev])
        run.pool_embeddings = embedder.embed([pr.demos[0][0] for pr in run.pool])
        embed_seconds = time.perf_counter() - t_embed

        def dev_score(policy: PolicyNet) -> tuple:
            pi = policy.probs(dev_states)
            g = float((inference.greedy(pi, dev_table) == gold_dev).mean())
            e = float((inference.ensemble(pi, dev_table, p["top_k"]) == gold_dev).mean())
            return (g, e)

        rewards = reward(train_table, gold_train, p["reward_margin"], p["reward_entropy"])  # (h, N)
        fingerprint = self._fingerprint(run.pool, embedder.identity, train, dev)
        stored = ctx.load_artifact(ARTIFACT)
        t_train = time.perf_counter()
        # The training generator is drawn from ctx.rng whether or not training is replayed, so the
        # run's random stream is the same on resume.
        train_rng = np.random.default_rng(int(ctx.rng.integers(2 ** 63)))
        if stored and stored.get("fingerprint") == fingerprint:
            run.policy = PolicyNet.from_dict(stored["policy"])
            stats["policy"] = dict(stored.get("training", {}), reused=True)
        else:
            result = train_policy(train_states, rewards, train_rng, hidden=p["hidden"], episodes=p["episodes"],
                                  lr=p["lr"], eps=p["adam_eps"], weight_decay=p["weight_decay"],
                                  entropy_coef=p["entropy_coef"], reward_norm=p["reward_norm"],
                                  normalize_states=p["normalize_states"], dev_score=dev_score)
            # Keep exactly what is stored (7 significant digits), so predictions after the run
            # match the reported numbers.
            run.policy = PolicyNet.from_dict(result.policy.to_dict())
            curve = result.curve
            training = {"best_episode": result.best_episode, "best_dev": list(result.best_score),
                        "parameters": result.policy.n_params,
                        "reward_first": curve[0]["reward"] if curve else None,
                        "reward_last": curve[-1]["reward"] if curve else None,
                        "curve_every_10": [{k: round(v, 4) for k, v in pt.items()} for pt in curve[::10]]}
            stats["policy"] = dict(training, reused=False)
            ctx.save_artifact(ARTIFACT, {
                "version": 1, "fingerprint": fingerprint, "labels": list(labels),
                "pool": [pr.to_dict() for pr in run.pool], "pool_sue": run.pool_sue,
                "best_index": run.best_index, "encoder": embedder.spec(), "policy": run.policy.to_dict(),
                "top_k": p["top_k"], "inference": p["inference"], "training": training})
        train_seconds = time.perf_counter() - t_train

        pi_dev = run.policy.probs(dev_states)
        sim_dev = inference.nearest(dev_states, run.pool_embeddings)
        run.dev_accuracy = {
            "initial": float(accuracy(initial_dev, gold_dev)),
            "best_single": float(pool_dev_acc[run.best_index]),
            "similarity": float((inference.chosen_predictions(sim_dev, dev_table) == gold_dev).mean()),
            "policy_greedy": float((inference.greedy(pi_dev, dev_table) == gold_dev).mean()),
            "policy_ensemble": float((inference.ensemble(pi_dev, dev_table, p["top_k"]) == gold_dev).mean()),
        }
        stats["dev_accuracy"] = {k: round(v, 4) for k, v in run.dev_accuracy.items()}
        stats["pool"] = [{"id": pr.id, "label": pr.demos[0][1], "sue": round(s, 4),
                          "dev_accuracy": round(float(a), 4), "demo": pr.demos[0][0]}
                         for pr, s, a in zip(run.pool, run.pool_sue, pool_dev_acc)]
        stats["encoder"] = {"kind": embedder.kind, "identity": embedder.identity,
                            "dim": int(train_states.shape[1]), "embedding_calls": embedder.calls,
                            "embedding_cached": embedder.cached}
        run.calls["stage_b"], run.seconds["stage_b"] = meter.read()
        run.seconds["stage_b_tables"] = tables_seconds
        run.seconds["stage_b_embeddings"] = round(embed_seconds, 3)
        run.seconds["stage_b_training"] = round(train_seconds, 3)
        run.calls["stage_b_tables"] = tables_calls
        ctx.log(f"DP2O stage B: dev accuracy {stats['dev_accuracy']}")
        return run.pool[run.best_index]

    @staticmethod
    def _correlations(probs: np.ndarray, gold: np.ndarray, dev_acc: np.ndarray,
                      sue_values: Sequence[float]) -> dict[str, Any]:
        """Spearman of dev accuracy with SUE (as used) and with SUE's parts (free: same tables)."""
        variants = {"sue": np.asarray(sue_values),
                    "supervised_only": sue(probs, gold, SueWeights(1.0, 0.0, 0.0)),
                    "unsupervised_only": sue(probs, gold, SueWeights(0.0, 1.0, 0.0)),
                    "with_global": sue(probs, gold, SueWeights(10.0, 6.5, 6.5)),
                    "confidence_bonus": sue(probs, gold, SueWeights(10.0, -6.5, 0.0))}
        out: dict[str, Any] = {"n": int(len(dev_acc))}
        for name, values in variants.items():
            rho = spearman(values, dev_acc)
            out[name] = None if rho is None else round(rho, 4)
        return out

    def _fingerprint(self, pool: Sequence[Prompt], encoder: str, train: Sequence[Example],
                     dev: Sequence[Example]) -> str:
        keys = ("hidden", "episodes", "lr", "adam_eps", "weight_decay", "entropy_coef", "reward_margin",
                "reward_entropy", "reward_norm", "normalize_states", "top_k")
        blob = json.dumps({"pool": [pr.id for pr in pool], "encoder": encoder,
                           "train": [e.id for e in train], "dev": [e.id for e in dev],
                           "params": {k: self.params[k] for k in keys}}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- after the search ----------------------------------------------------------------------------------
    def heldout_report(self, ctx: Context, evaluator: Evaluator, test_examples: Sequence[Example]) -> dict:
        """Test accuracy of the five variants (starting prompt, best single pool prompt by dev,
        nearest-by-embedding baseline, policy greedy, policy top-k ensemble); calls not charged."""
        run = self.run_state
        if run is None:
            return {}
        report: dict[str, Any] = {
            "pool_before_screening": ctx.stats.get("dp2o", {}).get("pool_before_screening"),
            "pool_after_screening": len(run.pool), "h": len(run.pool),
            "dev_accuracy": {k: round(v, 4) for k, v in run.dev_accuracy.items()},
        }
        if run.policy is None or not test_examples:
            report["calls"], report["seconds"] = run.calls, run.seconds
            report["completed"] = False
            return {"dp2o": report}
        meter = _Meter(evaluator)
        task: ChoiceTask = ctx.task  # type: ignore[assignment]
        test = list(test_examples)
        gold = self._gold(test, run.labels)
        states = run.embedder.embed([e.input for e in test])
        pi = run.policy.probs(states)
        sim = inference.nearest(states, run.pool_embeddings)
        best = np.full(len(test), run.best_index)
        need = inference.needed_pairs(pi, self.params["top_k"], [sim, best])
        table = self._fill(task, evaluator, run.pool, test, need, len(run.labels))
        initial = evaluator.run_task(task, ctx.initial, test, charge=False)
        acc = {
            "initial": float(np.mean(initial.scores)),
            "best_single": float((inference.chosen_predictions(best, table) == gold).mean()),
            "similarity": float((inference.chosen_predictions(sim, table) == gold).mean()),
            "policy_greedy": float((inference.greedy(pi, table) == gold).mean()),
            "policy_ensemble": float((inference.ensemble(pi, table, self.params["top_k"]) == gold).mean()),
        }
        calls, seconds = meter.read()
        report["test_accuracy"] = {k: round(v, 4) for k, v in acc.items()}
        report["calls"] = dict(run.calls, inference=calls)
        report["seconds"] = dict(run.seconds, inference=seconds)
        report["encoder"] = run.embedder.kind
        report["top_k"] = self.params["top_k"]
        report["completed"] = True
        return {"dp2o": report}

    @staticmethod
    def _fill(task: ChoiceTask, evaluator: Evaluator, pool: Sequence[Prompt], examples: Sequence[Example],
              need: dict[int, list[int]], n_labels: int) -> np.ndarray:
        """Class probabilities of the needed (prompt, example) pairs, uncharged; NaN elsewhere."""
        table = np.full((len(pool), len(examples), n_labels), np.nan)
        for j, rows in need.items():
            result = evaluator.run_task(task, pool[j], [examples[i] for i in rows], charge=False)
            for i, resp in zip(rows, result.responses):
                table[j, i] = task.probabilities(resp)  # type: ignore[arg-type]
        return table

    def predict(self, ctx: Context, best: Prompt, examples: Sequence[Example]) -> list[dict[str, Any]]:
        """Per-input prompt selection with the stored policy (falls back to the best prompt)."""
        stored = ctx.load_artifact(ARTIFACT)
        if not stored:
            return super().predict(ctx, best, examples)
        task: ChoiceTask = ctx.task  # type: ignore[assignment]
        pool = [Prompt.from_dict(d) for d in stored["pool"]]
        policy = PolicyNet.from_dict(stored["policy"])
        embedder = encoder_from_spec(stored["encoder"], ctx.evaluator)
        labels = list(stored["labels"])
        top_k = int(stored.get("top_k", self.params["top_k"]))
        examples = [replace(e, choices=tuple(labels)) for e in examples]
        pi = policy.probs(embedder.embed([e.input for e in examples]))
        table = self._fill(task, ctx.evaluator, pool, examples, inference.needed_pairs(pi, top_k), len(labels))
        greedy = inference.greedy(pi, table)
        ens = inference.ensemble(pi, table, top_k)
        mode = stored.get("inference", self.params["inference"])
        out = []
        for i, ex in enumerate(examples):
            top = inference.top_prompts(pi[i:i + 1], top_k)[0]
            out.append({
                "input": ex.input,
                "prediction": labels[int(ens[i] if mode == "ensemble" else greedy[i])],
                "greedy_prediction": labels[int(greedy[i])], "ensemble_prediction": labels[int(ens[i])],
                "mode": mode, "prompt_id": pool[int(top[0])].id, "demo": list(pool[int(top[0])].demos[0]),
                "policy_top": [[pool[int(j)].id, round(float(pi[i, j]), 4)] for j in top],
            })
        return out


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))
