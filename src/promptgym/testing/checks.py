"""The checks of the method contract, as plain functions: each runs a method (an ``Optimizer``
subclass) in the scripted world (``promptgym.testing.scripted``) and raises ``ConformanceError``
naming the rule it broke. ``MethodConformance`` runs them under pytest; ``check_method`` runs them
all without it. ``workdir`` is a directory for the checks' response caches.

What a method must do, and why:
(a) never spend more than the hard budget, and say so when it ran out (the budget is a promise);
(b) make the same requests and return the same prompt for a seed on a fresh cache (resume replays);
(c) a run killed mid-way and run again on the same cache ends where the whole run did, never asking
    the model twice for the same thing (``promptgym resume``);
(d) never show a test input to a model; (e) return a prompt that renders and survives the store;
(f) with no budget, run to its own end; (g) record every parent of a candidate as a candidate;
(h) not depend on string hashing (two processes, two PYTHONHASHSEEDs);
(i) refuse bad parameters when built, not when run; (j) stop when any stopper says so, and run
    twice alike from one instance (state lives in the run, not on the method);
(k) rehearse for the projection printed before a run without reaching a model;
(l) keep the capabilities it declares (``uses_optimizer_model = False``: never ask that model).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from promptgym.errors import PromptgymError
from promptgym.optimizers.base import Context, Optimizer, Recorder
from promptgym.optimizers.stopping import Stop
from promptgym.projection import project
from promptgym.tasks.prompt import Prompt
from promptgym.testing.scripted import ConformanceBackend, make_context

Method = type[Optimizer]
BUDGETS = (5, 40, 150)  # a budget that runs out at once, one that runs out mid-way, one a small plan fits
HASH_SEEDS = ("1", "4242")


class ConformanceError(AssertionError):
    """A method broke the contract; the message names the method and the rule."""


def _expect(ok: bool, method: Method, message: str) -> None:
    if not ok:
        raise ConformanceError(f"{method.name or method.__name__}: {message}")


def _run(method: Method, ctx: Context, stop: Stop | None = None) -> Prompt:
    return method().run(ctx, stop)


def check_budget(method: Method, workdir: Path, budget: int) -> None:
    """(a) At most ``budget`` calls, all of them counted; "ran out" only when all were spent."""
    backend = ConformanceBackend()
    ctx = make_context(budget, backend, Path(workdir) / f"budget-{budget}.sqlite")
    _run(method, ctx)
    calls = len(backend.keys)
    _expect(calls <= budget, method, f"{calls} model calls on a budget of {budget}")
    _expect(ctx.evaluator.budget.spent == calls, method,
            f"{calls} model calls, but the budget counted {ctx.evaluator.budget.spent}")
    _expect(not ctx.stats.get("budget_exhausted") or calls == budget, method,
            f"says the budget ran out after {calls} of {budget} calls")


def check_deterministic(method: Method, workdir: Path) -> None:
    """(b) The same seed on a fresh cache: the same requests in the same order, the same prompt."""
    runs = []
    for attempt in range(2):
        backend = ConformanceBackend()
        best = _run(method, make_context(120, backend, Path(workdir) / f"fresh{attempt}.sqlite", seed=3))
        runs.append((best, backend.keys))
    _expect(bool(runs[0][1]), method, "made no model call at all")
    _expect(runs[0][1] == runs[1][1], method, "two runs with the same seed made different requests")
    _expect(runs[0][0] == runs[1][0], method, "two runs with the same seed returned different prompts")


def check_resume(method: Method, workdir: Path, budget: int = 120) -> None:
    """(c) Killed half-way, then run again on the same cache with the spent budget carried over (as
    ``promptgym resume`` does): the uninterrupted run's requests, none twice, and its result."""
    workdir = Path(workdir)
    whole = ConformanceBackend()
    expected = _run(method, make_context(budget, whole, workdir / "whole.sqlite"))
    if len(whole.keys) < 2:
        return  # nothing to interrupt
    keys: list[str] = []
    first = make_context(budget, ConformanceBackend(keys, interrupt_after=len(whole.keys) // 2),
                         workdir / "resumed.sqlite")
    try:
        _run(method, first)
    except KeyboardInterrupt:
        pass
    else:
        raise ConformanceError(f"{method.name}: the run went on after a simulated kill (KeyboardInterrupt "
                               "caught and swallowed?)")
    again = make_context(budget, ConformanceBackend(keys), workdir / "resumed.sqlite")
    again.evaluator.budget.spent = first.evaluator.budget.spent
    result = _run(method, again)
    _expect(len(keys) == len(set(keys)), method, "the resumed run sent a request the killed one had made")
    _expect(keys == whole.keys, method, "the killed and resumed run made other requests than the whole run")
    _expect(result == expected, method, "the resumed run returned another prompt than the whole run")


def check_no_test_leak(method: Method, workdir: Path) -> None:
    """(d) No held-out input ever reaches a model (the Context refuses to score on them, and a
    method must not show them in a meta-prompt either)."""
    backend = ConformanceBackend()
    _run(method, make_context(150, backend, Path(workdir) / "leak.sqlite"))
    leaked = [t for t in backend.texts if "HELDOUT-" in t]
    _expect(bool(backend.texts), method, "made no model call at all")
    _expect(not leaked, method, f"test inputs reached the model: {leaked[0][:200] if leaked else ''}")


def check_result_renders(method: Method, workdir: Path) -> None:
    """(e) The returned prompt has an instruction, renders for a test example, gives the task a
    request and survives the run store's round trip."""
    ctx = make_context(150, ConformanceBackend(), Path(workdir) / "renders.sqlite")
    best = _run(method, ctx)
    _expect(isinstance(best, Prompt) and bool(best.instruction.strip()), method,
            f"returned {best!r}, not a Prompt with an instruction")
    example = ctx.test_examples[0]  # type: ignore[attr-defined]
    rendered = best.render(example.input, options=list(example.choices or ()))
    _expect(bool(rendered.messages or rendered.text), method, "the returned prompt renders to nothing")
    ctx.task.request(best, example)
    _expect(Prompt.from_dict(best.to_dict()) == best, method, "the returned prompt changes through the store")


def check_runs_to_its_end(method: Method, workdir: Path) -> None:
    """(f) Without a budget the method ends on its own (``done``, or a stopper of its own)."""
    backend = ConformanceBackend()
    ctx = make_context(None, backend, Path(workdir) / "unlimited.sqlite")
    _run(method, ctx)
    own = ["done"] + [s.name for s in method().stoppers()]
    _expect(bool(backend.keys), method, "made no model call at all")
    _expect(ctx.stats.get("stopped_by") in own and not ctx.stats.get("budget_exhausted"), method,
            f"without a budget it ended by {ctx.stats.get('stopped_by')!r}, not by one of {own}")


class LineageRecorder(Recorder):
    """Keeps each candidate's parents, as the run store does (the first record of an id wins)."""

    def __init__(self) -> None:
        self.candidates: dict[str, list[str]] = {}

    def candidate(self, prompt: Prompt, parents: list[str], operation: str) -> None:
        self.candidates.setdefault(prompt.id, list(parents))


def check_lineage(method: Method, workdir: Path, budget: int | None) -> None:
    """(g) Every parent of a recorded candidate is a recorded candidate, and so is the result."""
    ctx = make_context(budget, ConformanceBackend(), Path(workdir) / f"lineage-{budget}.sqlite")
    ctx.recorder = recorder = LineageRecorder()
    recorder.candidate(ctx.initial, [], "initial")  # as the runner does
    best = _run(method, ctx)
    missing = {p for parents in recorder.candidates.values() for p in parents} - set(recorder.candidates)
    _expect(len(recorder.candidates) > 1 or best == ctx.initial, method, "returned a prompt it never recorded")
    _expect(not missing, method, f"parents never recorded as candidates: {sorted(missing)[:3]}")
    _expect(best.id in recorder.candidates, method, "the returned prompt was never recorded as a candidate")


def fingerprint(method: Method, cache_path: str | Path) -> str:
    """A hash of one run's request keys and result (budget 150, seed 1)."""
    backend = ConformanceBackend()
    best = _run(method, make_context(150, backend, cache_path, seed=1))
    return hashlib.sha256(json.dumps([backend.keys, best.to_dict()]).encode()).hexdigest()


def import_path(method: Method) -> str:
    """``module:qualname`` of a method class, which another process imports it by."""
    return f"{method.__module__}:{method.__qualname__}"


def load_method(path: str) -> Method:
    """The class at ``module:qualname`` (``import_path``)."""
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def fingerprint_main() -> None:
    """A child process's side of ``check_hash_seed``: argv is the method's import path and a cache."""
    print(fingerprint(load_method(sys.argv[1]), sys.argv[2]))


def check_hash_seed(method: Method, workdir: Path) -> None:
    """(h) The same run in two processes with different PYTHONHASHSEED (string hashing, hence set
    order, differs between them) makes the same requests and returns the same prompt. The method
    must be importable by its module path (``import_path``), from this process's ``sys.path``."""
    prints = []
    for seed in HASH_SEEDS:
        home = Path(workdir) / f"hashseed{seed}"
        home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONHASHSEED=seed, PROMPTGYM_HOME=str(home),
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        code = "from promptgym.testing.checks import fingerprint_main; fingerprint_main()"
        done = subprocess.run([sys.executable, "-c", code, import_path(method), str(home / "cache.sqlite")],
                              env=env, capture_output=True, text=True, timeout=600)
        _expect(done.returncode == 0, method, f"a run in a fresh process failed (is {import_path(method)} "
                                              f"importable there?): {done.stderr.strip()[-1500:]}")
        prints.append(done.stdout.strip().splitlines()[-1])
    _expect(prints[0] == prints[1], method, "the requests or the result depend on PYTHONHASHSEED (set or dict "
                                            "order of strings?)")


def check_bad_parameters(method: Method) -> None:
    """(i) An unknown parameter, or a text parameter outside its choices, fails at construction."""
    for params, key in [({"no_such_parameter": 1}, "no_such_parameter")] + [
            ({k: "no-such-choice"}, k) for k, v in method.defaults.items() if isinstance(v, str)]:
        try:
            method(**params)
        except PromptgymError as exc:
            _expect(key in str(exc), method, f"the error for {params} does not name '{key}': {exc}")
        else:
            raise ConformanceError(f"{method.name}: built with {params} without an error")


def _watched(method: Method) -> tuple[Method, list[float | None]]:
    """The method, recording the best score the base reads before and after every step."""
    seen: list[float | None] = []

    class Watched(method):  # type: ignore[misc,valid-type]
        def best_score(self, ctx: Context, state: Any) -> float | None:
            score = super().best_score(ctx, state)
            seen.append(score)
            return score

    return Watched, seen


def check_stoppers(method: Method, workdir: Path) -> None:
    """(j) Every stopper ends the run at the step it fires: max steps and wall time after step 1,
    a target at the first step with a best score at or above it, patience 1 at the first step that
    does not raise the best (or the method ends on its own first)."""
    workdir = Path(workdir)
    for stop, stopper in ((Stop(max_steps=1), "max_steps"), (Stop(max_seconds=0), "wall_time")):
        ctx = make_context(None, ConformanceBackend(), workdir / f"stop-{stopper}.sqlite")
        _run(method, ctx, stop)
        _expect((ctx.stats["steps"], ctx.stats["stopped_by"]) == (1, stopper), method,
                f"{stopper}: stopped after {ctx.stats['steps']} steps by {ctx.stats['stopped_by']!r}")

    watched, seen = _watched(method)
    ctx = make_context(None, ConformanceBackend(), workdir / "stop-target.sqlite")
    watched().run(ctx, Stop(target=-1.0))
    first = next((i for i, s in enumerate(seen[1:], 1) if s is not None), None)
    _expect(first is not None, method, "never reported a best score (best_score)")
    _expect((ctx.stats["steps"], ctx.stats["stopped_by"]) == (first, "target"), method,
            f"target: stopped after {ctx.stats['steps']} steps by {ctx.stats['stopped_by']!r}, not after {first}")

    watched, seen = _watched(method)
    ctx = make_context(None, ConformanceBackend(), workdir / "stop-patience.sqlite")
    watched().run(ctx, Stop(patience=1))
    best, flat = -float("inf") if seen[0] is None else seen[0], None
    for i, score in enumerate(seen[1:], 1):
        if score is None:
            continue
        if score > best:
            best = score
        else:
            flat = i
            break
    expected = ("done",) if flat is None else (flat, "patience")
    got = (ctx.stats["stopped_by"],) if flat is None else (ctx.stats["steps"], ctx.stats["stopped_by"])
    _expect(got == expected, method, f"patience 1: ended with {got}, expected {expected}")


def check_runs_twice_alike(method: Method, workdir: Path) -> None:
    """(j) One instance run twice: the same requests and result (per-run state lives in the state
    object, not on the method)."""
    instance = method()
    runs = []
    for attempt in range(2):
        backend = ConformanceBackend()
        best = instance.run(make_context(120, backend, Path(workdir) / f"twice{attempt}.sqlite", seed=2))
        runs.append((best, backend.keys))
    _expect(runs[0] == runs[1], method, "a second run of the same instance went differently")


class LayoutRecorder(Recorder):
    """Keeps the layout of every candidate recorded."""

    def __init__(self) -> None:
        self.layouts: set[str] = set()

    def candidate(self, prompt: Prompt, parents: list[str], operation: str) -> None:
        self.layouts.add(prompt.layout.name)


def check_capabilities(method: Method, workdir: Path) -> None:
    """(l) The capabilities it declares hold: with ``uses_optimizer_model = False`` it never asks
    the optimizer model (the runner then accepts a model that cannot chat there); with
    ``edits_layout = False`` every candidate keeps the starting prompt's layout (the runner then
    accepts a task model without a chat template)."""
    instance = method()
    task_model, optimizer_model = ConformanceBackend(), ConformanceBackend(name="optimizer")
    ctx = make_context(150, task_model, Path(workdir) / "capabilities.sqlite", optimizer_backend=optimizer_model)
    ctx.recorder = recorder = LayoutRecorder()
    instance.run(ctx)
    _expect(instance.uses_optimizer_model or not optimizer_model.keys, method,
            f"declares uses_optimizer_model = False, yet asked the optimizer model {len(optimizer_model.keys)} times")
    _expect(instance.edits_layout or recorder.layouts <= {ctx.initial.layout.name}, method,
            f"declares edits_layout = False, yet recorded candidates with layouts {sorted(recorder.layouts)}")


def check_rehearsal(method: Method, workdir: Path, budget: int = 150) -> None:
    """(k) The projection printed before a run rehearses the method on a stand-in model: that works,
    reaches no model and projects no more search calls than the budget."""
    backend = ConformanceBackend()
    ctx = make_context(budget, backend, Path(workdir) / "rehearsal.sqlite")
    method_dev = ctx.dev if method.searches_on_dev else []
    projection = project(method(), ctx.task, ctx.train, method_dev, [], ctx.test_examples,  # type: ignore[attr-defined]
                         ctx.initial, seed=0, search_limit=budget, budget=budget, reserve=0, stop=None,
                         task_backend=backend, optimizer_backend=backend)
    _expect(not backend.keys, method, "the projection's rehearsal reached the model")
    _expect(projection.search.calls <= budget, method,
            f"the rehearsal projected {projection.search.calls} search calls on a budget of {budget}")


def check_method(method: Method, workdir: str | Path) -> None:
    """Every check above, in order; the first broken rule raises ``ConformanceError``."""
    workdir = Path(workdir)
    check_bad_parameters(method)
    for budget in BUDGETS:
        check_budget(method, workdir, budget)
    for budget in (40, None):
        check_lineage(method, workdir, budget)
    for check in (check_deterministic, check_resume, check_no_test_leak, check_result_renders,
                  check_runs_to_its_end, check_stoppers, check_runs_twice_alike, check_rehearsal,
                  check_capabilities, check_hash_seed):
        check(method, workdir)


__all__ = ["BUDGETS", "ConformanceError", "LineageRecorder", "check_bad_parameters", "check_budget",
           "check_capabilities", "check_deterministic", "check_hash_seed", "check_lineage", "check_method",
           "check_no_test_leak", "check_rehearsal", "check_result_renders", "check_resume", "check_runs_to_its_end",
           "check_runs_twice_alike", "check_stoppers", "fingerprint", "import_path", "load_method"]
