"""``promptgym export``: the returned prompt as JSON, text or a standalone Python snippet that
builds exactly the request promptgym sends, for every layout."""

from __future__ import annotations

import ast
import json

import pytest
from click.testing import CliRunner

from promptgym.cli import main
from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.export import export_prompt, export_record, export_text, request_template
from promptgym.models.base import ScoreRequest
from promptgym.tasks.prompt import LAYOUTS, Layout, Prompt
from promptgym.tasks.task import ChoiceTask, GenerationTask

LABELS = ["positive", "negative", "neutral"]
INPUTS = ["The room was clean.", "Braces {input} and {{ input }} and {% if x %}, a \\ backslash", "",
          "Two\n\nparagraphs: {choices}"]
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


def _prompt(layout: str) -> Prompt:
    return Prompt("  Classify the {input} review; say {{ label }}.  ", layout=LAYOUTS[layout],
                  verbalizers=(("positive", "good"), ("negative", "bad")),
                  demos=(("Loved it {x}", "positive"), ("Awful.", "negative")))


def _exec(snippet: str) -> dict:
    tree = ast.parse(snippet)
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] and set(imported) <= {"re"}  # standalone
    namespace: dict = {}
    exec(compile(snippet, "<export>", "exec"), namespace)  # noqa: S102 - the test of a generated snippet
    return namespace


def _as_sent(built) -> tuple:
    return tuple((m["role"], m["content"]) for m in built) if isinstance(built, list) else built


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("normalize", ["none", "mean"])
def test_python_snippet_builds_the_request_promptgym_sends_for_choice_tasks(layout, normalize):
    prompt, task = _prompt(layout), ChoiceTask(normalize=normalize)
    ns = _exec(export_prompt(prompt, task, LABELS, "python", {"run_id": "r1"}))
    build = ns["build_messages"] if LAYOUTS[layout].chat else ns["build_prompt"]
    assert ("build_prompt" in ns) == (not LAYOUTS[layout].chat)
    for text in INPUTS:
        for choices in (LABELS, ["negative", "positive"], ["unmapped", "neutral"]):
            sent = task.request(prompt, Example("e", text, (choices[0],), tuple(choices)))
            assert isinstance(sent, ScoreRequest)
            built = build(text, choices)
            assert _as_sent(built) == (sent.messages if LAYOUTS[layout].chat else sent.text)
            assert tuple(ns["continuations"](choices)) == sent.continuations
            assert ns["ANSWER_PREFIX"] == sent.answer_prefix
        # choices left out: the run's label set
        default = task.request(prompt, Example("e", text, ("positive",), tuple(LABELS)))
        assert _as_sent(build(text)) == (default.messages if LAYOUTS[layout].chat else default.text)
    assert ns["LABEL_WORDS"] == {"positive": "good", "negative": "bad", "neutral": "neutral"}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_python_snippet_builds_the_request_for_generation_tasks(layout):
    prompt, task = _prompt(layout), GenerationTask()
    snippet = export_prompt(prompt, task, None, "python")
    ns = _exec(snippet)
    build = ns["build_messages"] if LAYOUTS[layout].chat else ns["build_prompt"]
    for text in INPUTS:
        sent = task.request(prompt, Example("e", text, ("x",)))
        assert _as_sent(build(text)) == (sent.messages if LAYOUTS[layout].chat else sent.text)
    assert "continuations" not in ns and "at most 32 tokens" in snippet


def test_a_layout_that_is_not_a_fixed_template_is_refused():
    odd = Layout(name="odd", user="{{ instruction }} {{ input | upper }}", chat=False)
    with pytest.raises(PromptgymError, match="layout 'odd': cannot be exported"):
        request_template(Prompt("Say.", layout=odd))
    joined = Layout(name="joined", user="{{ instruction }} {{ options | join(' / ') }} {{ input }}", chat=False)
    with pytest.raises(PromptgymError, match="layout 'joined'"):
        request_template(Prompt("Say.", layout=joined))


