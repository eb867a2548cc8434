"""Rewards: user functions by spec, the length penalty (hand-computed), code extraction and tests."""

from __future__ import annotations

import math

import pytest

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.tasks.code import CodeTask, CodeTestsMetric, extract_code, split_tests
from promptgym.tasks.metrics import ChoiceAccuracy, ExactMatch
from promptgym.tasks.rewards import (LengthPenalty, RewardError, RewardFunction, as_metric, load_reward, spec_of,
                                     with_length_penalty)
from promptgym.tasks.text_metrics import Contains, JsonSchemaMetric, NumericMatch, RougeL, TokenF1

EX = Example("7", "What is 2 + 2?", ("4", "four"))


def overlap(prediction, example):
    """Module-level so that spec_of can name it."""
    return len(set(prediction.split()) & set(example.target.split())) / 2


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text("def starts_right(prediction, example):\n"
                    "    return 1.0 if prediction.startswith(example.target) else 0.25\n"
                    "def one_arg(prediction):\n    return 1.0\n"
                    "def text(prediction, example):\n    return 'high'\n"
                    "def boom(prediction, example):\n    raise KeyError('nope')\n"
                    "NOT_A_FUNCTION = 3\n")
    return path


def test_builtin_specs():
    assert isinstance(load_reward("exact-match"), ExactMatch)
    assert isinstance(load_reward("exact_match"), ExactMatch)
    assert isinstance(load_reward("accuracy"), ChoiceAccuracy)
    code = load_reward("code-tests-all")
    assert isinstance(code, CodeTestsMetric) and code.all_or_nothing and spec_of(code) == "code-tests-all"


@pytest.mark.parametrize("spec, kind", [("contains", Contains), ("token-f1", TokenF1), ("token_f1", TokenF1),
                                        ("rouge-l", RougeL), ("ROUGE-L", RougeL), ("numeric", NumericMatch)])
def test_text_metric_specs(spec, kind):
    metric = load_reward(spec)
    assert type(metric) is kind and spec_of(metric) == spec.lower().replace("_", "-")
    assert type(load_reward(spec_of(metric))) is kind  # the stored spec rebuilds it (resume)


def test_json_schema_spec_keeps_the_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "answer.json").write_text('{"type": "object", "required": ["n"]}')
    monkeypatch.chdir(tmp_path)
    metric = load_reward("json-schema:answer.json")
    assert isinstance(metric, JsonSchemaMetric) and spec_of(metric) == f"json-schema:{tmp_path / 'answer.json'}"
    assert spec_of(load_reward(spec_of(metric))) == spec_of(metric)
    assert load_reward('json_schema:answer.json')('{"n": 4}', Example("1", "q", ('{"n": 4.0}',))) == 1.0
    penalised = with_length_penalty("json-schema:answer.json", 2, 0.5)
    assert penalised('{"n": 4} and more words', Example("1", "q", ('{"n": 4}',))) == pytest.approx(1 - 0.5)


def test_file_and_module_specs(reward_file, monkeypatch):
    metric = load_reward(f"{reward_file}:starts_right")
    assert metric("4 apples", EX) == 1.0 and metric("five", EX) == 0.25
    assert spec_of(metric) == f"{reward_file}:starts_right"
    monkeypatch.chdir(reward_file.parent)  # MODULE:FUNCTION finds a module in the current directory
    by_module = load_reward("my_rewards:starts_right")
    assert by_module("4", EX) == 1.0 and spec_of(by_module) == "my_rewards:starts_right"
    relative = load_reward("./my_rewards.py:starts_right")
    assert spec_of(relative) == f"{reward_file}:starts_right"  # stored absolute, for resume


