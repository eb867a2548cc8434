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
from promptgym.optimizers import budget
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.dp2o import inference
from promptgym.optimizers.dp2o.dialogue import DialogueResult, run_dialogue
from promptgym.optimizers.dp2o.policy import PolicyNet, train_policy
from promptgym.optimizers.dp2o.scoring import SueWeights, accuracy, reward, spearman, sue
from promptgym.optimizers.encoders import Encoder, ModelEncoder, TfidfEncoder, encoder_from_spec
from promptgym.optimizers.params import UNSTATED, Param
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask

ARTIFACT = "dp2o"
EXPECTED_KEEP_RATE = 0.7  # share of requested dialogue items assumed to survive parsing (planning only)
DEV_FLOOR = 20  # dev examples the plan keeps at least (fewer only when the run has fewer)


def demo_prompt(base: Prompt, text: str, label: str) -> Prompt:
    """A pool item: the starting prompt with one labelled demonstration."""
    return replace(base, demos=((text, label),))


def plan_budget(limit: float, n_train: int, n_dev: int, n_labels: int, p: dict[str, Any],
                ctx: Context | None = None) -> dict[str, int]:
    """Scale Stage A/B down (never up) so that the expected number of model calls fits ``limit``.

    Cost model (calls): seed scoring ``n_seed x S`` + dialogue turns + screening
    ``candidates x S`` + Stage B tables ``h x (N - S + D)`` + the starting prompt on dev ``D``
    (+ ``candidates x D`` with ``dev_all_candidates``). Reduced in this order: rounds, dev examples
    (to 20: the run's dev split is sized for final selection, up to 100 examples, and validating
    every pool prompt on all of it would leave a default budget nothing for the pool), seed
    candidates, SUE examples, seeds, pool size h. With ``ctx`` the parameters cut to fit are
    recorded (``budget.note``), so the run prints them before it starts.
    """
    size = min(p["sue_examples"] or n_train, n_train)
    n_seed = min(p["seed_candidates"] or n_train, n_train)
    start = {"rounds": max(1, int(p["rounds"])), "seed_candidates": n_seed, "seeds": min(p["seeds"], n_seed),
             "sue_examples": size, "pool_size": max(1, int(p["pool_size"])),
             "dev_examples": min(p.get("dev_examples") or n_dev, n_dev)}

    def cost(plan: dict[str, int]) -> float:
        rounds, n_seed, m, size, h, n_dev = (plan[k] for k in start)
        exchanges = rounds * max(1, m - min(p["window"], m) + 1) * n_labels  # one per label
        turns = exchanges * (1 + p["dialogue_retries"])  # worst case: every exchange re-asked
        cands = math.ceil(exchanges * EXPECTED_KEEP_RATE)
        dev_rows = cands if p["dev_all_candidates"] else min(h, cands)
        return (n_seed * size + turns + cands * size + min(h, cands) * (n_train - size)
                + dev_rows * n_dev + n_dev)

    plan = budget.fit(start, cost, limit, [
        budget.lower("rounds"),
        budget.lower("dev_examples", min(n_dev, DEV_FLOOR), lambda v: v * 2 // 3),
        budget.lower("seed_candidates", lambda plan: max(plan["seeds"], 8), lambda v: v * 2 // 3),
        budget.lower("sue_examples", 8, lambda v: v * 3 // 4),
        budget.lower("seeds", 3),
        budget.lower("seed_candidates", lambda plan: plan["seeds"]),
        budget.lower("pool_size", 2),
        budget.lower("sue_examples", 2)], ctx=ctx, names={k: k for k in start})
    return dict(plan, expected_calls=int(cost(plan)))


@dataclass
class _Run(State):
    """One run: Stage A leaves the screened pool for Stage B; Stage B what the held-out report and
    predictions read."""

    labels: tuple[str, ...] = ()
    train: list[Example] = field(default_factory=list)
    dev: list[Example] = field(default_factory=list)
    plan: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    stage: str = "A"
    scored: set[tuple[str, str]] = field(default_factory=set)  # distinct (prompt, example) scorings
    generated: int = 0  # dialogue turns
    sue_set: list[Example] = field(default_factory=list)
    sue_gold: np.ndarray | None = None
    screened: list[Prompt] = field(default_factory=list)
    cand_probs: list[np.ndarray] = field(default_factory=list)
    cand_sue: list[float] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # screened candidates in the pool, best SUE first
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
    searches_on_dev = True
    parameters = {
        # Stage A: seeds, dialogue, screening
        "seeds": Param(8, "m: top-SUE training examples shown in the dialogue", low=1, paper=UNSTATED),
        "rounds": Param(3, "conversations; each has m - window + 1 turns", low=1, paper=UNSTATED),
        "window": Param(3, "seeds shown per turn (3: m - 2 turns per round, as the paper)", low=1),
        "pool_size": Param(15, "h: prompts kept after SUE screening (the released code's)", low=1),
        "sue_examples": Param(None, "training examples SUE is measured on (null: all)", kind=int,
                              low=1, optional=True),
        "dev_examples": Param(None, "dev examples the pool and the policy are validated on (null: all the "
                              "run's dev split, fewer when the budget cannot pay for it)", kind=int, low=1,
                              optional=True, paper=UNSTATED),
        "seed_candidates": Param(None, "training examples scored as possible seeds (null: all)",
                                 kind=int, low=1, optional=True),
        "sue_supervised": Param(10.0, "SUE weight of the mean margin (reconstructed)", paper=UNSTATED),
        "sue_unsupervised": Param(6.5, "SUE weight of the mean normalised entropy (reconstructed)",
                                  paper=UNSTATED),
        "sue_global": Param(0.0, "SUE weight of GlobalE", paper=UNSTATED),
        "temperature": Param(0.8, "sampling temperature of the dialogue", low=0, paper=UNSTATED),
        "dialogue_retries": Param(2, "re-asks of a dropped exchange (fresh, hotter sample)", low=0,
                                  paper=UNSTATED),
        "top_p": Param(0.95, "nucleus sampling of the dialogue", low=0, high=1),
        "max_tokens": Param(80, "token cap of one written input text", low=1, paper=UNSTATED),
        "max_history_chars": Param(4000, "dialogue history is trimmed to this length", low=1,
                                   paper=UNSTATED),
        "dev_fraction": Param(0.3, "share of train carved out as dev when the run has no dev split",
                              low=0, high=1, paper=UNSTATED),
        "dev_all_candidates": Param(False, "also score every screened candidate on dev (SUE check)",
                                    paper=UNSTATED),
        # Stage B: states, policy, REINFORCE
        "encoder": Param("auto", "state encoder of the inputs: the task model's embeddings (model; auto "
                         "when the task model embeds) or TF-IDF", choices=("auto", "model", "tfidf"),
                         paper=UNSTATED),
        "hidden": Param(600, "hidden units of the policy network", low=1),
        "episodes": Param(200, "REINFORCE episodes", low=1),
        "lr": Param(1e-3, "AdamW learning rate (decayed linearly to 0)", low=0),
        "adam_eps": Param(1e-5, "AdamW epsilon", low=0),
        "weight_decay": Param(0.01, "AdamW decoupled weight decay", low=0),
        "entropy_coef": Param(0.059, "weight of the policy's entropy bonus", low=0),
        "reward_margin": Param(10.0, "reward weight of the margin p_y - max p_other"),
        "reward_entropy": Param(6.5, "reward weight of the normalised entropy (< 0 flips it)"),
        "reward_norm": Param("batch", "reward standardisation", choices=("batch", "running", "none"),
                             paper=UNSTATED),
        "normalize_states": Param(True, "z-normalise states with the training states' statistics"),
        # Inference
        "top_k": Param(10, "prompts in the top-k ensemble", low=1),
        "inference": Param("ensemble", "what predict() answers with", choices=("ensemble", "greedy")),
    }

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
        for example, resp in zip(result.examples, result.responses):
            if not isinstance(resp, OptionScores):
                raise PromptgymError("method 'dp2o' needs option log-probabilities from the task model")
            rows.append(task.probabilities(resp, task.aligned(example, result.prior)))  # calibrated, if the task is
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
    def setup(self, ctx: Context) -> _Run:
        self._check_task(ctx)
        labels = _label_set(list(ctx.train) + list(ctx.dev))
        train, dev = self._splits(ctx)
        plan = plan_budget(budget.planning_budget(ctx), len(train), len(dev), len(labels), self.params, ctx)
        dev = dev[:plan["dev_examples"]]  # a seeded split already: its first examples are a random subset
        run = _Run(labels=labels, train=train, dev=dev, plan=plan)
        run.stats = ctx.stats["dp2o"] = {"train_size": len(train), "dev_size": len(dev),
                                         "dev_carved_from_train": not ctx.dev, "plan": plan}
        return run

    def step(self, ctx: Context, run: _Run) -> None:
        """Two steps: Stage A (pool), then Stage B (tables, states, policy)."""
        if run.stage == "A":
            self._stage_a(ctx, run)
            run.stage = "B"
            if not run.pool:
                run.finished = "done"
        else:
            self._stage_b(ctx, run)
            run.finished = "done"

    def result(self, ctx: Context, run: _Run) -> Prompt:
        if run.finished == "done":
            return run.pool[run.best_index] if run.pool else ctx.initial
        return super().result(ctx, run)  # stopped before the end: the best on dev so far

    def _scorer(self, ctx: Context, run: _Run):
        """Class probabilities of a prompt on examples; counts the distinct (prompt, example)
        scorings, what a fresh run would be charged (the budget meter is not: see ``budget``)."""
        task: ChoiceTask = ctx.task  # type: ignore[assignment]

        def evaluate(prompt: Prompt, examples: Sequence[Example], split: str) -> np.ndarray:
            run.scored.update((prompt.id, e.id) for e in examples)
            return self._probs(ctx.evaluate(prompt, examples, split=split), task)

        return evaluate

    def _stage_a(self, ctx: Context, run: _Run) -> None:
        p, plan, stats, train, dev, labels = self.params, run.plan, run.stats, run.train, run.dev, run.labels
        evaluate = self._scorer(ctx, run)
        meter = _Meter(ctx.evaluator)
        sue_weights = SueWeights(p["sue_supervised"], p["sue_unsupervised"], p["sue_global"])
        n = len(train)
        sue_set = run.sue_set = [train[i] for i in sorted(ctx.rng.choice(n, size=plan["sue_examples"], replace=False))]
        sue_gold = run.sue_gold = self._gold(sue_set, labels)
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
        shown = [replace(e, input=ctx.shown(e.input, p["window"])) for e in seeds]  # a long input cut to fit
        size, n_dev, h = len(sue_set), len(dev), plan["pool_size"]

        def need(screening: dict[str, int]) -> float:
            k = screening["screen"]
            dev_rows = k if p["dev_all_candidates"] else min(h, k)
            return k * size + min(h, k) * (n - size) + dev_rows * n_dev + n_dev

        spend = budget.PlannedSpend.of(ctx)
        spend.add(len(run.scored) + run.generated)  # distinct scorings and dialogue turns so far
        width = max(1, min(p["window"], len(shown)))
        round_turns = (len(shown) - width + 1) * len(labels) * (1 + p["dialogue_retries"])  # worst case

        def one_more(so_far: DialogueResult) -> bool:  # an empty dialogue: its pool's budget pays for more rounds
            return (so_far.rounds < plan["rounds"] + p["rounds"]
                    and spend.affords(so_far.turns + round_turns + int(need({"screen": 1}))))

        dialogue = run_dialogue(
            ctx, shown, ctx.initial.instruction, labels, label_word, rounds=plan["rounds"], window=p["window"],
            temperature=p["temperature"], top_p=p["top_p"], max_tokens=p["max_tokens"],
            max_history_chars=p["max_history_chars"], known_inputs=list(ctx.train) + list(ctx.dev),
            retries=p["dialogue_retries"], one_more=one_more)
        run.generated += dialogue.turns
        spend.add(dialogue.turns)
        candidates = [ctx.add(demo_prompt(ctx.initial, it.input, it.label),
                              [seed_prompts[s] for s in it.seeds], "dp2o:dialogue") for it in dialogue.items]
        # Screen as many candidates as the budget allows (a seeded subset when it cannot take all).
        n_screen = budget.fit({"screen": len(candidates)}, need, spend.left, [budget.lower("screen", 0)])["screen"]
        if n_screen < len(candidates):
            chosen = sorted(int(i) for i in ctx.rng.choice(len(candidates), size=n_screen, replace=False))
            screened = [candidates[i] for i in chosen]
        else:
            screened = candidates
        run.screened = screened
        cand_probs = run.cand_probs = [evaluate(c, sue_set, "sue") for c in screened]
        cand_sue = run.cand_sue = [float(sue(pr, sue_gold, sue_weights)) for pr in cand_probs]
        order = run.order = sorted(range(len(screened)), key=lambda k: (-cand_sue[k], k))[:h]
        run.pool = [screened[k] for k in order]
        run.pool_sue = [cand_sue[k] for k in order]
        stats["dialogue"] = {"rounds": dialogue.rounds, "turns": dialogue.turns, "retries": dialogue.retries,
                             "parsed_items": dialogue.parsed, "empty_replies": dialogue.empty_replies,
                             "dropped": dict(sorted(dialogue.dropped.items())),
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
            return
        ctx.log(f"DP2O stage A: {len(candidates)} candidates, {len(screened)} screened, pool of {len(run.pool)}")

    def _stage_b(self, ctx: Context, run: _Run) -> None:
        p, stats, train, dev, labels = self.params, run.stats, run.train, run.dev, run.labels
        sue_gold, screened, cand_probs, cand_sue, order = (run.sue_gold, run.screened, run.cand_probs,
                                                          run.cand_sue, run.order)
        evaluate = self._scorer(ctx, run)
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
        run: _Run | None = ctx.state
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
        # how often each pool prompt was the policy's greedy choice on the test inputs (the run page)
        report["policy_choices"] = np.bincount(pi.argmax(axis=1), minlength=len(run.pool)).tolist()
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
                table[j, i] = task.probabilities(resp, task.aligned(examples[i], result.prior))  # type: ignore[arg-type]
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
