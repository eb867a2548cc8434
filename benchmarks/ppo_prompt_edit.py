"""PPO (stable-baselines3) on the prompt-editing env, ``promptgym/PromptEdit-v0``: a TEMPERA-style
agent edits the task's instruction, demonstrations, label words and layout, rewarded by accuracy
on a batch of training examples (score difference per step).

    python benchmarks/ppo_prompt_edit.py --steps 2048      # the full run (hours on 2 cores)
    python benchmarks/ppo_prompt_edit.py --steps 64 --out /tmp/ppo-env.json   # a quick check

Needs ``pip install torch==2.13.0`` then ``pip install -e '.[rl]'`` (the dev install has both).
Embedded model, ``example:sentiment`` by default (the recorded result used
``bigbench:multiemo/all_sentence_en``, of which it is a 400-row sample). Writes the reward curve
(per-step rewards and scores, per-episode returns, model calls and wall time after each) to
``benchmarks/results/ppo-env.json`` and prints the best prompt found.

"Best prompt": among the prompts the agent reached, the ``--finalists`` with the highest mean
batch score are scored again, with the starting prompt, on every scoring example of the training
split (the same examples for all), and on a held-out test split the env never sees
(``--test-size``). Those last evaluations are not charged to the budget (as the runner's held-out
numbers); ``calls`` counts them apart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import torch

torch.set_num_threads(1)  # a shared 2-core machine; llama.cpp has its own threads

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402

from promptgym.envs import PromptEditEnv  # noqa: E402
from promptgym.tasks.prompt import Prompt  # noqa: E402


class CurveRecorder(gym.Wrapper):
    """Records every step (reward, score, action, calls, seconds) and every episode's return, and
    the batch scores of every prompt the agent reached."""

    def __init__(self, env: PromptEditEnv):
        super().__init__(env)
        self.started = time.perf_counter()
        self.steps: list[dict] = []
        self.episodes: list[dict] = []
        self.prompts: dict[str, tuple[Prompt, list[float]]] = {}
        self._return = 0.0
        self._length = 0

    def _seen(self, info: dict) -> None:
        prompt = Prompt.from_dict(info["prompt_full"])
        self.prompts.setdefault(prompt.id, (prompt, []))[1].append(info["score"])

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._return, self._length = 0.0, 0
        self._start = info["start_score"]
        if not info["budget_exhausted"]:
            self._seen(info)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += reward
        self._length += 1
        usage = self.env.unwrapped.usage()
        seconds = round(time.perf_counter() - self.started, 2)
        self.steps.append(dict(t=len(self.steps) + 1, action=info["action"], valid=info["valid"],
                               reward=round(float(reward), 6), score=info["score"], calls=usage["calls"],
                               cached_calls=usage["cached_calls"], seconds=seconds))
        if info["valid"] and info["action"] != "stop":
            self._seen(info)
        if terminated or truncated:
            self.episodes.append(dict(episode=len(self.episodes) + 1, ret=round(self._return, 6),
                                      length=self._length, start_score=self._start, final_score=info["score"],
                                      final_prompt=info["prompt"], stopped=bool(terminated),
                                      budget_exhausted=info["budget_exhausted"], calls=usage["calls"],
                                      seconds=seconds))
        return obs, reward, terminated, truncated, info


class StopOnBudget(BaseCallback):
    """Ends training once the env's budget is used up (its episodes would only truncate)."""

    def __init__(self, env: PromptEditEnv):
        super().__init__()
        self.env_ = env

    def _on_step(self) -> bool:
        return not self.env_.exhausted