def test_json_record_has_the_prompt_its_template_and_the_request():
    prompt = _prompt("chat-options")
    record = json.loads(export_prompt(prompt, ChoiceTask(), LABELS, "json", {"run_id": "r1", "method": "ape"}))
    assert Prompt.from_dict(record["prompt"]) == prompt
    assert record["task"] == "choice" and record["labels"] == LABELS
    assert record["label_words"] == {"positive": "good", "negative": "bad", "neutral": "neutral"}
    (message,) = record["template"]["messages"]
    assert message["role"] == "user"
    assert message["content"].endswith("Answer with one of: {options}.\n\nInput: Loved it {x}\nAnswer: good\n\n"
                                       "Input: Awful.\nAnswer: bad\n\nInput: {input}")
    assert message["content"].startswith("Classify the {input} review; say {{ label }}.\n")
    assert record["request"] == {"kind": "score", "lead": "", "continuations": ["good", "bad", "neutral"],
                                 "normalize": "none"}
    plain = export_record(_prompt("plain"), GenerationTask(), None, {})
    assert plain["template"]["text"].endswith("Input: {input}\nAnswer:") and "messages" not in plain["template"]
    assert plain["request"] == {"kind": "generate", "max_tokens": 32, "stop": ["\n\n"]}
    assert export_record(_prompt("plain"), ChoiceTask(), LABELS, {})["request"]["lead"] == " "


def _body(text: str) -> str:
    """The txt export after its '#' header lines (which say the scoring) and the blank line."""
    header, body = text.split("\n\n", 1)
    assert all(line.startswith("# ") for line in header.splitlines())
    return body


def test_text_export_has_the_input_placeholder_and_the_label_words():
    assert _body(export_text(_prompt("chat-options"), LABELS)).endswith(
        "Answer with one of: good, bad, neutral.\n\nInput: Loved it {x}\nAnswer: good\n\n"
        "Input: Awful.\nAnswer: bad\n\nInput: {input}\n")
    system = _body(export_text(_prompt("chat-system"), LABELS))
    assert system.startswith("### system\nClassify the") and system.endswith("\n\n### user\n{input}\n")
    assert _body(export_text(_prompt("plain"), None, GenerationTask())).endswith("Input: {input}\nAnswer:\n")


# -- issue 27, item 6: what works where it is used, and the scoring it assumes ----------------------

@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_text_export_of_a_choice_task_lists_the_options_for_a_model_that_generates(layout):
    """The txt export is pasted into a chat that generates: every layout's text names the label
    words, and its header says it assumes generation + matching (and how the run scored)."""
    for task in (ChoiceTask(), ChoiceTask(scoring="generate")):
        text = export_text(_prompt(layout), LABELS, task)
        body = _body(text)
        assert "Answer with one of: good, bad, neutral." in body
        assert body.endswith(("Input: {input}\n", "Input: {input}\nAnswer:\n", "### user\n{input}\n"))
        header = text.split("\n\n", 1)[0]
        assert "assumes: generation + matching" in header
        assert ("scored by log-probability" in header) == (task.scoring == "logprob")


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("scoring", ["logprob", "generate"])
def test_python_snippet_has_a_generation_request_that_lists_the_options_and_matches_as_promptgym(layout, scoring):
    from promptgym.export import generation_prompt
    from promptgym.models.base import Completion, GenerationRequest

    prompt, task = _prompt(layout), ChoiceTask(scoring=scoring)
    snippet = export_prompt(prompt, task, LABELS, "python", {"run_id": "r1"})
    ns = _exec(snippet)
    assert ns["SCORING"] == scoring and ns["GENERATION_SCORING"] == "generate"
    shown, generate = generation_prompt(prompt), ChoiceTask(scoring="generate")
    build = ns["build_generation_messages"] if LAYOUTS[layout].chat else ns["build_generation_prompt"]
    for text in INPUTS:
        for choices in (LABELS, ["negative", "positive"]):
            example = Example("e", text, (choices[0],), tuple(choices))
            sent = generate.request(shown, example)
            assert isinstance(sent, GenerationRequest)
            built = build(text, choices)
            assert _as_sent(built) == (sent.messages if LAYOUTS[layout].chat else sent.text)
            assert "Answer with one of: " + ", ".join(prompt.verbalize(c) for c in choices) in str(built)
            for reply in ("good", "Answer: bad.", "I think it is neutral, not good", "no idea", "", "BAD\nok"):
                promptgym = generate.predict(shown, example, Completion(reply))
                assert ns["answer"](reply, choices) == (promptgym or None)
    assert ns["GENERATION_MAX_TOKENS"] == generate.max_tokens


