"""The prompt-editing Gymnasium env (``promptgym.envs``): both env checkers, every action kind on a
fixed prompt, the reward as the metric difference through the Evaluator (a replay costs nothing),
budget exhaustion as a clean truncation, seeding, the optional-dependency message, and (integration)
SB3 PPO for a few steps on the real embedded model.

Tests named ``scripted`` run on the deterministic scripted backend: logic only, no quality claim."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest

from promptgym.envs import ENV_ID, PromptEditEnv
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.grips import add, delete, phrases, swap
from promptgym.tasks.prompt import LAYOUTS, Prompt
from promptgym.tasks.task import ChoiceTask

from support import LABELS, make_examples

SENTENCE = "Classify the sentiment of the text as positive or negative."


@pytest.fixture
def make_env(tmp_path):
    def build(budget: int | None = None, backend: ScriptedBackend | None = None, train: int = 20,
              initial: str | Prompt = SENTENCE, **kwargs) -> PromptEditEnv:
        backend = backend or ScriptedBackend()
        evaluator = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path / 'cache.sqlite'}"),
                              Budget(budget))
        kwargs.setdefault("batch_size", 4)
        return PromptEditEnv(evaluator, ChoiceTask(), make_examples(train), initial, **kwargs)
    return build


def act(env: PromptEditEnv, name: str):
    return env.step(env.action_names.index(name))


def test_scripted_env_passes_gymnasium_and_sb3_checkers(make_env):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make_env(num_demos=2, demo_pool=4, label_words={"positive": ["good"]}, paraphrase=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
        sb3_check_env(env, warn=True)
    assert not [w for w in caught if "spec" not in str(w.message)], [str(w.message) for w in caught]


def test_scripted_env_is_registered(make_env):
    base = make_env()
    env = gymnasium.make(ENV_ID, evaluator=base.evaluator, task=base.task, train=make_examples(12),
                         initial=SENTENCE, batch_size=3)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["prompt"] == SENTENCE
    assert env.unwrapped.spec.id == ENV_ID


def test_scripted_action_list_is_fixed_and_named(make_env):
    env = make_env(num_demos=2, demo_pool=3, max_phrases=4, add_slots=2)
    names = env.action_names
    assert env.action_space.n == len(names) == len(set(names))
    assert names[0] == "stop"
    assert [n for n in names if n.startswith("del:")] == [f"del:{i}" for i in range(4)]
    assert len([n for n in names if n.startswith("swap:")]) == 6
    assert len([n for n in names if n.startswith("add:")]) == 2 * 5  # slots x positions -1..3
    assert not any(n.startswith("sub:") for n in names)  # no paraphrase without paraphrase=True
    assert len([n for n in names if "<-" in n and "<->" not in n]) == 2 * 3 and "demo:0<->1" in names
    assert len([n for n in names if n.startswith("label:")]) == 4 * 3  # every label in 3 cases
    assert [n for n in names if n.startswith("layout:")] == [f"layout:{x}" for x in LAYOUTS]
    # the observation: parts in order, covering the whole Box
    parts = env.observation_parts
    assert list(parts) == ["words", "shape", "layout", "labels", "demos", "add_pool", "scores", "progress"]
    assert parts["progress"].stop == env.observation_space.shape[0]
    assert parts["demos"].stop - parts["demos"].start == 2 * 3


def test_scripted_instruction_edits(make_env):
    env = make_env(extra_phrases=["carefully"])
    env.reset(seed=0)
    assert phrases(SENTENCE) == ["Classify", "the sentiment", "of the text", "as positive", "or", "negative"]
    _, _, _, _, info = act(env, "del:1")
    assert info["valid"] and info["prompt"] == delete(SENTENCE, 1)
    assert env.add_pool() == ["carefully", "the sentiment"]  # extra phrases first, then deletions
    current = info["prompt"]
    _, _, _, _, info = act(env, "swap:0,2")
    assert info["prompt"] == swap(current, 0, 2)
    current = info["prompt"]
    _, _, _, _, info = act(env, "add:1@-1")  # the deleted phrase back, at the start
    assert info["prompt"] == add(current, "the sentiment", -1)
    assert env.add_pool() == ["carefully"]  # a re-added deletion leaves the pool (GRIPS's tracker)
    current = info["prompt"]
    _, _, _, _, info = act(env, "add:0@0")
    assert info["prompt"] == add(current, "carefully", 0)
    assert env.add_pool() == ["carefully"]  # extra phrases stay available


def test_scripted_paraphrase_asks_the_optimizer_model(make_env):
    backend = ScriptedBackend(reply=lambda request: "the feeling")
    env = make_env(backend=backend, paraphrase=True, budget=100)
    env.reset(seed=0)
    spent = env.evaluator.budget.spent
    _, _, _, _, info = act(env, "sub:1")
    assert info["valid"] and info["prompt"] == "Classify the feeling of the text as positive or negative."
    assert env.evaluator.budget.spent == spent + 1 + 4  # the optimizer call, then the batch


def test_scripted_demo_edits(make_env):
    env = make_env(num_demos=2, demo_pool=4)
    _, info = env.reset(seed=0)
    pool = env.demo_pool
    assert len(pool) == 4 and env.initial.demos == tuple(pool[:2])
    assert not {e.input for e in env.batch} & {d[0] for d in pool}  # demos are never scored
    _, _, _, _, info = act(env, "demo:0<-3")
    assert env.prompt.demos == (pool[3], pool[1])
    act(env, "demo:0<-1")  # pool[1] sits in slot 1: the two slots exchange
    assert env.prompt.demos == (pool[1], pool[3])
    act(env, "demo:0<->1")
    assert env.prompt.demos == (pool[3], pool[1])
    assert pool[3][0] in env.prompt_text()


def test_scripted_initial_demos_are_kept_and_pooled(make_env):
    start = Prompt(SENTENCE, demos=(("A fine day.", "positive"),))
    env = make_env(initial=start, demo_pool=3)
    assert env.num_demos == 1 and env.demo_pool[0] == ("A fine day.", "positive") and len(env.demo_pool) == 3
    assert env.initial == start


def test_scripted_label_and_layout_edits(make_env):
    env = make_env(label_words={"positive": ["good"]})
    env.reset(seed=0)
    act(env, "label:positive=good")
    assert env.prompt.verbalize("positive") == "good" and env.prompt.verbalize("negative") == "negative"
    act(env, "case:upper")
    assert [env.prompt.verbalize(label) for label in LABELS] == ["GOOD", "NEGATIVE", "NEUTRAL", "AMBIVALENT"]
    _, _, _, _, info = act(env, "layout:plain")
    assert env.prompt.layout == LAYOUTS["plain"] and info["prompt_full"]["layout"]["name"] == "plain"
    assert info["prompt_text"].endswith("Answer:")
    obs = env._observation()
    layout = obs[env.observation_parts["layout"]]
    assert layout[list(LAYOUTS).index("plain")] == 1.0 and layout.sum() == 1.0


def test_scripted_invalid_actions_are_noops(make_env):
    env = make_env(max_phrases=10, invalid_penalty=-0.5)
    env.reset(seed=0)
    calls = env.evaluator.usage.calls
    for name in ("del:9", "swap:2,8", "add:0@-1", "layout:chat", "label:positive=positive"):
        _, reward, terminated, truncated, info = act(env, name)
        assert not info["valid"] and reward == -0.5 and info["prompt"] == SENTENCE, name
        if truncated:
            break
    assert env.evaluator.usage.calls == calls  # nothing scored


def test_scripted_action_masks_match_what_applies(make_env):
    env = make_env(num_demos=2, demo_pool=3)
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask.shape == (env.action_space.n,) and mask[0]
    valid = {n for n, ok in zip(env.action_names, mask) if ok}
    assert "del:5" in valid and "del:6" not in valid and "swap:0,5" in valid and "swap:0,6" not in valid
    assert not any(n.startswith("add:") for n in valid)  # nothing deleted yet
    assert "layout:chat" not in valid and "layout:plain" in valid and "demo:0<->1" in valid
    act(env, "del:0")
    mask = env.action_masks()
    assert mask[env.action_names.index("add:0@-1")]
    for a in np.flatnonzero(~mask):  # a masked-out action is exactly a no-op
        assert env.apply(env.prompt, int(a)) is None


def test_scripted_reward_is_the_metric_difference_and_a_replay_costs_nothing(make_env):
    env = make_env(budget=1000, label_words={"negative": ["bad"]})
    _, info = env.reset(seed=3)
    fresh = Evaluator(ScriptedBackend(), ScriptedBackend(), ResponseCache("sqlite:///:memory:"))
    assert info["score"] == fresh.run_task(env.task, env.initial, env.batch).mean
    plan = ["layout:chat-options", "label:negative=bad", "del:0", "swap:1,2"]
    rewards, scores, previous = [], [], info["score"]
    for name in plan:
        _, reward, _, _, info = act(env, name)
        expected = fresh.run_task(env.task, env.prompt, env.batch).mean
        assert info["score"] == pytest.approx(expected)
        assert reward == pytest.approx(expected - previous)
        rewards.append(reward)
        scores.append(info["score"])
        previous = expected
    assert sum(rewards) == pytest.approx(scores[-1] - info["start_score"])  # the return telescopes
    spent, calls = env.evaluator.budget.spent, env.evaluator.usage.calls
    assert spent == calls <= 4 * (1 + len(plan))
    env.reset(seed=3)  # the same batch, the same edits: every answer from the cache
    replay = [act(env, name)[1] for name in plan]
    assert replay == rewards
    assert env.evaluator.budget.spent == spent and env.evaluator.usage.calls == calls
    assert env.usage()["cached_calls"] >= 4 * (1 + len(plan))


def test_scripted_budget_exhaustion_truncates_cleanly(make_env):
    env = make_env(budget=10, batch_size=4)  # the start (4) and one edit (4), then 2 left
    _, info = env.reset(seed=0)
    _, _, terminated, truncated, info = act(env, "layout:plain")
    assert info["valid"] and not (terminated or truncated)
    _, reward, terminated, truncated, info = act(env, "layout:chat-options")  # needs 4, has 2
    assert truncated and not terminated and reward == 0.0 and info["budget_exhausted"]
    assert env.prompt.layout.name == "plain"  # the unscored edit is dropped
    assert env.evaluator.budget.spent == 10  # never above the limit
    obs, info = env.reset(seed=1)  # a new batch that cannot be scored
    assert info["budget_exhausted"] and obs[env.observation_parts["progress"]][1] == 1.0
    _, reward, terminated, truncated, info = act(env, "del:0")
    assert truncated and reward == 0.0 and env.evaluator.budget.spent == 10
    env.reset(seed=0)  # the first batch is cached: its episode runs again for free
    _, _, _, truncated, info = act(env, "layout:plain")
    assert not truncated and info["valid"] and env.evaluator.budget.spent == 10


def test_scripted_episode_ends_by_stop_or_max_steps(make_env):
    env = make_env(max_steps=3)
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = act(env, "stop")
    assert terminated and not truncated and reward == 0.0
    env.reset(seed=0)
    flags = [act(env, name)[2:4] for name in ("layout:plain", "layout:chat", "layout:plain")]
    assert flags == [(False, False), (False, False), (False, True)]


def test_scripted_final_reward_and_custom_score(make_env):
    env = make_env(max_steps=2, reward="final", reward_scale=100,
                   score_fn=lambda result: sum(p == "positive" for p in result.predictions) / len(result.predictions))
    _, info = env.reset(seed=0)
    _, r1, _, _, info = act(env, "layout:plain")
    _, r2, _, truncated, info = act(env, "case:upper")
    assert r1 == 0.0 and truncated and r2 == pytest.approx(100 * info["score"])
    expected = [p == "positive" for p in env.evaluator.run_task(env.task, env.prompt, env.batch).predictions]
    assert info["score"] == pytest.approx(sum(expected) / len(expected))


def test_scripted_reset_is_seeded(make_env):
    env = make_env(train=30)
    obs_a, _ = env.reset(seed=5)
    batch_a = [e.id for e in env.batch]
    obs_b, _ = env.reset(seed=5)
    assert [e.id for e in env.batch] == batch_a and np.array_equal(obs_a, obs_b)
    batches = set()
    for seed in range(6):
        env.reset(seed=seed)
        batches.add(tuple(e.id for e in env.batch))
    assert len(batches) > 1
    fixed = make_env(train=30, fixed_batch=True)
    fixed.reset(seed=1)
    first = [e.id for e in fixed.batch]
    fixed.reset(seed=2)
    assert [e.id for e in fixed.batch] == first


def test_scripted_observation_reflects_the_prompt(make_env):
    env = make_env(num_demos=1, demo_pool=2)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    words = obs[env.observation_parts["words"]]
    assert np.linalg.norm(words) == pytest.approx(1.0)
    obs2, *_ = act(env, "del:1")
    assert not np.array_equal(words, obs2[env.observation_parts["words"]])
    assert obs2[env.observation_parts["add_pool"]][0] == 1.0
    assert obs2[env.observation_parts["progress"]][0] == pytest.approx(1 / env.max_steps)


def test_import_promptgym_needs_no_gymnasium():
    code = ("import sys; sys.modules['gymnasium'] = None; sys.modules['stable_baselines3'] = None\n"
            "import promptgym, promptgym.optimizers.grips, promptgym.api\n"
            "try:\n    import promptgym.envs\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "promptgym.envs needs gymnasium: pip install 'promptgym[envs]'"


@pytest.mark.integration
def test_ppo_runs_on_the_embedded_model(monkeypatch):
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    # llama.cpp on one thread: on a loaded 2-core machine two threads spin-wait on each other
    # (measured here: about 6 calls a minute on 2 threads at load 9, over 60 on 1); only applies if
    # this process has not loaded the model yet.
    monkeypatch.setenv("PROMPTGYM_THREADS", "1")
    budget = 200
    env = PromptEditEnv.from_spec("example:sentiment", budget=budget, train_size=6, seed=0, batch_size=2,
                                  max_steps=4, num_demos=1, demo_pool=2)
    rewards: list[float] = []

    class Record(gymnasium.Wrapper):
        def step(self, action):
            out = self.env.step(action)
            rewards.append(out[1])
            return out

    model = PPO("MlpPolicy", Record(env), n_steps=32, batch_size=32, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    assert model.num_timesteps >= 64 and len(rewards) >= 64
    assert all(math.isfinite(r) for r in rewards)
    assert env.usage()["budget_spent"] <= budget
