"""Rewards beyond accuracy: your own function, a length penalty, and the code-tests reward.

A reward is a metric: ``reward(prediction, example) -> float``, higher is better. ``prediction``
is what the task read from the model's answer (the chosen label for a choice task, the answer text
for a generation task); ``example`` is the :class:`~promptgym.data.dataset.Example` (``input``,
``targets``, ``target``, ``choices``, ``id``).

Named by a spec (CLI ``--reward SPEC``, Python ``reward="SPEC"``), resolved by :func:`load_reward`:

- ``exact-match``: the default for free text; ``accuracy``: the default for choice tasks;
- ``code-tests`` / ``code-tests-all``: run the extracted code against the example's tests in the
  sandbox (:mod:`promptgym.tasks.code`): the fraction passed / 1 only if all pass;
- ``contains``, ``token-f1``, ``rouge-l``, ``numeric`` and ``json-schema:PATH`` (a JSON Schema
  file): the free-text metrics of :mod:`promptgym.tasks.text_metrics`;
- ``judge:RUBRIC.md``: a judge model scores each answer against the rubric you wrote
  (:mod:`promptgym.tasks.judge`; ``judge:example:NAME``: the rubric a shipped example comes with);
- ``MODULE:FUNCTION`` (importable, or a module in the current directory) or
  ``path/to/file.py:FUNCTION``: your function, called as ``FUNCTION(prediction, example)``. It must
  return a number (bool counts as 0/1); an exception or a non-number stops the run with one line
  naming the reward and the example.

**Length penalty** (:func:`with_length_penalty`, CLI ``--length-penalty WORDS
[--length-weight W]``), for brevity on top of any reward::

    score = base(prediction, example) - weight * min(1, max(0, words - WORDS) / WORDS)

where ``words`` is the number of white-space separated words of the prediction. At or under
``WORDS`` words nothing is taken off; the penalty grows linearly and reaches ``weight`` at twice
``WORDS``, and stays there. So scores lie in ``[base - weight, base]`` (below 0 when ``weight`` is
larger than the base score): a long right answer can score under a short one, a long wrong one
under a short wrong one. ``weight`` 0 turns it off.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.tasks.code import CodeTestsMetric
from promptgym.tasks.judge import load_judge
from promptgym.tasks.metrics import CallableMetric, ChoiceAccuracy, ExactMatch, Metric, RewardError
from promptgym.tasks.text_metrics import Contains, JsonSchemaMetric, NumericMatch, RougeL, TokenF1

TEXT_METRICS = {"contains": Contains, "token-f1": TokenF1, "rouge-l": RougeL, "numeric": NumericMatch}
BUILTIN = ("accuracy", "exact-match", "code-tests", "code-tests-all", *TEXT_METRICS)
JSON_SCHEMA = "json-schema"
DEFAULT_LENGTH_WEIGHT = 0.5
JUDGE_PREFIX = "judge:"


class RewardFunction:
    """A user function as a metric: checks that each value is a finite number and turns a crash
    into one line naming the reward and the example."""

    def __init__(self, fn: Callable[[str, Example], Any], spec: str | None = None, name: str | None = None):
        self.fn = fn
        self.spec = spec
        self.name = name or getattr(fn, "__name__", None) or "reward"

    def __call__(self, prediction: str, example: Example) -> float:
        label = self.spec or self.name
        try:
            value = self.fn(prediction, example)
        except PromptgymError:
            raise
        except Exception as exc:
            raise RewardError(f"reward '{label}' failed on example {example.id}: "
                              f"{type(exc).__name__}: {_one_line(exc)}") from None
        if isinstance(value, bool):
            return float(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RewardError(f"reward '{label}' returned {_short(repr(value))} for example {example.id}: "
                              "expected a number") from None
        if not math.isfinite(number):
            raise RewardError(f"reward '{label}' returned {number} for example {example.id}: expected a finite number")
        return number


class LengthPenalty:
    """``base`` minus ``weight * min(1, max(0, words - target_words) / target_words)``."""

    def __init__(self, base: Metric | Callable, target_words: int, weight: float = DEFAULT_LENGTH_WEIGHT):
        if not isinstance(target_words, int) or isinstance(target_words, bool) or target_words < 1:
            raise RewardError(f"length penalty: target words must be a whole number >= 1, not {target_words!r}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise RewardError(f"length penalty: weight must be a number >= 0, not {weight!r}")
        self.base = as_metric(base)
        self.target_words = target_words
        self.weight = float(weight)
        self.name = f"{self.base.name}-len{target_words}x{self.weight:g}"

    def penalty(self, prediction: str) -> float:
        words = len(prediction.split())
        return self.weight * min(1.0, max(0, words - self.target_words) / self.target_words)

    def __call__(self, prediction: str, example: Example) -> float:
        return self.base(prediction, example) - self.penalty(prediction)


def with_length_penalty(metric: Metric | Callable | str, target_words: int,
                        weight: float = DEFAULT_LENGTH_WEIGHT) -> LengthPenalty:
    """Any metric (or spec) with a penalty on words beyond ``target_words`` (formula: module doc)."""
    return LengthPenalty(load_reward(metric) if isinstance(metric, str) else metric, target_words, weight)


def as_metric(reward: Metric | Callable) -> Metric:
    """A metric object as is; a plain function wrapped (checked for its signature)."""
    if hasattr(reward, "name") and callable(reward):
        return reward  # type: ignore[return-value]
    if not callable(reward):
        raise RewardError(f"reward {_short(repr(reward))} is not callable: give a function reward(prediction, example)")
    _check_signature(reward, getattr(reward, "__qualname__", repr(reward)))
    return RewardFunction(reward)


def spec_of(reward: Any) -> str | None:
    """The spec that rebuilds ``reward`` in another process (a resumed run), or None."""
    spec = getattr(reward, "spec", None)
    if isinstance(spec, str):
        return spec
    if type(reward) in (ExactMatch, ChoiceAccuracy):
        return "exact-match" if isinstance(reward, ExactMatch) else "accuracy"
    fn = getattr(reward, "fn", reward) if isinstance(reward, (RewardFunction, CallableMetric)) else reward
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        return None
    try:
        found = _attribute(importlib.import_module(module), qualname)
    except Exception:
        return None
    return f"{module}:{qualname}" if found is fn else None


def load_reward(spec: str) -> Metric:
    """The metric a spec names (see the module doc); a bad spec raises RewardError (one line)."""
    spec = spec.strip()
    name = spec.lower().replace("_", "-")
    if name in BUILTIN:
        return _builtin(name)
    if name.startswith(JUDGE_PREFIX):
        return load_judge(spec[len(JUDGE_PREFIX):])
    if name.split(":", 1)[0] == JSON_SCHEMA:
        return _json_schema(spec)
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise RewardError(f"reward '{spec}': expected one of {', '.join(BUILTIN)}, {JSON_SCHEMA}:PATH, "
                          f"{JUDGE_PREFIX}RUBRIC.md, MODULE:FUNCTION or FILE.py:FUNCTION")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where).expanduser().resolve()
        module = _load_file(spec, path)
        spec = f"{path}:{attr}"  # absolute: a resumed run finds it from any directory
    else:
        module = _import(spec, where)
    try:
        fn = _attribute(module, attr)
    except AttributeError:
        raise RewardError(f"reward '{spec}': {where} has no attribute '{attr}'") from None
    if not callable(fn):
        raise RewardError(f"reward '{spec}': {attr} is a {type(fn).__name__}, not a function")
    if inspect.isclass(fn):
        raise RewardError(f"reward '{spec}': {attr} is a class; give a function reward(prediction, example)")
    _check_signature(fn, spec)
    return RewardFunction(fn, spec=spec, name=getattr(fn, "__name__", attr))


def _builtin(name: str) -> Metric:
    if name == "accuracy":
        metric: Any = ChoiceAccuracy()
    elif name == "exact-match":
        metric = ExactMatch()
    elif name in TEXT_METRICS:
        metric = TEXT_METRICS[name]()
    else:
        metric = CodeTestsMetric(all_or_nothing=name == "code-tests-all")
    metric.spec = name
    return metric


def _json_schema(spec: str) -> Metric:
    """``json-schema:PATH``: its spec keeps the file's absolute path, so a resumed run finds it."""
    path = spec.split(":", 1)[1].strip() if ":" in spec else ""
    if not path:
        raise RewardError(f"reward '{spec}': give the schema file, {JSON_SCHEMA}:PATH (a JSON Schema in a .json file)")
    return JsonSchemaMetric(path)