def test_every_format_uses_the_options_placeholder_and_says_its_scoring():
    prompt = _prompt("chat-options")
    for task in (ChoiceTask(), ChoiceTask(scoring="generate")):
        record = export_record(prompt, task, None, {})
        assert "{options}" in record["template"]["placeholders"] and "{choices}" not in json.dumps(record)
        assert "Answer with one of: {options}." in record["template"]["messages"][0]["content"]
        assert record["template"]["scoring"] == task.scoring
        assert record["template"]["assumes"].startswith({"logprob": "log-probability",
                                                         "generate": "generation + matching"}[task.scoring])
        assert record["generation"]["scoring"] == "generate" and record["generation"]["same_as_template"]
        assert "Answer with one of: {options}." in _body(export_text(prompt, None, task))
        snippet = export_prompt(prompt, task, None, "python")
        assert f"SCORING = {task.scoring!r}" in snippet and "'options'" in snippet and "{choices}" not in snippet
    chat = export_record(_prompt("chat"), ChoiceTask(), LABELS, {})
    assert "Answer with one of" not in chat["template"]["messages"][0]["content"]  # promptgym's own request
    assert chat["generation"]["layout"] == "chat-options" and not chat["generation"]["same_as_template"]
    assert chat["generation"]["messages"][0]["content"].startswith(
        "Classify the {input} review; say {{ label }}.\nAnswer with one of: {options}.\n\n")
    free = export_record(_prompt("plain"), GenerationTask(), None, {})
    assert "generation" not in free and free["template"]["scoring"] == "generate"


