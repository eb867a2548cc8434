"""JSONL / CSV loading, every bad-input case (one-line errors naming file, row, field), splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptgym.data.dataset import Dataset, Example, split_dataset
from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError
from support import one_line_data_error


def _jsonl(path: Path, rows: list) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


_error = one_line_data_error


# -- JSONL ------------------------------------------------------------------------------------------

def test_jsonl_auto_detects_fields_and_infers_labels(tmp_path):
    rows = [{"text": f"review {i}", "label": ["good", "bad"][i % 2], "extra": i} for i in range(6)]
    ds = load_dataset(_jsonl(tmp_path / "sent.jsonl", rows))
    assert ds.name == "sent" and len(ds) == 6
    assert ds.examples[0] == Example(id="0", input="review 0", targets=("good",), choices=("good", "bad"))
    assert ds.labels == ("good", "bad") and ds.is_choice
    assert [e.id for e in ds.examples] == [str(i) for i in range(6)]


@pytest.mark.parametrize("in_field, out_field", [
    ("input", "target"), ("question", "answer"), ("sentence", "output"), ("query", "label"),
])
def test_jsonl_field_name_variants(tmp_path, in_field, out_field):
    ds = load_dataset(_jsonl(tmp_path / "d.jsonl", [{in_field: "q", out_field: "a"}]))
    assert ds.examples[0].input == "q" and ds.examples[0].targets == ("a",)


def test_jsonl_explicit_fields(tmp_path):
    rows = [{"prompt": "2+2", "gold": "4", "input": "ignored", "target": "ignored"}]
    ds = load_dataset(_jsonl(tmp_path / "d.jsonl", rows), input_field="prompt", target_field="gold")
    assert ds.examples[0].input == "2+2" and ds.examples[0].targets == ("4",)


def test_jsonl_list_targets_are_all_accepted_answers(tmp_path):
    rows = [{"question": "capital of France?", "answer": ["Paris", "paris, France"]},
            {"question": "6*7", "answer": 42}]
    ds = load_dataset(_jsonl(tmp_path / "qa.jsonl", rows))
    assert ds.examples[0].targets == ("Paris", "paris, France") and ds.examples[0].choices is None
    assert ds.examples[1].targets == ("42",)
    assert not ds.is_choice


@pytest.mark.parametrize("choices", [["yes", "no", "maybe"], "yes|no|maybe", " yes | no |maybe"])
def test_jsonl_choices_as_list_or_pipe_string(tmp_path, choices):
    ds = load_dataset(_jsonl(tmp_path / "mc.jsonl", [{"input": "q", "target": "no", "choices": choices}]))
    assert ds.examples[0].choices == ("yes", "no", "maybe")
    assert ds.examples[0].target == "no"


def test_jsonl_options_field_and_per_example_choices(tmp_path):
    rows = [{"input": "q1", "target": "a", "options": ["a", "b"]},
            {"input": "q2", "target": "z", "options": ["x", "y", "z"]}]
    ds = load_dataset(_jsonl(tmp_path / "mc.jsonl", rows))
    assert [e.choices for e in ds.examples] == [("a", "b"), ("x", "y", "z")]
    assert ds.is_choice and ds.labels is None


def test_label_set_not_inferred_for_free_text(tmp_path):
    rows = [{"input": f"q{i}", "target": f"answer {i}"} for i in range(6)]
    ds = load_dataset(_jsonl(tmp_path / "d.jsonl", rows))
    assert all(e.choices is None for e in ds.examples)
    few = [{"input": f"q{i}", "target": ["a", "b", "c"][i % 3]} for i in range(4)]  # 3 labels, 4 rows
    assert load_dataset(_jsonl(tmp_path / "few.jsonl", few)).examples[0].choices is None
    assert load_dataset(_jsonl(tmp_path / "few2.jsonl", few), infer_choices=False).examples[0].choices is None
    many = [{"input": f"q{i}", "target": ["a", "b", "c"][i % 3]} for i in range(6)]
    assert load_dataset(_jsonl(tmp_path / "many.jsonl", many)).examples[0].choices == ("a", "b", "c")


def test_jsonl_blank_lines_crlf_bom_and_unicode_separators(tmp_path):
    text = ('\ufeff{"input": "a\u2028b", "target": "x"}\r\n\r\n'
            '{"input": "c", "target": "y"}\r\n')
    ds = load_dataset(_write(tmp_path / "d.jsonl", text), infer_choices=False)
    assert [e.input for e in ds.examples] == ["a\u2028b", "c"]


def test_json_and_ndjson_extensions(tmp_path):
    for ext in ("json", "ndjson", "JSONL"):
        assert len(load_dataset(_jsonl(tmp_path / f"d.{ext}", [{"input": "a", "target": "b"}]))) == 1


# -- CSV --------------------------------------------------------------------------------------------

def test_csv_auto_fields_and_pipe_choices(tmp_path):
    text = 'question,answer,choices\n"Is it, really?",no,yes|no\nSure?,yes,yes|no\n'
    ds = load_dataset(_write(tmp_path / "mc.csv", text))
    assert ds.examples[0] == Example("0", "Is it, really?", ("no",), ("yes", "no"))
    assert ds.examples[1].target == "yes"


def test_csv_explicit_fields_and_inferred_labels(tmp_path):
    text = "review,stars,sentiment\n" + "".join(f"r{i},{i},{['pos', 'neg'][i % 2]}\n" for i in range(4))
    ds = load_dataset(_write(tmp_path / "d.csv", text), input_field="review", target_field="sentiment")
    assert [e.input for e in ds.examples] == ["r0", "r1", "r2", "r3"]
    assert ds.labels == ("pos", "neg")


def test_tsv_and_bom_csv(tmp_path):
    assert load_dataset(_write(tmp_path / "d.tsv", "text\tlabel\na, b\tc\n")).examples[0].input == "a, b"
    assert load_dataset(_write(tmp_path / "b.csv", "\ufefftext,label\nhello,a\n")).examples[0].input == "hello"


# -- bad input ------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    assert _error(str(tmp_path / "nope.jsonl")) == f"{tmp_path / 'nope.jsonl'}: no such file"


def test_directory(tmp_path):
    (tmp_path / "data.jsonl").mkdir()
    assert "is a directory" in _error(str(tmp_path / "data.jsonl"))


def test_unknown_extension(tmp_path):
    msg = _error(_write(tmp_path / "data.txt", '{"input": "a", "target": "b"}\n'))
    assert "unknown file type '.txt'" in msg


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"input": "a", "target": "b"}\n\n{"input": "c", "target":\n')
    msg = _error(path)
    assert msg.startswith(f"{path}:3: not valid JSON")


def test_non_object_row(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"input": "a", "target": "b"}\n["c", "d"]\n')
    assert _error(path) == f"{path}:2: expected a JSON object, got list"


def test_not_utf8(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"input": "caf\xe9", "target": "b"}\n')
    assert "not UTF-8" in _error(str(path))


def test_missing_field_names_field_and_row(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"input": "a", "target": "b"}, {"input": "c", "target": "d"},
                                         {"input": "e"}])
    assert _error(path) == f"{path}:3: missing field 'target'"


def test_missing_field_in_first_row_lists_what_was_looked_for(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"body": "a", "target": "b"}])
    msg = _error(path)
    assert msg.startswith(f"{path}:1: missing input field") and "question" in msg


def test_missing_explicit_field(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"input": "a", "target": "b"}])
    assert _error(path, target_field="gold") == f"{path}:1: missing field 'gold'"


@pytest.mark.parametrize("row, field, what", [
    ({"input": None, "target": "b"}, "input", "is null"),
    ({"input": "a", "target": None}, "target", "is null"),
    ({"input": "   ", "target": "b"}, "input", "is empty"),
    ({"input": "a", "target": ""}, "target", "is empty"),
    ({"input": "a", "target": []}, "target", "is empty"),
    ({"input": {"nested": 1}, "target": "b"}, "input", "must be text"),
])
def test_null_or_empty_field(tmp_path, row, field, what):
    path = _jsonl(tmp_path / "d.jsonl", [{"input": "ok", "target": "ok"}, row])
    msg = _error(path)
    assert msg.startswith(f"{path}:2: field '{field}' ") and what in msg


def test_target_not_among_choices(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"input": "a", "target": "maybe", "choices": ["yes", "no"]}])
    assert _error(path) == f"{path}:1: target 'maybe' is not one of the choices ['yes', 'no']"


def test_too_few_choices_and_missing_choices_in_a_later_row(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"input": "a", "target": "yes", "choices": "yes"}])
    assert "needs at least two options" in _error(path)
    path = _jsonl(tmp_path / "e.jsonl", [{"input": "a", "target": "yes", "choices": "yes|no"},
                                         {"input": "b", "target": "no"}])
    assert _error(path) == f"{path}:2: missing field 'choices'"


@pytest.mark.parametrize("name, text, expected", [
    ("empty.jsonl", "", "no examples"),
    ("blank.jsonl", "\n  \n", "no examples"),
    ("empty.csv", "", "empty file"),
    ("header.csv", "text,label\n", "no examples"),
])
def test_empty_files(tmp_path, name, text, expected):
    path = _write(tmp_path / name, text)
    msg = _error(path)
    assert msg.startswith(path) and expected in msg


def test_csv_ragged_rows_name_the_line(tmp_path):
    more = _write(tmp_path / "more.csv", "text,label\nfine,a\nhello,a,extra\n")
    assert _error(more) == f"{more}:3: more cells than header columns"
    fewer = _write(tmp_path / "fewer.csv", "text,label\nfine,a\nhello\n")
    assert _error(fewer) == f"{fewer}:3: fewer cells than header columns"


def test_csv_missing_column(tmp_path):
    path = _write(tmp_path / "d.csv", "text,stars\nhello,5\n")
    assert "missing target field" in _error(path)


# -- splits -------------------------------------------------------------------------------------------

def _dataset(n: int) -> Dataset:
    return Dataset("d", [Example(str(i), f"input {i}", (str(i % 2),)) for i in range(n)], source="d.jsonl")


def _ids(examples) -> list[str]:
    return [e.id for e in examples]


def test_split_sizes_and_disjoint():
    s = split_dataset(_dataset(50), train_size=20, test_size=15, dev_size=10, seed=1)
    assert (len(s.train), len(s.dev), len(s.test)) == (20, 10, 15)
    all_ids = _ids(s.train) + _ids(s.dev) + _ids(s.test)
    assert len(set(all_ids)) == 45


def test_a_dev_pool_goes_on_with_the_examples_left_and_leaves_train_and_test_alone():
    fixed = split_dataset(_dataset(50), train_size=20, test_size=15, dev_size=10, seed=1)
    pooled = split_dataset(_dataset(50), train_size=20, test_size=15, dev_size=10, seed=1, dev_rest=100)
    assert _ids(pooled.train) == _ids(fixed.train) and _ids(pooled.test) == _ids(fixed.test)
    assert _ids(pooled.dev)[:10] == _ids(fixed.dev) and len(pooled.dev) == 15  # the planned dev first, then all 5
    assert sorted(_ids(pooled.train) + _ids(pooled.dev) + _ids(pooled.test), key=int) == [str(i) for i in range(50)]
    again = split_dataset(_dataset(50), train_size=20, test_size=15, dev_size=10, seed=1, dev_rest=3)
    assert _ids(again.dev) == _ids(pooled.dev)[:13]  # a fixed, seeded order, cut where asked


def test_split_is_seeded():
    a = split_dataset(_dataset(50), 20, 15, seed=7)
    b = split_dataset(_dataset(50), 20, 15, seed=7)
    c = split_dataset(_dataset(50), 20, 15, seed=8)
    assert _ids(a.train) == _ids(b.train) and _ids(a.test) == _ids(b.test)
    assert _ids(a.test) != _ids(c.test)
    assert _ids(a.train) != [str(i) for i in range(20)]  # actually shuffled


def test_test_split_unchanged_when_train_size_changes():
    small = split_dataset(_dataset(60), train_size=5, test_size=20, seed=3)
    large = split_dataset(_dataset(60), train_size=40, test_size=20, seed=3)
    assert _ids(small.test) == _ids(large.test)
    assert _ids(small.train) == _ids(large.train)[:5]


def test_whole_dataset_fits_exactly():
    s = split_dataset(_dataset(10), train_size=6, test_size=4)
    assert sorted(_ids(s.train) + _ids(s.test), key=int) == [str(i) for i in range(10)]


@pytest.mark.parametrize("train, test, dev", [(40, 15, 0), (10, 10, 31), (1, 51, 0)])
def test_too_large_sizes_are_a_data_error(train, test, dev):
    with pytest.raises(DataError, match=r"d.jsonl: asked for .* but the dataset has 50"):
        split_dataset(_dataset(50), train_size=train, test_size=test, dev_size=dev)


def test_train_size_must_be_positive():
    with pytest.raises(DataError, match="at least 1"):
        split_dataset(_dataset(10), train_size=0, test_size=2)