def _import(spec: str, module_name: str) -> Any:
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)  # like `python -m`: a module in the current directory is found
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise RewardError(f"reward '{spec}': cannot import module '{module_name}' ({exc})") from None
    except Exception as exc:
        raise RewardError(f"reward '{spec}': importing module '{module_name}' failed: "
                          f"{type(exc).__name__}: {_one_line(exc)}") from None
    finally:
        if added:
            try:
                sys.path.remove(cwd)
            except ValueError:
                pass


def _load_file(spec: str, path: Path) -> Any:
    if not path.is_file():
        raise RewardError(f"reward '{spec}': {path}: no such file")
    name = f"promptgym_reward_{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise RewardError(f"reward '{spec}': {path}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.parent))  # its own sibling modules import
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise RewardError(f"reward '{spec}': {path}:{exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:
        raise RewardError(f"reward '{spec}': loading {path} failed: {type(exc).__name__}: {_one_line(exc)}") from None
    finally:
        try:
            sys.path.remove(str(path.parent))
        except ValueError:
            pass
    sys.modules[name] = module
    return module


def _attribute(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _check_signature(fn: Callable, label: str) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without introspection: trust it
    try:
        signature.bind("prediction", None)
    except TypeError:
        raise RewardError(f"reward '{label}': {getattr(fn, '__name__', 'it')}{signature} cannot be called as "
                          "reward(prediction, example)") from None


def _one_line(exc: BaseException) -> str:
    return _short(" ".join(str(exc).split()))


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
