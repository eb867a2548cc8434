"""The free-text metrics, each against values computed by hand: contains, token F1, ROUGE-L, the
final number and JSON checked against a JSON Schema with per-field scores."""

from __future__ import annotations

import json

import pytest

from promptgym.data.dataset import Example
from promptgym.tasks.metrics import RewardError
from promptgym.tasks.text_metrics import (Contains, JsonSchemaMetric, NumericMatch, RougeL, TokenF1, final_number,
                                          json_object, same_value)


def ex(*targets: str, id: str = "3") -> Example:
    return Example(id, "question", tuple(targets))


def test_contains_is_a_whole_phrase_ignoring_case_and_punctuation():
    metric = Contains()
    assert metric("I think it's Paris, France!", ex("paris")) == 1.0
    assert metric("Parisian food", ex("Paris")) == 0.0  # not a whole word
    assert metric("New  York City", ex("new york")) == 1.0
    assert metric("York, New", ex("new york")) == 0.0  # the words in order
    assert metric("It was Lyon.", ex("Paris", "Lyon")) == 1.0  # any of several targets
    assert metric("", ex("Paris")) == 0.0
    assert metric("anything", ex("...")) == 0.0  # a target without words is in no answer


def test_token_f1_by_hand():
    metric = TokenF1()
    # "the capital is Paris" -> capital, is, paris (article dropped) against paris: P 1/3, R 1
    assert metric("The capital is Paris", ex("Paris")) == pytest.approx(0.5)
    # against "paris france" P 1/3, R 1/2 -> 0.4; the best target wins
    assert metric("The capital is Paris", ex("Paris France", "Paris")) == pytest.approx(0.5)
    assert metric("The capital is Paris", ex("Paris France")) == pytest.approx(0.4)
    assert metric("Answer: Paris.\nBecause it is.", ex("paris")) == 1.0  # the answer as exact match reads it
    assert metric("London", ex("Paris")) == 0.0
    assert metric("", ex("Paris")) == 0.0  # empty answer
    assert metric("the", ex("a")) == 1.0  # both empty after normalisation (SQuAD 2.0)
    assert metric("Paris Paris", ex("Paris")) == pytest.approx(2 * 0.5 * 1 / 1.5)  # repeated words count once


def test_rouge_l_by_hand():
    metric = RougeL()
    # stemmed words: the cat sat on the mat / a cat was sit on the mat: LCS cat on the mat = 4
    # P 4/6, R 4/7, F 2PR/(P+R) = 8/13
    assert metric("The cat sat on the mat.", ex("A cat was sitting on the mat.")) == pytest.approx(8 / 13)
    assert metric("The cat sat on the mat.", ex("dogs bark", "A cat was sitting on the mat.")) == pytest.approx(8 / 13)
    assert metric("the cats", ex("The cat")) == 1.0  # the stemmer: cats = cat
    assert metric("", ex("The cat sat.")) == 0.0
    # the same words reversed: unigram overlap would be 1, the longest common subsequence is 3 of 6
    assert metric("mat the on sat cat the", ex("the cat sat on the mat")) == pytest.approx(0.5)


@pytest.mark.parametrize("text, number", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether she sold 48+24 = 72 clips.\n#### 72", 72),
    ("The answer is 1,234,567.", 1234567),
    ("It costs $1,250.50 in total", 1250.5),
    ("about -3 kg", -3),
    ("She grew 45% taller, so 12 apples", 12),
    ("#### 18 dollars. I hope this helps with your 2 questions", 18),  # the first after the last ####
    ("#### no number after the mark", None),
    ("1,23", 23),  # not thousands: two numbers
    ("version 2.", 2),
    ("no number here", None),
    ("", None),
])
def test_final_number(text, number):
    assert final_number(text) == number


def test_numeric_matches_the_final_numbers():
    metric = NumericMatch()
    gsm8k = ex("She sold 48 + 24 = 72 clips.\n#### 72")
    assert metric("48 + 24 = 72, so the answer is 72.", gsm8k) == 1.0
    assert metric("She sold 72 clips in all, then 3 more", gsm8k) == 0.0  # the final number is 3
    assert metric("$1,200", ex("1200")) == 1.0
    assert metric("1200.0000001", ex("1200")) == 1.0  # within the relative tolerance
    assert metric("1201", ex("1200")) == 0.0
    assert metric("", ex("7")) == 0.0
    assert metric("seven is 7", ex("six", "7")) == 1.0  # a target without a number is skipped
    with pytest.raises(RewardError, match=r"reward 'numeric': example 3 has no number in its target 'seven'"):
        metric("7", ex("seven"))


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "city": {"type": "string"}},
          "required": ["name", "age"]}