def _plain(value):
    """numpy scalars as Python numbers in the JSON file."""
    return value.item() if hasattr(value, "item") else str(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=2048, help="PPO environment steps (rounded up to --n-steps)")
    ap.add_argument("--dataset", default="example:sentiment")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--budget", type=int, default=20000, help="hard cap on the env's model calls")
    ap.add_argument("--train-size", type=int, default=24, help="training split: demo pool + scoring examples")
    ap.add_argument("--test-size", type=int, default=50, help="held out, scored at the end only")
    ap.add_argument("--batch-size", type=int, default=8, help="examples each prompt is scored on per episode")
    ap.add_argument("--max-steps", type=int, default=6, help="edits per episode")
    ap.add_argument("--num-demos", type=int, default=2)
    ap.add_argument("--demo-pool", type=int, default=8)
    ap.add_argument("--n-steps", type=int, default=32, help="PPO rollout length")
    ap.add_argument("--finalists", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads (PROMPTGYM_THREADS); 1 on a shared machine, where 2 spin-wait")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ppo-env.json"))
    args = ap.parse_args()

    os.environ["PROMPTGYM_THREADS"] = str(args.threads)  # read when the model is loaded
    started = time.perf_counter()
    env = PromptEditEnv.from_spec(args.dataset, model=args.model, budget=args.budget, train_size=args.train_size,
                                  test_size=args.test_size, seed=args.seed, batch_size=args.batch_size,
                                  max_steps=args.max_steps, num_demos=args.num_demos, demo_pool=args.demo_pool)
    recorder = CurveRecorder(env)
    # TEMPERA's PPO settings where they fit one env on a small budget (lr 6e-4, entropy 0.01, GAE 0.95)
    model = PPO("MlpPolicy", recorder, n_steps=args.n_steps, batch_size=min(32, args.n_steps), n_epochs=4,
                learning_rate=6e-4, ent_coef=0.01, gamma=0.99, gae_lambda=0.95,
                policy_kwargs=dict(net_arch=[64, 64]), seed=args.seed, device="cpu", verbose=0)
    model.learn(total_timesteps=args.steps, callback=StopOnBudget(env))
    train_seconds = time.perf_counter() - started
    search = env.usage()

    # The best prompt: the finalists by mean batch score, re-scored with the start on the same examples.
    ranked = sorted(recorder.prompts.values(), key=lambda ps: -float(np.mean(ps[1])))
    finalists = [p for p, _ in ranked if p.id != env.initial.id][: args.finalists]
    rows = []
    for label, prompt in [("start", env.initial)] + [(f"finalist {i + 1}", p) for i, p in enumerate(finalists)]:
        train = env.evaluator.run_task(env.task, prompt, env.examples, charge=False).mean
        test = (env.evaluator.run_task(env.task, prompt, env.splits.test, charge=False).mean
                if env.splits.test else None)
        batch = recorder.prompts.get(prompt.id, (prompt, []))[1]
        form = dict(layout=prompt.layout.name, labels={k: w for k, w in prompt.verbalizers},
                    demos=[env.demo_pool.index(d) if d in env.demo_pool else d[0] for d in prompt.demos])
        rows.append(dict(prompt=label, format=form, batch_mean=float(np.mean(batch)) if batch else None, batch_scores=len(batch),
                         train=train, test=test, instruction=prompt.instruction, full=prompt.to_dict(),
                         text=env.prompt_text(prompt)))
    best = max(rows, key=lambda r: (r["train"], r["prompt"] == "start"))  # the start wins ties
    returns = [e["ret"] for e in recorder.episodes]
    out = dict(
        benchmark="ppo_prompt_edit", date=dt.datetime.now().isoformat(timespec="seconds"),
        machine=dict(cpus=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                     load=os.getloadavg()),
        args=vars(args), env=dict(actions=int(env.action_space.n), observation=int(env.observation_space.shape[0]),
                                  scoring_examples=len(env.examples), demo_pool=len(env.demo_pool)),
        ppo=dict(timesteps=int(model.num_timesteps), n_steps=args.n_steps),
        search=dict(calls=search["calls"], cached_calls=search["cached_calls"], budget_spent=search["budget_spent"],
                    seconds=round(train_seconds, 1), stopped_by_budget=env.exhausted),
        calls=env.usage()["calls"], seconds=round(time.perf_counter() - started, 1),
        episodes=recorder.episodes, steps=recorder.steps,
        returns=dict(n=len(returns), mean=float(np.mean(returns)) if returns else None,
                     first_half=float(np.mean(returns[: len(returns) // 2])) if len(returns) > 1 else None,
                     second_half=float(np.mean(returns[len(returns) // 2:])) if len(returns) > 1 else None),
        actions=dict(Counter(s["action"] for s in recorder.steps).most_common()),
        invalid_actions=sum(not s["valid"] for s in recorder.steps),
        distinct_prompts=len(recorder.prompts), finalists=rows, best=best["prompt"],
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=_plain))

    print(f"PPO: {model.num_timesteps} steps, {len(returns)} episodes, mean return {out['returns']['mean']}, "
          f"{search['calls']} model calls ({search['cached_calls']} cached) in {train_seconds:.0f} s"
          + (" (budget used up)" if env.exhausted else ""))
    print(f"{'prompt':12s} {'batch':>6s} {'train':>6s} {'test':>6s}  instruction")
    for r in rows:
        batch = "-" if r["batch_mean"] is None else f"{r['batch_mean']:.3f}"
        test = "-" if r["test"] is None else f"{r['test']:.3f}"
        print(f"{r['prompt']:12s} {batch:>6s} {r['train']:6.3f} {test:>6s}  {r['instruction']}")
        print(f"{'':34s}  layout {r['format']['layout']}, label words {r['format']['labels'] or 'as labels'}, "
              f"demos (pool index) {r['format']['demos']}")
    print(f"best prompt ({best['prompt']}):\n{best['text']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
