"""Runs whose input is rendered from several fields (``--input-template``, ``input_template=``), on
the scripted model: the model sees the rendered text, the template is stored with the run and not
with its prompts, and a resume, ``predict`` and ``export`` render the same text."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import promptgym
from promptgym import api
from promptgym.cli import main
from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.models.scripted import request_text
from promptgym.paths import default_store_url
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask
from promptgym.testing import RecordingBackend

QA = "Question: {{ question }}\nContext: {{ context }}"
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]
SIZES = dict(budget=20, train_size=6, test_size=6, dev_size=0, quiet=True)


def _rows(n: int = 16) -> list[dict]:
    return [{"question": f"Is box {i} red?", "context": f"Box {i} is {['red', 'blue'][i % 2]}.",
             "answer": ["yes", "no"][i % 2]} for i in range(n)]


def _jsonl(tmp_path, rows=None):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows or _rows()))
    return path


def _recording():
    backend = RecordingBackend()
    return backend, {"scripted": backend}


def test_the_model_sees_the_rendered_input_and_the_template_stays_out_of_the_prompts(tmp_path):
    backend, backends = _recording()
    result = promptgym.optimize(str(_jsonl(tmp_path)), input_template=QA, task_model="scripted",
                                optimizer_model="scripted", backends=backends, **SIZES)
    assert any("Input: Question: Is box 3 red?\nContext: Box 3 is blue." in t for t in backend.texts)
    run = RunStore(default_store_url()).get_run(result.run_id)
    assert run["config"]["input_template"] == QA
    assert "question" not in json.dumps(run["result"]["best_prompt_full"])  # data, not part of a prompt
    plain = promptgym.optimize(str(_jsonl(tmp_path)), fields={"input": "question"}, task_model="scripted",
                               optimizer_model="scripted", **SIZES)
    assert result.initial_prompt.id == plain.initial_prompt.id  # a prompt's id knows nothing of the template


def test_resume_renders_the_same_inputs_and_repeats_no_call(tmp_path):
    result = promptgym.optimize(str(_jsonl(tmp_path)), input_template=QA, task_model="scripted",
                                optimizer_model="scripted", **SIZES)
    store = RunStore(default_store_url())
    store.set_status(result.run_id, "interrupted")
    backend, backends = _recording()
    again = promptgym.resume(result.run_id, backends=backends)
    assert backend.texts == []  # every request the same as before: all answered by the cache
    assert again.best_prompt == result.best_prompt and again["test_best"] == result["test_best"]


def test_rows_given_in_python_and_predict_with_fields(tmp_path):
    result = promptgym.optimize(_rows(), input_template=QA, task_model="scripted", optimizer_model="scripted",
                                **SIZES)
    assert result["dataset"] == "dataset"
    backend, backends = _recording()
    [answer] = api.predict(result.run_id, [{"question": "Is it red?", "context": "It is red."}], backends=backends)
    assert answer["input"] == "Question: Is it red?\nContext: It is red."
    assert answer["fields"] == {"question": "Is it red?", "context": "It is red."}
    assert answer["prediction"] in ("yes", "no")
    sent = ChoiceTask().request(result.best_prompt, Example("p", answer["input"], ("yes",), ("yes", "no")))
    assert backend.texts[0] == request_text(sent)
    with pytest.raises(PromptgymError, match="input 1: field 'context' missing"):
        api.predict(result.run_id, [{"question": "Q?"}])
    plain = promptgym.optimize(_rows(), fields={"input": "question"}, task_model="scripted",
                               optimizer_model="scripted", **SIZES)
    with pytest.raises(PromptgymError, match="takes text inputs .it has no input template., got dict"):
        api.predict(plain.run_id, [{"question": "Q?"}])


def test_a_template_with_an_input_field_is_refused_before_a_run_is_stored(tmp_path):
    with pytest.raises(PromptgymError, match="^--input-template and --input-field both say what the input is"):
        promptgym.optimize(_rows(), input_template=QA, fields={"input": "question"}, task_model="scripted",
                           optimizer_model="scripted", **SIZES)
    assert api.runs() == []


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _cli_run(tmp_path, *template: str) -> str:
    result = _cli("optimize", "--dataset", str(_jsonl(tmp_path)), *template, *SCRIPTED, "--budget", "20",
                  "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["run_id"]


def test_cli_template_as_text_with_line_breaks_or_from_a_file_is_the_same_run(tmp_path):
    path = tmp_path / "template.txt"
    path.write_text(QA + "\n")  # a file's final line break is not part of the template
    by_text = _cli_run(tmp_path, "--input-template", "Question: {{ question }}\\nContext: {{ context }}")
    by_file = _cli_run(tmp_path, "--input-template", f"@{path}")
    store = RunStore(default_store_url())
    assert store.get_run(by_text)["config"]["input_template"] == QA
    assert store.get_run(by_file)["config"]["input_template"] == QA


def test_cli_predict_takes_fields_or_json_and_export_carries_the_template(tmp_path):
    run_id = _cli_run(tmp_path, "--input-template", QA)
    by_field = _cli("predict", run_id, "--field", "question=Is it red?", "--field", "context=It is=red.", "--json")
    assert by_field.exit_code == 0, by_field.stderr
    [row] = json.loads(by_field.stdout)
    assert row["input"] == "Question: Is it red?\nContext: It is=red."
    by_json = _cli("predict", run_id, "--input-json", '{"question": "Is it red?", "context": "It is=red."}')
    assert by_json.exit_code == 0 and by_json.stdout == (
        f"{row['prediction']}\t" + '{"question": "Is it red?", "context": "It is=red."}\n')
    record = json.loads(_cli("export", run_id).stdout)
    assert record["input_template"]["jinja"] == QA and record["input_template"]["fields"] == ["question", "context"]
    assert record["template"]["messages"][-1]["content"].endswith("Input: Question: {question}\nContext: {context}")
    assert "{input}" not in record["template"]["placeholders"]
    snippet = _cli("export", run_id, "--format", "python").stdout
    namespace: dict = {}
    exec(compile(snippet, "<export>", "exec"), namespace)  # noqa: S102 - the test of a generated snippet
    best = Prompt.from_dict(RunStore(default_store_url()).get_run(run_id)["result"]["best_prompt_full"])
    sent = ChoiceTask().request(best, Example("p", row["input"], ("yes",), ("yes", "no")))
    built = namespace["build_messages"](namespace["build_input"]({"question": "Is it red?", "context": "It is=red."}))
    assert tuple((m["role"], m["content"]) for m in built) == sent.messages


@pytest.mark.parametrize("args, expected", [
    (["--field", "question"], "--field 'question': expected NAME=VALUE"),
    (["--field", "question=a", "--field", "question=b"], "--field question: given twice"),
    (["--input-json", "[1]"], "--input-json '[1]': expected a JSON object of fields, got list"),
    (["--input-json", "{bad"], "--input-json '{bad': not valid JSON"),
    (["--input", "x", "--field", "question=y"], "give the inputs one way: --input TEXT"),
    ([], "give the inputs one way: --input TEXT"),
    (["--input", "plain"], "input 1: this run renders its input from fields (question, context): give them"),
])
def test_cli_predict_input_errors_are_one_line(tmp_path, args, expected):
    run_id = _cli_run(tmp_path, "--input-template", QA)
    result = _cli("predict", run_id, *args)
    assert result.exit_code == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"promptgym: error: {expected}")


@pytest.mark.parametrize("args, expected", [
    (["--input-template", QA, "--input-field", "question"],
     "--input-template and --input-field both say what the input is: give one (the template names its fields itself)"),
    (["--input-template", "{{ question }} {{ passage }}"], ":1: field 'passage' missing (named by --input-template)"),
    (["--input-template", "{{ question"], "--input-template: line 1: unexpected end of template"),
    (["--input-template", "@missing.txt"], "--input-template @missing.txt: cannot read (No such file or directory)"),
])
def test_cli_template_errors_are_one_line_before_a_run_is_stored(tmp_path, args, expected):
    result = _cli("optimize", "--dataset", str(_jsonl(tmp_path)), *args, *SCRIPTED, "--dry-run")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("promptgym: error: ") and expected in line
    assert api.runs() == []