def _run(tmp_path, *extra: str) -> str:
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}: {{braces}} {['good', 'bad'][i % 2]}",
                                        "target": ["pos", "neg"][i % 2]}) + "\n" for i in range(24)))
    result = CliRunner().invoke(main, ["optimize", "--dataset", str(data), *SCRIPTED, "--budget", "20",
                                       "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--json",
                                       "--quiet", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["run_id"]


@pytest.mark.parametrize("layout", ["chat-options", "plain"])
def test_export_of_a_run_reproduces_its_returned_prompts_requests(tmp_path, layout):
    from promptgym.store.runs import RunStore
    from promptgym.paths import default_store_url

    run_id = _run(tmp_path, "--layout", layout)
    out = tmp_path / "prompt.py"
    result = CliRunner().invoke(main, ["export", run_id, "--format", "python", "-o", str(out)])
    assert result.exit_code == 0 and result.stdout == "", result.stderr
    ns = _exec(out.read_text())
    best = Prompt.from_dict(RunStore(default_store_url()).get_run(run_id)["result"]["best_prompt_full"])
    build = ns["build_messages"] if best.layout.chat else ns["build_prompt"]
    for text in ("Review 3: {braces} bad", "new text"):
        sent = ChoiceTask().request(best, Example("e", text, ("pos",), ("neg", "pos")))
        assert _as_sent(build(text, ["neg", "pos"])) == (sent.messages if best.layout.chat else sent.text)
    record = json.loads(CliRunner().invoke(main, ["export", run_id]).stdout)
    assert record["run_id"] == run_id and Prompt.from_dict(record["prompt"]) == best
    assert sorted(record["labels"]) == ["neg", "pos"]
    text = _body(CliRunner().invoke(main, ["export", run_id, "--format", "txt"]).stdout)
    assert text.count("{input}") == 1 and best.instruction.strip() in text
    assert "Answer with one of: " in text  # the labels are named for a model that generates


def test_export_of_an_unfinished_run_is_one_line(tmp_path):
    from promptgym.paths import default_store_url
    from promptgym.store.runs import RunStore

    run_id = _run(tmp_path)
    RunStore(default_store_url()).set_status(run_id, "interrupted")
    result = CliRunner().invoke(main, ["export", run_id, "--format", "txt"])
    assert result.exit_code != 0 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"promptgym: error: run '{run_id}' is interrupted: only a finished run has a returned prompt "
        f"(finish it first: promptgym resume {run_id})"]
    unknown = CliRunner().invoke(main, ["export", "nosuchrun"])
    assert unknown.exit_code != 0 and "no run 'nosuchrun'" in unknown.stderr


def test_export_says_how_the_run_scored_choices(tmp_path):
    logprob = json.loads(CliRunner().invoke(main, ["export", _run(tmp_path)]).stdout)
    assert logprob["request"]["kind"] == "score"
    generated = json.loads(CliRunner().invoke(main, ["export", _run(tmp_path, "--scoring", "generate")]).stdout)
    assert generated["request"] == {"kind": "generate", "max_tokens": 16, "stop": []}


def test_export_of_a_calibrated_run_has_the_returned_prompts_prior_and_how_to_apply_it(tmp_path):
    import math

    import numpy as np

    from promptgym.models.base import OptionScores
    from promptgym.paths import default_store_url
    from promptgym.store.runs import RunStore

    run_id = _run(tmp_path, "--calibrate")
    prior = RunStore(default_store_url()).get_run(run_id)["result"]["calibration"]["prior_best"]
    assert sorted(prior) == ["neg", "pos"] and sum(prior.values()) == pytest.approx(1.0)
    record = json.loads(CliRunner().invoke(main, ["export", run_id]).stdout)
    assert record["calibration"]["prior"] == prior and record["calibration"]["content_free_inputs"] == ["N/A", "", "[MASK]"]
    assert "divide each option's probability by its prior" in record["calibration"]["apply"]
    snippet = CliRunner().invoke(main, ["export", run_id, "--format", "python"]).stdout
    imported = {a.name for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"math", "re"}
    namespace: dict = {}
    exec(compile(snippet, "<export>", "exec"), namespace)  # noqa: S102 - the test of a generated snippet
    assert namespace["PRIOR"] == prior
    logprobs = [math.log(0.55), math.log(0.45)]
    labels = namespace["LABELS"]
    expected = ChoiceTask(calibrate=True).probabilities(OptionScores(tuple(logprobs), (1, 1)),
                                                        np.array([prior[c] for c in labels]))
    assert list(namespace["calibrated"](logprobs).values()) == pytest.approx(list(expected))
    text = CliRunner().invoke(main, ["export", run_id, "--format", "txt"]).stdout
    assert "# Its option scores were calibrated: each option's probability divided by this prompt's prior" in text
    plain = json.loads(CliRunner().invoke(main, ["export", _run(tmp_path)]).stdout)
    assert "calibration" not in plain


@pytest.mark.parametrize("layout", ["chat", "plain"])
@pytest.mark.parametrize("text, plain", [("Q: {{ question }}\nC: {{ context }}\n", True),
                                          ("Q: {{ question | trim }}{% if context %}\nC: {{ context }}{% endif %}", False)])
def test_an_input_template_is_exported_with_the_prompt_and_reproduces_the_input(layout, text, plain):
    from promptgym.data.fields import InputTemplate

    prompt = Prompt("Classify the review.", layout=LAYOUTS[layout], demos=(("Q: a\nC: b", "positive"),))
    task, template = ChoiceTask(), InputTemplate.parse(text)
    namespace: dict = {}
    exec(compile(export_prompt(prompt, task, LABELS, "python", {}, template), "<export>", "exec"), namespace)  # noqa: S102
    build = namespace["build_messages"] if LAYOUTS[layout].chat else namespace["build_prompt"]
    for fields in ({"question": " Why {{ x }}? ", "context": "Because {input}."}, {"question": "Q", "context": ""}):
        rendered = template.render(fields, "probe")
        sent = task.request(prompt, Example("e", rendered, ("positive",), tuple(LABELS)))
        assert _as_sent(build(namespace["build_input"](fields), LABELS)) == (
            sent.messages if LAYOUTS[layout].chat else sent.text)
    record = export_record(prompt, task, LABELS, {}, template)
    assert record["input_template"]["jinja"] == text and record["input_template"]["fields"] == ["question", "context"]
    shown = json.dumps(record["template"]) + json.dumps(record["generation"])
    body = _body(export_text(prompt, LABELS, task, template))
    if plain:
        assert "{input}" not in shown + body and "Q: {question}\\nC: {context}\\n" in shown
        assert "Q: {question}\nC: {context}\n" in body
    else:
        assert "{question}" not in shown + body and shown.count("{input}") >= 2 and body.count("{input}") == 1
        assert repr(text) in export_text(prompt, LABELS, task, template)  # the header gives the Jinja source