@pytest.mark.parametrize("spec, says", [
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("{file}:missing", "has no attribute 'missing'"),
    ("{file}:one_arg", "one_arg(prediction) cannot be called as reward(prediction, example)"),
    ("{file}:NOT_A_FUNCTION", "is a int, not a function"),
    ("{dir}/nope.py:f", "no such file"),
    ("justaname", "expected one of"),
    ("rouge-x", "expected one of accuracy, exact-match, code-tests, code-tests-all, contains, token-f1, rouge-l, "
                "numeric, json-schema:PATH, judge:RUBRIC.md, MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("json-schema", "give the schema file, json-schema:PATH"),
    ("json-schema:", "give the schema file, json-schema:PATH"),
    ("json-schema:{dir}/absent.json", "absent.json: no such file"),
])
def test_bad_specs_are_one_line(reward_file, spec, says):
    with pytest.raises(RewardError) as info:
        load_reward(spec.format(file=reward_file, dir=reward_file.parent))
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_reward_that_misbehaves_names_itself_and_the_example(reward_file):
    with pytest.raises(RewardError, match=r"returned 'high' for example 7: expected a number"):
        load_reward(f"{reward_file}:text")("x", EX)
    with pytest.raises(RewardError, match=r"failed on example 7: KeyError: 'nope'"):
        load_reward(f"{reward_file}:boom")("x", EX)
    with pytest.raises(RewardError, match="finite"):
        as_metric(lambda p, e: math.nan)("x", EX)


def test_plain_functions_become_metrics():
    metric = as_metric(overlap)
    assert isinstance(metric, RewardFunction) and metric.name == "overlap"
    assert metric("4 is it", EX) == 0.5
    assert as_metric(lambda p, e: True)("x", EX) == 1.0  # bool counts as 0/1
    assert spec_of(metric) == f"{__name__}:overlap"
    assert spec_of(as_metric(lambda p, e: 1.0)) is None  # a lambda cannot be named
    assert spec_of(ExactMatch()) == "exact-match" and spec_of(ChoiceAccuracy()) == "accuracy"


def test_length_penalty_by_hand():
    # score = base - weight * min(1, max(0, words - target) / target); target 10, weight 0.5
    metric = with_length_penalty(lambda p, e: 1.0, target_words=10, weight=0.5)
    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    assert metric(words(3), EX) == 1.0
    assert metric(words(10), EX) == 1.0
    assert metric(words(12), EX) == pytest.approx(1.0 - 0.5 * 2 / 10)  # 0.9
    assert metric(words(15), EX) == pytest.approx(0.75)
    assert metric(words(20), EX) == pytest.approx(0.5)
    assert metric(words(80), EX) == pytest.approx(0.5)  # capped at the weight
    on_exact = with_length_penalty("exact-match", 2, 1.0)
    assert on_exact("4", EX) == 1.0
    assert on_exact("four is right", EX) == pytest.approx(0.0 - 1.0 * 1 / 2)  # wrong and long: -0.5
    assert with_length_penalty("exact-match", 2, 0.0)("no no no no no", EX) == 0.0
    for bad in (dict(target_words=0, weight=0.5), dict(target_words=5, weight=-1)):
        with pytest.raises(RewardError):
            LengthPenalty(ExactMatch(), **bad)


def test_extract_code():
    assert extract_code("Sure!\n```python\ndef f():\n    return 1\n```\nDone.") == "def f():\n    return 1"
    assert extract_code("```\nx = 1\n```") == "x = 1"
    assert extract_code("```python\ndef f():\n    return 2") == "def f():\n    return 2"  # cut off: to the end
    assert extract_code("def g(a):\n    return a\n") == "def g(a):\n    return a"
    assert extract_code("Here is the code:\ndef g(a):\n    return a\nThis returns a.") == "def g(a):\n    return a"
    assert extract_code("no code at all") == "no code at all"


def test_split_tests():
    targets = ("def add(a, b):\n    return a + b",  # no assert: a reference solution, not run
               "import math\nassert add(1, 2) == 3",
               "x = add(2, 2)\nassert x == 4\nassert math.isclose(add(0.1, 0.2), 0.3)\nprint('end')")
    assert split_tests(targets) == ["import math\nassert add(1, 2) == 3", "x = add(2, 2)\nassert x == 4",
                                    "assert math.isclose(add(0.1, 0.2), 0.3)\nprint('end')"]
    assert split_tests(("def f(): pass",)) == []
    with pytest.raises(ValueError):
        split_tests(("assert (",))


def test_code_task_answers_inside_a_fence_and_stops_at_its_end():
    from promptgym.tasks.prompt import Prompt, get_layout

    example = Example("1", "Write f.", ("assert f() == 1",))
    request = CodeTask().request(Prompt("Write it."), example)
    assert request.answer_prefix == "```python\n" and request.stop == ("```",) and request.max_tokens >= 128
    plain = CodeTask().request(Prompt("Write it.", layout=get_layout("plain")), example)
    assert plain.text.endswith("Answer:") and plain.answer_prefix == "\n```python\n"
    free = CodeTask(fence=False).request(Prompt("Write it."), example)
    assert free.stop == () and free.answer_prefix == ""  # no stop at blank lines either


def test_code_metric_without_tests_is_a_data_error():
    with pytest.raises(PromptgymError, match="no tests"):
        CodeTestsMetric()("def f(): pass", Example("3", "Write f.", ("def f(): pass",)))
