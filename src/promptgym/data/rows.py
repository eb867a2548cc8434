"""Rows of a JSONL or CSV file into a ``Dataset``, each field checked: the one place that reads
a file's rows and names the file, line and field of anything wrong in one line. The dataset
sources (``bigbench``, ``papers``, ``hf``, the shipped examples) build their datasets with it,
and ``loaders`` chooses among them by the spec's prefix."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

from promptgym.data.dataset import Dataset, Example
from promptgym.errors import DataError

INPUT_FIELDS = ("input", "question", "text", "sentence", "query")
TARGET_FIELDS = ("target", "output", "answer", "label")
CHOICE_FIELDS = ("choices", "options")
MAX_INFERRED_LABELS = 10


def load_file(spec: str, input_field: str | None = None, target_field: str | None = None,
              choices_field: str | None = None, infer_choices: bool = True) -> Dataset:
    """A .jsonl/.csv (.tsv, .ndjson) file as a dataset; fields as ``rows_to_dataset`` finds them."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"{spec}: no such file")
    if path.is_dir():
        raise DataError(f"{spec}: is a directory, expected a .jsonl or .csv file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        rows = jsonl_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows = csv_rows(path, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise DataError(f"{spec}: unknown file type '{suffix}' (use .jsonl or .csv)")
    return rows_to_dataset(
        rows, source=str(spec), name=path.stem, input_field=input_field,
        target_field=target_field, choices_field=choices_field, infer_choices=infer_choices,
    )


def read_text(path: Path) -> str:
    """The file as text; bytes that are not UTF-8 are one line naming the line they are on."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # -sig: tolerate a BOM (Excel, Notepad)
    except UnicodeDecodeError as exc:
        lineno = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{lineno}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def jsonl_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    text = read_text(path)
    # split on "\n" only: str.splitlines() also breaks at U+2028, U+2029, U+0085, which JSON strings
    # may hold unescaped (json.dumps(ensure_ascii=False) writes them so); "\r" is JSON white space
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise DataError(f"{path}:{lineno}: not valid JSON (nested too deeply)") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{lineno}", row


def csv_rows(path: Path, delimiter: str) -> Iterable[tuple[str, dict[str, Any]]]:
    text = read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty file, expected a header row")
        for row in reader:
            lineno = reader.line_num
            if None in row:
                raise DataError(f"{path}:{lineno}: more cells than header columns")
            if any(v is None for v in row.values()):
                raise DataError(f"{path}:{lineno}: fewer cells than header columns")
            yield f"{path}:{lineno}", row
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def pick_field(row: dict[str, Any], wanted: str | None, candidates: tuple[str, ...], where: str,
                what: str, required: bool = True) -> str | None:
    if wanted is not None:
        if wanted not in row:
            raise DataError(f"{where}: missing field '{wanted}'")
        return wanted
    for name in candidates:
        if name in row:
            return name
    if required:
        raise DataError(f"{where}: missing {what} field (looked for {', '.join(candidates)}; "
                        f"name it with --{what}-field)")
    return None


def as_text(value: Any, where: str, field: str) -> str:
    if value is None:
        raise DataError(f"{where}: field '{field}' is null")
    if isinstance(value, (dict, list)):
        raise DataError(f"{where}: field '{field}' must be text, got {type(value).__name__}")
    return check_text(str(value), where, field)


def check_text(text: str, where: str, field: str) -> str:
    """Text the store and the model can take: encodable as UTF-8 (JSON's "\\ud800" is not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: field '{field}' holds a character that is not valid Unicode "
                        f"({exc.object[exc.start]!r} at position {exc.start})") from None
    return text


def check_choices(raw: list[Any], where: str, field: str) -> tuple[str, ...]:
    """Options as stripped text: at least two, none empty, none twice."""
    if len(raw) < 2:
        raise DataError(f"{where}: field '{field}' needs at least two options")
    choices = tuple(as_text(c, where, field).strip() for c in raw)
    for n, c in enumerate(choices, start=1):
        if not c:
            raise DataError(f"{where}: field '{field}' has an empty option (option {n} of {len(choices)})")
    seen: set[str] = set()
    for c in choices:
        if c in seen:
            raise DataError(f"{where}: field '{field}' lists the option {c!r} twice")
        seen.add(c)
    return choices


def rows_to_dataset(
    rows: Iterable[tuple[str, dict[str, Any]]], source: str, name: str,
    input_field: str | None = None, target_field: str | None = None,
    choices_field: str | None = None, infer_choices: bool = True,
) -> Dataset:
    """Turn raw rows into Examples. Fields are found by name once, from the first row."""
    examples: list[Example] = []
    fields: tuple[str, str, str | None] | None = None
    for index, (where, row) in enumerate(rows):
        if fields is None:
            fields = (
                pick_field(row, input_field, INPUT_FIELDS, where, "input"),
                pick_field(row, target_field, TARGET_FIELDS, where, "target"),
                pick_field(row, choices_field, CHOICE_FIELDS, where, "choices", required=False),
            )
        f_in, f_target, f_choices = fields
        for field in (f_in, f_target):
            if field not in row:
                raise DataError(f"{where}: missing field '{field}'")
        text = as_text(row[f_in], where, f_in)
        raw_target = row[f_target]
        if isinstance(raw_target, list):
            targets = tuple(as_text(t, where, f_target) for t in raw_target)
        else:
            targets = (as_text(raw_target, where, f_target),)
        if not targets or not all(t.strip() for t in targets):
            raise DataError(f"{where}: field '{f_target}' is empty")
        if not text.strip():
            raise DataError(f"{where}: field '{f_in}' is empty")
        choices = None
        if f_choices is not None:
            raw = row.get(f_choices)
            if raw is None:
                raise DataError(f"{where}: missing field '{f_choices}'")
            if isinstance(raw, str):
                raw = [c for c in raw.split("|")]
            if not isinstance(raw, list):
                raise DataError(f"{where}: field '{f_choices}' must be a list or 'a|b|c', got {type(raw).__name__}")
            choices = check_choices(raw, where, f_choices)
            if targets[0].strip() not in choices:
                raise DataError(f"{where}: target '{targets[0]}' is not one of the choices {list(choices)}")
            targets = (targets[0].strip(),)
        examples.append(Example(id=str(index), input=text, targets=targets, choices=choices, where=where))
    if not examples:
        raise DataError(f"{source}: no examples")
    if infer_choices and all(e.choices is None for e in examples):
        examples = infer_label_set(examples)
    return Dataset(name=name, examples=examples, source=source)


def infer_label_set(examples: list[Example]) -> list[Example]:
    """A column with few distinct single answers is a classification label: offer them as choices."""
    if any(len(e.targets) != 1 for e in examples):
        return examples
    labels: list[str] = []
    for e in examples:
        if e.target.strip() not in labels:
            labels.append(e.target.strip())
    if not 2 <= len(labels) <= MAX_INFERRED_LABELS or len(labels) * 2 > len(examples):
        return examples
    choices = tuple(labels)
    return [Example(e.id, e.input, (e.target.strip(),), choices, where=e.where) for e in examples]
