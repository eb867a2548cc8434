"""Metrics for free-text answers: a target contained in the answer, SQuAD token F1, ROUGE-L, a
final number (GSM8K style) and JSON checked against a JSON Schema with a score per field.

Each scores ``(prediction, example) -> float`` in [0, 1] against every accepted answer of the
example (``example.targets``) and keeps the best. ROUGE-L and the JSON Schema check use the
reference libraries (``rouge-score``, ``jsonschema``: the ``metrics`` extra), imported when such a
metric is built, so that the core install neither needs them nor pays their import time (nltk,
under rouge-score, takes about a second to import).
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

from promptgym.data.dataset import Example
from promptgym.tasks.metrics import RewardError
from promptgym.tasks.parsing import extract_answer, normalize

EXTRA = "pip install 'promptgym[metrics]'"
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SQUAD_PUNCT = set(string.punctuation)
_NUMBER = re.compile(r"(?<![\w.])(-?)\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
_FENCE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)(?:```|\Z)", re.S | re.I)


class Contains:
    """1 when an accepted answer appears in the answer as a whole phrase, ignoring case and
    punctuation ("Paris" is in "It is Paris!", not in "Parisian")."""

    name = "contains"

    def __call__(self, prediction: str, example: Example) -> float:
        answer = f" {' '.join(_plain_words(prediction))} "
        return float(any(words and f" {' '.join(words)} " in answer for words in map(_plain_words, example.targets)))


class TokenF1:
    """SQuAD's token F1 (Rajpurkar et al., 2016: casefolded, punctuation and articles removed),
    of the answer as exact match reads it (its first line, without an 'Answer:' lead), the best
    over the accepted answers. Both empty: 1; one empty: 0 (as SQuAD 2.0)."""

    name = "token_f1"

    def __call__(self, prediction: str, example: Example) -> float:
        answer = _squad_tokens(extract_answer(prediction))
        return max(token_f1(answer, _squad_tokens(target)) for target in example.targets)


def token_f1(answer: list[str], target: list[str]) -> float:
    if not answer or not target:
        return float(answer == target)
    same = sum((Counter(answer) & Counter(target)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(answer), same / len(target)
    return 2 * precision * recall / (precision + recall)


class RougeL:
    """ROUGE-L F-measure (longest common subsequence of words, Lin 2004) by Google's
    ``rouge-score``, with its Porter stemmer, the best over the accepted answers. Its tokenizer
    keeps only the letters a-z and digits: text in other scripts scores 0."""

    name = "rouge_l"

    def __init__(self, stemmer: bool = True):
        try:
            from rouge_score import rouge_scorer
        except ModuleNotFoundError:
            raise RewardError(f"reward 'rouge-l' needs the rouge-score package: {EXTRA}") from None
        self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)

    def __call__(self, prediction: str, example: Example) -> float:
        return float(self.scorer.score_multi(list(example.targets), prediction)["rougeL"].fmeasure)


class NumericMatch:
    """1 when the answer's final number equals the target's (GSM8K style).

    The target's number is the first after its last ``####`` (GSM8K's answer line), else its last
    number; the answer's likewise. Numbers may carry thousands commas, a leading ``$`` or minus and
    trailing units ("$1,250.50", "-3 kg", "45%"); equal means within ``rel_tol`` of each other. An
    example whose targets hold no number is a data error (one line naming it), not a 0."""

    name = "numeric"

    def __init__(self, rel_tol: float = 1e-6):
        self.rel_tol = rel_tol

    def __call__(self, prediction: str, example: Example) -> float:
        wanted = [n for n in map(final_number, example.targets) if n is not None]
        if not wanted:
            raise RewardError(f"reward 'numeric': example {example.id} has no number in its target "
                              f"{example.target[:60]!r}")
        got = final_number(prediction)
        return float(got is not None and any(math.isclose(got, n, rel_tol=self.rel_tol, abs_tol=1e-9)
                                             for n in wanted))


def final_number(text: str) -> float | None:
    """The first number after the last ``####`` (GSM8K's answer line), else the text's last number."""
    before, mark, after = text.rpartition("####")
    found = _NUMBER.findall(after)
    if not found:
        return None
    sign, whole, fraction = found[0] if mark else found[-1]
    return float(sign + whole.replace(",", "") + fraction)