TARGET = json.dumps({"name": "Ada Lovelace", "age": 36, "city": "London"})


@pytest.fixture
def schema_metric(tmp_path) -> JsonSchemaMetric:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(SCHEMA))
    return JsonSchemaMetric(path)


def test_json_schema_scores_the_mean_of_the_fields(schema_metric):
    answer = 'Here it is:\n```json\n{"name": "ada lovelace.", "age": 36, "city": "Paris"}\n```'
    assert schema_metric.field_scores(answer, ex(TARGET)) == {"name": 1.0, "age": 1.0, "city": 0.0}
    assert schema_metric(answer, ex(TARGET)) == pytest.approx(2 / 3)
    bare = 'Sure {not json} then {"name": "Ada Lovelace", "age": 36, "city": "London"} done'
    assert schema_metric(bare, ex(TARGET)) == 1.0  # the first {...} that parses
    missing_city = '{"name": "Ada Lovelace", "age": 36}'
    assert schema_metric.field_scores(missing_city, ex(TARGET)) == {"name": 1.0, "age": 1.0, "city": 0.0}


def test_json_schema_gives_zero_to_invalid_json_and_to_a_schema_violation(schema_metric):
    for answer in ("", "no object at all", '{"name": "Ada Lovelace", "age": 36,', "[1, 2]"):
        assert schema_metric(answer, ex(TARGET)) == 0.0, answer
    violation = '{"name": "Ada Lovelace", "age": "36", "city": "London"}'  # age must be an integer
    assert schema_metric(violation, ex(TARGET)) == 0.0
    assert schema_metric.field_scores(violation, ex(TARGET)) == {"name": 0.0, "age": 0.0, "city": 0.0}
    assert schema_metric('{"name": "Ada Lovelace"}', ex(TARGET)) == 0.0  # a required field missing


def test_json_schema_takes_the_best_target_and_checks_the_targets(schema_metric):
    other = json.dumps({"name": "Grace Hopper", "age": 85})
    answer = '{"name": "Grace Hopper", "age": 85, "city": "London"}'
    assert schema_metric(answer, ex(TARGET, other)) == 1.0
    assert schema_metric.field_scores(answer, ex(TARGET, other)) == {"name": 1.0, "age": 1.0}
    with pytest.raises(RewardError, match=r"example 3: the target is not JSON"):
        schema_metric(answer, ex("Ada"))
    with pytest.raises(RewardError, match=r"example 3: the target is a list, not a JSON object"):
        schema_metric(answer, ex("[1]"))


def test_json_object_and_same_value():
    assert json_object('```json\n{"a": {"b": [1, 2]}}\n```') == {"a": {"b": [1, 2]}}
    assert json_object('```\n{"a": 1}') == {"a": 1}  # a fence cut off by the token cap
    assert json_object('{"a": 1} and {"b": 2}') == {"a": 1}
    assert json_object("{}") == {}
    assert json_object("[{}]") == {}  # an object inside a list is still the first {...}
    # text as exact match normalises it: case, spaces and surrounding punctuation, not inner commas
    assert same_value(" Hello  World. ", "hello world") and not same_value("Hello, World", "hello world")
    assert same_value(2, 2.0) and same_value("42", 42) and not same_value(2.5, 2)
    assert same_value([{"x": "A"}], [{"x": "a"}]) and not same_value([1, 2], [2, 1])
    assert not same_value(True, 1) and same_value(True, "true")  # a bool is not a number
    assert same_value(None, None) and not same_value(None, "null") and not same_value({"a": 1}, {"a": 1, "b": 2})


@pytest.mark.parametrize("content, says", [
    (None, "no such file"),
    ("{not json", "schema.json:1: not JSON"),
    ('{"type": "no-such-type"}', "not a valid JSON Schema"),
    ("[1, 2]", "not a valid JSON Schema: a list, not an object"),
])
def test_a_bad_schema_file_is_one_line(tmp_path, content, says):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(RewardError) as info:
        JsonSchemaMetric(path)
    assert says in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"reward 'json-schema:{path}'")


def test_a_missing_library_is_one_line_naming_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_rouge(name, *args, **kwargs):
        if name.startswith("rouge_score"):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_rouge)
    with pytest.raises(RewardError, match=r"^reward 'rouge-l' needs the rouge-score package: "
                                          r"pip install 'promptgym\[metrics\]'$"):
        RougeL()
