"""--reward and --length-penalty from the CLI and the API, and the code task end to end on a
scripted model (the real embedded model's run is recorded in the report, not here)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.data.dataset import Dataset, Example
from promptgym.data.loaders import load_dataset
from promptgym.errors import PromptgymError
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.runner.backends import using
from promptgym.runner.setup import prepare
from promptgym.sandbox import bwrap_path
from promptgym.store.runs import RunStore
from promptgym.tasks.code import CodeTask
from promptgym.tasks.rewards import with_length_penalty
from promptgym.tasks.text_metrics import RougeL

from support import write_reviews

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]
SMALL = ["--budget", "10", "--train-size", "6", "--test-size", "4", "--dev-size", "0", "--json", "--quiet"]


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_reviews(tmp_path, 20)


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "rewards.py"
    path.write_text("def quarter(prediction, example):\n    return 0.25\n"
                    "def unary(prediction):\n    return 1.0\n")
    return path


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _one_line_error(result, contains: str) -> None:
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("promptgym: error:"), result.stderr
    assert contains in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize("spec, says", [
    ("no_such_module_abc:score", "reward 'no_such_module_abc:score': cannot import module 'no_such_module_abc'"),
    ("{file}:unary", "unary(prediction) cannot be called as reward(prediction, example)"),
    ("{file}:nothing", "has no attribute 'nothing'"),
    ("{dir}/absent.py:f", "absent.py: no such file"),
    ("bleu", "expected one of accuracy, exact-match, code-tests, code-tests-all, contains, token-f1, rouge-l, "
             "numeric, json-schema:PATH, judge:RUBRIC.md, MODULE:FUNCTION or FILE.py:FUNCTION"),
    ("json-schema:{dir}/absent.json", "absent.json: no such file"),
])
def test_bad_reward_spec_is_one_line_and_starts_no_run(dataset, reward_file, spec, says):
    result = _invoke("optimize", "--dataset", dataset, *SCRIPTED, *SMALL,
                     "--reward", spec.format(file=reward_file, dir=reward_file.parent))
    _one_line_error(result, says)
    assert RunStore(api.default_store_url()).list_runs() == []


def test_length_weight_needs_length_penalty(dataset):
    _one_line_error(_invoke("optimize", "--dataset", dataset, *SCRIPTED, *SMALL, "--length-weight", "0.3"),
                    "--length-weight needs --length-penalty")


def test_reward_from_a_file_scores_the_run_and_is_stored(dataset, reward_file):
    result = _invoke("optimize", "--dataset", dataset, *SCRIPTED, *SMALL, "--reward", f"{reward_file}:quarter")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["initial_score"] == 0.25 and summary["test_initial"] == 0.25 and summary["best_score"] == 0.25
    run = RunStore(api.default_store_url()).get_run(summary["run_id"])
    assert run["config"]["reward"] == f"{reward_file}:quarter"
    again = api.resume(summary["run_id"])  # a finished run: its stored result
    assert again["test_initial"] == 0.25


def _fixed_reply_backend(reply) -> dict[str, ScriptedBackend]:
    """``backends=``: the scripted model answering every request with ``reply(request)``."""
    return {"scripted": ScriptedBackend(reply=reply, name="fixed")}


def test_length_penalty_through_the_api(dataset):
    # every answer is six words; reward 1; 3 words allowed, weight 0.4: 1 - 0.4 * min(1, 3/3) = 0.6
    backends = _fixed_reply_backend(lambda request: "one two three four five six")
    data = load_dataset(dataset, infer_choices=False)  # free text: the reply is the prediction
    result = api.optimize(data, method="ape", budget=10, train_size=6, test_size=4, dev_size=0,
                          task_model="scripted", optimizer_model="scripted",
                          reward=with_length_penalty(always_one, 3, 0.4), backends=backends)
    assert result["initial_score"] == pytest.approx(0.6) and result["test_initial"] == pytest.approx(0.6)
    with using(backends):
        cli = _invoke("optimize", "--dataset", dataset, *SCRIPTED, *SMALL, "--reward", "exact-match",
                      "--length-penalty", "2", "--length-weight", "0.5")
    assert cli.exit_code == 0, cli.output  # on a choice dataset: the label (1 word) is never penalised


def always_one(prediction, example):
    return 1.0


def test_unnamed_reward_must_be_given_again_to_resume(dataset):
    backends = _fixed_reply_backend(lambda request: "positive")
    data = load_dataset(dataset, infer_choices=False)
    result = api.optimize(data, method="ape", budget=10, train_size=6, test_size=4, dev_size=0,
                          task_model="scripted", optimizer_model="scripted", reward=lambda p, e: 0.5,
                          backends=backends)
    assert result["test_initial"] == 0.5
    store = RunStore(api.default_store_url())
    store.set_status(result.run_id, "interrupted")  # as if killed: resume must rebuild the task
    with pytest.raises(PromptgymError, match="pass it again"):
        api.resume(result.run_id, backends=backends)
    assert api.resume(result.run_id, reward=lambda p, e: 0.5, backends=backends)["test_initial"] == 0.5
    assert api.predict(result.run_id, ["Review: fine."], backends=backends)[0]["prediction"] == "positive"  # no reward


@pytest.mark.skipif(bwrap_path() is None, reason="needs bubblewrap (scripts/setup.sh installs it)")
def test_code_example_end_to_end_on_a_scripted_model():
    data = load_dataset("example:python-functions")
    solutions = {e.input: e.targets[0] for e in data.examples}

    def reply(request):
        text = request_text(request)
        for task, solution in solutions.items():
            if f"Input: {task}" in text:  # the task model: answer with the right code in a fence
                return f"Here you go:\n```python\n{solution}\n```"
        return "Write the Python function."  # the optimizer model's proposals

    result = api.optimize("example:python-functions", method="ape", budget=12, train_size=4, test_size=4,
                          dev_size=0, task_model="scripted", optimizer_model="scripted",
                          backends=_fixed_reply_backend(reply))
    assert result["initial_score"] == 1.0 and result["test_initial"] == 1.0
    config = RunStore(api.default_store_url()).get_run(result.run_id)["config"]
    assert isinstance(prepare(config, check_lengths=False).task, CodeTask)  # the stored run rebuilds its task


def test_example_summaries_is_scored_by_rouge_l_with_its_brevity_term():
    """The scripted model as a summarizer that writes the reference and 20 filler words: each answer
    scores its ROUGE-L minus 0.5 x (words - 25) / 25, as the example's meta says, and a resumed run
    scores the same."""
    references = {e.input: e.target for e in load_dataset("example:summaries").examples}
    caps = []

    def reply(request):
        passages = [p for p in references if f"Input: {p}" in request_text(request)]
        if not passages:
            return "Write a short summary."  # the optimizer model's proposals
        caps.append(request.max_tokens)
        return answer(references[passages[0]])

    def answer(reference: str) -> str:
        return reference + " zzz" * 20

    backends = {"summarizer": ScriptedBackend(reply=reply, name="summarizer")}
    result = api.optimize("example:summaries", method="ape", budget=12, train_size=4, test_size=5, dev_size=0,
                          task_model="summarizer", optimizer_model="scripted", backends=backends)
    assert result["initial_prompt"] == "Summarize the text in one sentence."
    assert caps and set(caps) == {64}  # the example's own answer cap
    config = RunStore(api.default_store_url()).get_run(result.run_id)["config"]
    with using(backends):
        test = prepare(config, check_lengths=False).splits.test
    rouge = RougeL()
    penalty = [0.5 * min(1.0, max(0, len(answer(e.target).split()) - 25) / 25) for e in test]
    assert all(p > 0 for p in penalty)  # every answer is long enough to be penalised
    expected = sum(rouge(answer(e.target), e) - p for e, p in zip(test, penalty)) / len(test)
    assert result["test_initial"] == pytest.approx(expected)
    RunStore(api.default_store_url()).set_status(result.run_id, "interrupted")  # as if killed
    assert api.resume(result.run_id, backends=backends)["test_initial"] == pytest.approx(expected)


def test_a_numeric_reward_round_trips_through_resume():
    data = Dataset("sums", [Example(f"s{i}", f"What is {i} + {i + 1000}?", (f"{i} + {i + 1000} = {2 * i + 1000}",))
                            for i in range(12)])

    def reply(request):
        found = re.findall(r"What is (\d+) \+ (\d+)\?", request_text(request))
        if not found:
            return "Add the numbers."
        a, b = map(int, found[-1])
        return f"The sum is ${a + b:,} in all."  # right, but never an exact match

    backends = _fixed_reply_backend(reply)
    result = api.optimize(data, method="ape", budget=10, train_size=6, test_size=6, dev_size=0, reward="numeric",
                          task_model="scripted", optimizer_model="scripted", backends=backends)
    assert result["test_initial"] == 1.0 and result["initial_score"] == 1.0
    store = RunStore(api.default_store_url())
    assert store.get_run(result.run_id)["config"]["reward"] == "numeric"
    store.set_status(result.run_id, "interrupted")  # as if killed: resume rebuilds the reward from its spec
    assert api.resume(result.run_id, backends=backends)["test_initial"] == 1.0


def test_json_schema_reward_reports_per_field_scores(tmp_path):
    rows = [{"input": f"Who is P{i}?", "target": json.dumps({"name": f"P{i}", "age": 20 + i})} for i in range(16)]
    data_file = tmp_path / "people.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    schema = tmp_path / "person.json"
    schema.write_text(json.dumps({"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}}))

    def reply(request):  # the name right, the age always wrong
        found = re.findall(r"Who is (P\d+)\?", request_text(request))
        return f'```json\n{{"name": "{found[-1]}", "age": 0}}\n```' if found else "Extract the fields."

    args = ["optimize", "--dataset", str(data_file), *SCRIPTED, "--budget", "10", "--train-size", "6",
            "--test-size", "4", "--dev-size", "0", "--quiet", "--reward", f"json-schema:{schema}"]
    with using(_fixed_reply_backend(reply)):
        as_json = _invoke(*args, "--json")
        as_table = _invoke(*args)
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert summary["test_initial"] == 0.5
    assert summary["field_scores"] == {"start": {"name": 1.0, "age": 0.0}, "returned": {"name": 1.0, "age": 0.0}}
    assert "per field on test (initial -> returned): name 1.000 -> 1.000, age 0.000 -> 0.000" in as_table.stdout


# -- a judge (--reward judge:RUBRIC.md) --------------------------------------------------------------

@pytest.fixture
def rubric(tmp_path):
    path = tmp_path / "rubric.md"
    path.write_text("The answer names the stay's quality in one word.")
    return path


@pytest.fixture
def free_text(tmp_path) -> str:
    """Reviews with a free-text reference each (no label set: a generation task)."""
    path = tmp_path / "summaries.jsonl"
    path.write_text("".join(json.dumps({"input": f"Review {i}: we stayed {i} nights and it was fine.",
                                        "target": f"A fine stay of {i} nights."}) + "\n" for i in range(20)))
    return str(path)


def test_a_judge_whose_replies_hold_no_score_scores_zero_counts_them_and_finishes(free_text, rubric):
    # the scripted model's canned replies are instructions, never "Score: N"
    result = _invoke("optimize", "--dataset", free_text, *SCRIPTED, *SMALL, "--reward", f"judge:{rubric}",
                     "--judge-model", "scripted", "--judge-order", "both", "--judge-max-words", "5",
                     "--judge-scoring", "generate")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["initial_score"] == 0.0 and summary["test_initial"] == 0.0
    judge = summary["judge"]
    assert judge["unparsed"] == judge["answers"] > 0 and judge["order"] == "both" and judge["max_words"] == 5
    config = RunStore(api.default_store_url()).get_run(summary["run_id"])["config"]
    assert config["judge"]["order"] == "both" and config["judge_model"] == "scripted"
    shown = _invoke("optimize", "--dataset", free_text, *SCRIPTED, *SMALL[:-2], "--reward", f"judge:{rubric}",
                    "--judge-scoring", "generate")
    assert "unreadable replies scored 0" in shown.stdout  # the summary says so in words


@pytest.mark.parametrize("args, says", [
    (["--reward", "judge:{dir}/absent.md"], "no such rubric file"),
    (["--judge-model", "scripted"], "--judge-model needs a judge reward: --reward judge:RUBRIC.md"),
    (["--judge-max-words", "9"], "--judge-max-words needs a judge reward"),
    (["--reward", "judge:{rubric}", "--length-penalty", "5"], "--length-penalty and a judge reward"),
])
def test_a_bad_judge_option_is_one_line_and_starts_no_run(free_text, rubric, args, says):
    given = [a.format(dir=rubric.parent, rubric=rubric) for a in args]
    _one_line_error(_invoke("optimize", "--dataset", free_text, *SCRIPTED, *SMALL, *given), says)
    assert RunStore(api.default_store_url()).list_runs() == []
