"""A run's stored config rebuilds its data: inline rows keep an example's fields, and a dataset
named by its spec is loaded again with the run's input template."""

from __future__ import annotations

import json

from promptgym.data.dataset import Dataset, Example
from promptgym.runner.config import dataset_from_config, dataset_to_json

QA = "Question: {{ question }}\nContext: {{ context }}"


def test_inline_rows_keep_the_fields_and_rows_without_them_store_as_before():
    with_fields = Example("0", "Question: q\nContext: c", ("yes",), ("yes", "no"), where="rows[0]",
                          fields=(("question", "q"), ("context", "c")))
    plain = Example("1", "text", ("no",), ("yes", "no"))
    stored = json.loads(json.dumps(dataset_to_json(Dataset("mine", [with_fields, plain]))))
    assert "fields" not in stored["examples"][1]
    back = dataset_from_config({"inline_dataset": stored})
    assert back.examples == [with_fields, plain]
    assert back.examples[0].fields == (("question", "q"), ("context", "c"))


def test_a_dataset_spec_is_loaded_again_with_the_runs_template(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "context": f"c{i}", "answer": "a"}) + "\n"
                            for i in range(3)))
    config = {"dataset": str(path), "fields": {}, "input_template": QA}
    assert [e.input for e in dataset_from_config(config).examples] == [
        f"Question: q{i}\nContext: c{i}" for i in range(3)]
    assert [e.input for e in dataset_from_config({"dataset": str(path), "fields": {}}).examples] == [
        "q0", "q1", "q2"]  # without the template: the question field, as before
