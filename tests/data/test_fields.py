"""Inputs rendered from several named fields by an input template (``promptgym.data.fields``), in
files, rows given in Python, exact split files and shipped examples; every bad template or row is
one line naming the file, row and field."""

from __future__ import annotations

import json

import pytest

from promptgym.data.dataset import Dataset, Example
from promptgym.data.fields import InputTemplate
from promptgym.data.loaders import load_dataset, load_split_files
from promptgym.data.rows import dataset_from_rows, inputs_from_fields, render_inputs
from promptgym.errors import DataError

QA = "Question: {{ question }}\nContext: {{ context }}"
ROWS = [{"question": f"Is box {i} red?", "context": f"Box {i} is {['red', 'blue'][i % 2]}.",
         "answer": ["yes", "no"][i % 2], "id": i} for i in range(6)]


def _jsonl(tmp_path, rows, name="qa.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _error(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the template ------------------------------------------------------------------------------------

def test_a_template_names_its_fields_in_order_of_appearance_and_renders_them_as_values():
    template = InputTemplate.parse("{{ context }} / {{ question }} / {{ context | upper }}{% for w in words %}{{ w }}{% endfor %}")
    assert template.names == ("context", "question", "words")  # w is the loop's own, not a field
    qa = InputTemplate.parse(QA)
    braces = {"question": "{{ 7 * 7 }} {% raw %}", "context": "{input}"}
    assert qa.render(braces, "row") == "Question: {{ 7 * 7 }} {% raw %}\nContext: {input}"


@pytest.mark.parametrize("text, expected", [
    ("", "--input-template: empty template"),
    ("Question: {{ question ", "--input-template: line 1: unexpected end of template"),
    ("no fields at all", "--input-template: names no field"),
])
def test_a_bad_template_is_one_line(text, expected):
    assert _error(lambda: InputTemplate.parse(text)).startswith(expected)


def test_plain_templates_come_apart_into_pieces_and_others_do_not():
    assert InputTemplate.parse(QA).pieces() == ("Question: ", "question", "\nContext: ", "context", "")
    assert InputTemplate.parse("{{ a }}{{ b }}\n").pieces() == ("", "a", "", "b", "\n")
    for logic in ("{% if context %}C: {{ context }}{% endif %}", "{{ question | upper }}", "{{ q.strip() }}"):
        assert InputTemplate.parse(logic).pieces() is None


# -- rows --------------------------------------------------------------------------------------------

def test_jsonl_rows_render_the_input_and_keep_the_fields(tmp_path):
    data = load_dataset(str(_jsonl(tmp_path, ROWS)), input_template=QA)
    first = data.examples[0]
    assert first.input == "Question: Is box 0 red?\nContext: Box 0 is red."
    assert first.fields == (("question", "Is box 0 red?"), ("context", "Box 0 is red."))
    assert data.labels == ("yes", "no") and first.id == "0"  # labels inferred as without a template
    assert [e.id for e in data.examples] == [e.id for e in load_dataset(str(_jsonl(tmp_path, ROWS)),
                                                                          input_field="question").examples]


def test_csv_rows_and_numbers_as_text(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,context,year,answer\nWhen?,It was 1999.,1999,yes\nWho?,Ann did.,2001,no\n")
    data = load_dataset(str(path), input_template="{{ question }} ({{ year }}) {{ context }}", infer_choices=False)
    assert [e.input for e in data.examples] == ["When? (1999) It was 1999.", "Who? (2001) Ann did."]
    rows = dataset_from_rows([{"q": "x", "n": 3, "answer": "a"}], input_template="{{ q }}={{ n }}")
    assert rows.examples[0].input == "x=3" and rows.examples[0].fields == (("q", "x"), ("n", "3"))


def test_a_missing_field_names_the_file_row_and_field(tmp_path):
    rows = [*ROWS[:3], {"question": "Is it?", "answer": "no"}]
    path = _jsonl(tmp_path, rows)
    assert _error(lambda: load_dataset(str(path), input_template=QA)) == (
        f"{path}:4: field 'context' missing (named by --input-template)")
    assert _error(lambda: dataset_from_rows(rows, input_template=QA)) == (
        "dataset[3]: field 'context' missing (named by --input-template)")


@pytest.mark.parametrize("row, expected", [
    ({"question": None, "context": "c", "answer": "a"}, "field 'question' is null"),
    ({"question": ["a"], "context": "c", "answer": "a"}, "field 'question' must be text, got list"),
    ({"question": " ", "context": "", "answer": "a"}, "--input-template renders empty text"),
])
def test_fields_must_be_text_and_the_input_not_empty(tmp_path, row, expected):
    path = _jsonl(tmp_path, [row])
    message = _error(lambda: load_dataset(str(path), input_template="{{ question }}{{ context }}"))
    assert message.startswith(f"{path}:1: {expected}")


def test_a_template_and_an_input_field_together_is_one_line(tmp_path):
    path = _jsonl(tmp_path, ROWS)
    assert _error(lambda: load_dataset(str(path), input_field="question", input_template=QA)) == (
        "--input-template and --input-field both say what the input is: give one (the template names its "
        "fields itself)")


def test_sources_without_named_fields_refuse_a_template():
    assert _error(lambda: load_dataset("bigbench:navigate", input_template=QA)).startswith(
        "bigbench:navigate: --input-template needs rows with named fields")


def test_a_shipped_example_takes_a_template():
    data = load_dataset("example:sentiment", input_template="Review: {{ input }}")
    assert data.examples[0].input == "Review: " + load_dataset("example:sentiment").examples[0].input


def test_exact_split_files_keep_the_fields_and_their_ids(tmp_path):
    train, test = _jsonl(tmp_path, ROWS[:4], "train.jsonl"), _jsonl(tmp_path, ROWS[4:], "test.jsonl")
    splits = load_split_files(str(train), test=str(test), input_template=QA)
    assert [e.id for e in splits.train + splits.test] == ["train-0", "train-1", "train-2", "train-3",
                                                         "test-0", "test-1"]
    assert splits.test[1].fields == (("question", "Is box 5 red?"), ("context", "Box 5 is blue."))
    assert splits.test[1].choices == ("yes", "no")  # the label set inferred over both files


# -- Python objects and new inputs -------------------------------------------------------------------

def test_a_dataset_of_examples_with_fields_is_rendered_and_one_without_is_named():
    examples = [Example(str(i), "", ("yes",), fields=(("question", f"q{i}"), ("context", f"c{i}"))) for i in range(2)]
    rendered = render_inputs(Dataset("mine", examples), QA)
    assert [e.input for e in rendered.examples] == ["Question: q0\nContext: c0", "Question: q1\nContext: c1"]
    bare = Dataset("mine", [Example("7", "text", ("yes",))])
    assert _error(lambda: render_inputs(bare, QA)) == "mine: example 7: field 'question' missing (named by --input-template)"


def test_rows_given_in_python_must_be_a_list_of_dicts():
    assert _error(lambda: dataset_from_rows([ROWS[0], "text"], input_template=QA)) == (
        "dataset[1]: expected a dict, got str")


def test_new_inputs_render_as_the_rows_did_and_unknown_or_missing_fields_are_named():
    [(text, fields)] = inputs_from_fields(QA, [{"context": "C.", "question": "Q?"}])
    assert text == "Question: Q?\nContext: C." and fields == (("question", "Q?"), ("context", "C."))
    assert _error(lambda: inputs_from_fields(QA, [{"question": "Q?", "context": "C."}, {"question": "Q?"}])) == (
        "input 2: field 'context' missing (named by --input-template)")
    assert _error(lambda: inputs_from_fields(QA, [{"question": "Q", "context": "C", "contxt": "C"}])) == (
        "input 1: field 'contxt' is not named by the run's --input-template (it names: question, context)")
    assert _error(lambda: inputs_from_fields(QA, ["plain text"])).startswith(
        "input 1: this run renders its input from fields (question, context): give them")