class JsonSchemaMetric:
    """The answer's JSON object, checked against a JSON Schema, then compared with the target's
    object field by field.

    The object is read from a ```json fence when there is one (else the whole answer), as the first
    ``{...}`` that parses. No object, or one the schema rejects, scores 0. Otherwise each field of
    the target (a JSON object, as text) scores 1 when the answer's value is equal after
    normalisation (text casefolded, spaces collapsed, surrounding punctuation dropped; numbers
    compared as numbers; lists and objects item by item), and the score is their mean, the best
    over the accepted answers. :meth:`field_scores` gives the per-field scores behind it."""

    name = "json_schema"

    def __init__(self, schema_path: str | Path):
        path = Path(schema_path).expanduser().resolve()
        self.spec = f"json-schema:{path}"
        self.validator = _validator(self.spec, path)

    def __call__(self, prediction: str, example: Example) -> float:
        fields = self.field_scores(prediction, example)
        return sum(fields.values()) / len(fields) if fields else float(self.parse(prediction) is not None)

    def parse(self, prediction: str) -> dict | None:
        """The answer's JSON object when the schema accepts it, else None."""
        found = json_object(prediction)
        return found if found is not None and self.validator.is_valid(found) else None

    def field_scores(self, prediction: str, example: Example) -> dict[str, float]:
        """Each field of the best-matching target: 1.0 when the answer has it equal, else 0.0 (all
        0.0 when the answer has no valid object)."""
        answer = self.parse(prediction)
        per_target = []
        for target in self._targets(example):
            per_target.append({key: float(answer is not None and key in answer and same_value(answer[key], value))
                               for key, value in target.items()})
        return max(per_target, key=lambda fields: sum(fields.values()) / max(len(fields), 1))

    def _targets(self, example: Example) -> list[dict]:
        objects = []
        for target in example.targets:
            try:
                value = json.loads(target)
            except json.JSONDecodeError as exc:
                raise RewardError(f"reward '{self.spec}': example {example.id}: the target is not JSON "
                                  f"({exc.msg} at character {exc.pos})") from None
            if not isinstance(value, dict):
                raise RewardError(f"reward '{self.spec}': example {example.id}: the target is a "
                                  f"{type(value).__name__}, not a JSON object")
            objects.append(value)
        return objects


def json_object(text: str) -> dict | None:
    """The first ``{...}`` that parses as a JSON object, inside a ```json fence when there is one."""
    fence = _FENCE.search(text)
    body = fence.group(1) if fence else text
    decoder = json.JSONDecoder()
    for start in (i for i, char in enumerate(body) if char == "{"):
        try:
            value, _ = decoder.raw_decode(body, start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def same_value(answer: Any, target: Any) -> bool:
    """Equal after normalisation: numbers as numbers, text by ``parsing.normalize``, containers
    item by item."""
    if isinstance(target, dict):
        return isinstance(answer, dict) and answer.keys() == target.keys() and all(
            same_value(answer[k], target[k]) for k in target)
    if isinstance(target, list):
        return isinstance(answer, list) and len(answer) == len(target) and all(
            same_value(a, t) for a, t in zip(answer, target))
    if _is_number(answer) and _is_number(target):
        return math.isclose(answer, target, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(answer, (dict, list)) or answer is None or target is None:
        return answer == target
    return normalize(_text(answer)) == normalize(_text(target))


def _validator(spec: str, path: Path) -> Any:
    try:
        import jsonschema
    except ModuleNotFoundError:
        raise RewardError(f"reward '{spec}' needs the jsonschema package: {EXTRA}") from None
    if not path.is_file():
        raise RewardError(f"reward '{spec}': {path}: no such file")
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        raise RewardError(f"reward '{spec}': {path}{where}: not JSON ({reason})") from None
    if not isinstance(schema, (dict, bool)):
        raise RewardError(f"reward '{spec}': {path}: not a valid JSON Schema: a {type(schema).__name__}, "
                          "not an object")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise RewardError(f"reward '{spec}': {path}: not a valid JSON Schema: {_one_line(exc.message)}") from None
    return cls(schema)


def _plain_words(text: str) -> list[str]:
    return "".join(" " if c in string.punctuation or c in "“”‘’«»" else c for c in text.casefold()).split()


def _squad_tokens(text: str) -> list[str]:
    text = "".join(c for c in text.lower() if c not in _SQUAD_PUNCT)
    return _ARTICLES.sub(" ", text).split()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
