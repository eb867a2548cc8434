"""Code generation: the model writes Python, the reward runs it against the example's tests.

The code always runs in :mod:`promptgym.sandbox` (a separate process: no network, a throwaway
working directory, time, memory and process limits), never in our process.

**Data.** An example's ``input`` says what to write; its targets hold the tests. Every top-level
``assert`` statement in the targets is one test. Other top-level statements (imports, helper
values) run in order just before the next assert, as part of that test. A target with no
``assert`` at all is not run: that is where a reference solution goes, which methods that show
demonstrations (APE) then show as the expected output. JSONL::

    {"input": "Write a function add(a, b) that returns the sum of a and b.",
     "target": ["def add(a, b):\\n    return a + b", "assert add(2, 3) == 5", "assert add(-1, 1) == 0"]}

**Reward.** ``CodeTestsMetric()``: the fraction of tests passed (``all_or_nothing=True``: 1 only
when every test passes, else 0). Code that does not compile, raises before the tests, exceeds a
limit or never finishes scores 0 on the tests it did not pass; tests that passed before a
wall-clock or CPU stop still count.

**Extraction** (:func:`extract_code`): the first fenced block (```` ```python ````, ```` ```py ````
or a bare ```` ``` ````; an unclosed fence runs to the end), else the raw answer; when that does not
compile, from the first line that starts a definition or an import (``def``, ``class``, ``import``,
``from``, ``@``), with trailing lines dropped until it compiles.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections import OrderedDict

from promptgym.data.dataset import Example
from promptgym.errors import DataError
from promptgym.models.base import GenerationRequest
from promptgym.sandbox import Limits, TestRun, run_tests
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import GenerationTask, Request

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(def |class |import |from |@|async def )")


def _compiles(code: str) -> bool:
    try:
        compile(code, "solution.py", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def extract_code(answer: str) -> str:
    """The Python in a model's answer (see the module doc for the rules)."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    bare = [body for lang, body in blocks if lang == ""]
    if python or bare:
        return (python or bare)[0].strip("\n")
    text = answer.strip("\n")
    if _compiles(text):
        return text
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return text
    lines = lines[start:]
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if _compiles(candidate):
            return candidate
    return "\n".join(lines)


def split_tests(targets: tuple[str, ...] | list[str]) -> list[str]:
    """The example's tests: one per top-level assert, each with the statements just before it."""
    tests: list[str] = []
    for target in targets:
        try:
            tree = ast.parse(target)
        except SyntaxError:
            raise ValueError(f"test code does not parse: {target[:80]!r}") from None
        if not any(isinstance(node, ast.Assert) for node in tree.body):
            continue  # a reference solution, not a test
        lines = target.splitlines()
        pending: list[str] = []
        for node in tree.body:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            pending.append("\n".join(lines[start:node.end_lineno]))
            if isinstance(node, ast.Assert):
                tests.append("\n".join(pending))
                pending = []
        if pending and tests:
            tests[-1] += "\n" + "\n".join(pending)
    return tests


class CodeTestsMetric:
    """Reward = the fraction of the example's tests the extracted code passes, run in the sandbox
    (``all_or_nothing``: 1 when all pass, else 0). Results are memoised by code and tests, so a
    prompt answered the same way twice does not run the code twice. ``last_run`` keeps the latest
    :class:`~promptgym.sandbox.TestRun` for inspection."""

    def __init__(self, all_or_nothing: bool = False, limits: Limits | None = None, python: str | None = None,
                 memo: int = 4096):
        self.all_or_nothing = all_or_nothing
        self.limits = limits or Limits()
        self.python = python
        self.name = "code_tests_all" if all_or_nothing else "code_tests"
        self.spec = "code-tests-all" if all_or_nothing else "code-tests"
        self._memo: OrderedDict[str, TestRun] = OrderedDict()
        self._memo_size = memo
        self.last_run: TestRun | None = None

    def run(self, prediction: str, example: Example) -> TestRun:
        code = extract_code(prediction)
        try:
            tests = split_tests(example.targets)
        except ValueError as exc:
            raise DataError(f"example {example.id}: {exc}") from None
        if not tests:
            raise DataError(f"example {example.id}: no tests (its targets need at least one top-level assert)")
        key = hashlib.sha256("\x00".join([code, *tests]).encode()).hexdigest()
        if key in self._memo:
            self._memo.move_to_end(key)
            run = self._memo[key]
        else:
            run = run_tests(code, tests, self.limits, python=self.python)
            self._memo[key] = run
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        self.last_run = run
        return run

    def __call__(self, prediction: str, example: Example) -> float:
        run = self.run(prediction, example)
        if self.all_or_nothing:
            return float(run.total > 0 and run.passed == run.total)
        return run.fraction


class CodeTask(GenerationTask):
    """Generate code and score it with :class:`CodeTestsMetric` (or any metric given).

    With ``fence=True`` (the default) the answer starts inside a code block: the layout's answer
    cue is followed by ```` ```python ```` and a new line, and generation stops at the closing
    fence, so the model's explanations after the code cost no tokens. The prediction is the code
    only. ``fence=False``: the model answers freely (no stop at blank lines) and the code is
    extracted from its answer."""

    FENCE = "```python\n"

    def __init__(self, metric=None, max_tokens: int = 200, fence: bool = True):
        super().__init__(metric=metric if metric is not None else CodeTestsMetric(), max_tokens=max_tokens)
        self.fence = fence

    def request(self, prompt: Prompt, example: Example) -> Request:
        rendered = prompt.render(example.input)
        if not self.fence:
            return GenerationRequest(messages=rendered.messages, text=rendered.text,
                                     answer_prefix=rendered.answer_prefix, max_tokens=self.max_tokens)
        prefix = rendered.answer_prefix
        if (prefix or rendered.text is not None) and not prefix.endswith("\n"):
            prefix += "\n"  # the fence on a line of its own after a cue such as "Answer:"
        return GenerationRequest(messages=rendered.messages, text=rendered.text, answer_prefix=prefix + self.FENCE,
                                 max_tokens=self.max_tokens, stop=("```",))
