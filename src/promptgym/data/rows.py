"""Rows of a JSONL or CSV file into a ``Dataset``, each field checked: the one place that reads
a file's rows and names the file, line and field of anything wrong in one line. The dataset
sources (``bigbench``, ``papers``, ``hf``, the shipped examples) build their datasets with it,
and ``loaders`` chooses among them by the spec's prefix."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from promptgym.data.dataset import Dataset, Example
from promptgym.data.fields import NAMED, TEMPLATE_FLAG, InputTemplate
from promptgym.errors import DataError

INPUT_FIELDS = ("input", "question", "text", "sentence", "query")
TARGET_FIELDS = ("target", "output", "answer", "label")
CHOICE_FIELDS = ("choices", "options")
MAX_INFERRED_LABELS = 10
BOTH_INPUTS = (f"{TEMPLATE_FLAG} and --input-field both say what the input is: give one (the template names "
               "its fields itself)")


def load_file(spec: str, input_field: str | None = None, target_field: str | None = None,
              choices_field: str | None = None, infer_choices: bool = True,
              input_template: str | None = None) -> Dataset:
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
        input_template=input_template,
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


def input_from_fields(template: InputTemplate, row: Mapping[str, Any],
                      where: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The input ``template`` renders from the row's fields, and those fields as text."""
    named = []
    for name in template.names:
        if name not in row:
            raise DataError(f"{where}: field '{name}' missing ({NAMED})")
        named.append((name, as_text(row[name], where, name)))
    return template.render(dict(named), where), tuple(named)


def rows_to_dataset(
    rows: Iterable[tuple[str, dict[str, Any]]], source: str, name: str,
    input_field: str | None = None, target_field: str | None = None,
    choices_field: str | None = None, infer_choices: bool = True, input_template: str | None = None,
) -> Dataset:
    """Turn raw rows into Examples. Fields are found by name once, from the first row. With an
    ``input_template`` the input is rendered from the fields it names (``fields`` keeps them)."""
    if input_template is not None and input_field is not None:
        raise DataError(BOTH_INPUTS)
    template = InputTemplate.parse(input_template) if input_template is not None else None
    examples: list[Example] = []
    fields: tuple[str | None, str, str | None] | None = None
    for index, (where, row) in enumerate(rows):
        if fields is None:
            fields = (
                None if template else pick_field(row, input_field, INPUT_FIELDS, where, "input"),
                pick_field(row, target_field, TARGET_FIELDS, where, "target"),
                pick_field(row, choices_field, CHOICE_FIELDS, where, "choices", required=False),
            )
        f_in, f_target, f_choices = fields
        for field in (f_in, f_target):
            if field is not None and field not in row:
                raise DataError(f"{where}: missing field '{field}'")
        if template is not None:
            text, named = input_from_fields(template, row, where)
        else:
            assert f_in is not None
            text, named = as_text(row[f_in], where, f_in), ()
        raw_target = row[f_target]
        if isinstance(raw_target, list):
            targets = tuple(as_text(t, where, f_target) for t in raw_target)
        else:
            targets = (as_text(raw_target, where, f_target),)
        if not targets or not all(t.strip() for t in targets):
            raise DataError(f"{where}: field '{f_target}' is empty")
        if not text.strip():  # a template's empty text is its own error
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
        examples.append(Example(id=str(index), input=text, targets=targets, choices=choices, where=where,
                                fields=named))
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
    return [replace(e, targets=(e.target.strip(),), choices=choices) for e in examples]


def dataset_from_rows(rows: Sequence[Mapping[str, Any]], name: str = "dataset", input_field: str | None = None,
                      target_field: str | None = None, choices_field: str | None = None,
                      input_template: str | None = None) -> Dataset:
    """Rows given in Python (a list of dicts, as a JSONL file's lines) as a dataset; a bad row is
    named by its index: ``dataset[3]: field 'context' missing``."""
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise DataError(f"{name}: expected a list of dicts, got {type(rows).__name__}")
    checked = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"{name}[{i}]: expected a dict, got {type(row).__name__}")
        checked.append((f"{name}[{i}]", dict(row)))
    return rows_to_dataset(checked, source=name, name=name, input_field=input_field, target_field=target_field,
                           choices_field=choices_field, input_template=input_template)


def render_inputs(dataset: Dataset, input_template: str) -> Dataset:
    """``dataset`` with each example's input rendered from its ``fields`` by ``input_template``
    (a ``Dataset`` built in Python whose examples carry their fields)."""
    template = InputTemplate.parse(input_template)
    examples = []
    for e in dataset.examples:
        where = e.where or f"{dataset.source or dataset.name}: example {e.id}"
        text, named = input_from_fields(template, dict(e.fields), where)
        examples.append(replace(e, input=text, fields=named))
    return Dataset(dataset.name, examples, dataset.description, dataset.source)


def inputs_from_fields(input_template: str, inputs: Sequence[Mapping[str, Any]],
                  what: str = "input") -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """New inputs given as fields (``predict``): each rendered as the run renders its rows. A
    field the template does not name is an error too (a misspelt name would otherwise be lost)."""
    template = InputTemplate.parse(input_template)
    out = []
    for i, given in enumerate(inputs, start=1):
        where = f"{what} {i}"
        if not isinstance(given, Mapping):
            raise DataError(f"{where}: this run renders its input from fields ({', '.join(template.names)}): "
                            f"give them (--field NAME=VALUE or --input-json; Python: a dict), not {type(given).__name__}")
        unknown = [k for k in given if k not in template.names]
        if unknown:
            raise DataError(f"{where}: field '{unknown[0]}' is not named by the run's {TEMPLATE_FLAG} "
                            f"(it names: {', '.join(template.names)})")
        out.append(input_from_fields(template, given, where))
    return out
