"""Export a prompt to paste into code: as JSON, as text, or as a standalone Python snippet.

Two requests for a choice task. promptgym's own (``json`` and ``python``) scores each option's words
by log-probability (or, with ``--scoring generate``, generates and matches), and a layout like
``chat`` never names the options: pasted into a chat API that generates, that prompt has nothing to
answer with. So a choice task also exports a generation-ready request, the same prompt with the
options listed ("Answer with one of: ..."), whose reply is matched to an option as promptgym's
``--scoring generate`` does; ``txt`` (what is pasted into a chat) is that request. Every format
says which scoring it assumes. The options' hole is ``{options}`` in every format.

A prompt is rendered by its layout (a Jinja2 template) with the input and the options as values.
Everything else (instruction, demonstrations, label words) is fixed for a chosen prompt, so the
rendered request is literal text with two holes: the input and the options joined. We find the
holes by rendering once with sentinel values, keep the text between them as literal pieces, and
check the pieces against promptgym's own rendering on a probe input before exporting anything:
an export either reproduces the request exactly or is refused (one line).

A run whose input is rendered from several fields (``--input-template``) exports that template
too: where it only places fields as plain values (``{{ question }}``), the ``{input}`` hole of the
json and txt formats becomes its text with a hole per field (``{question}``), and the python
snippet gets ``build_input(fields)`` built from the same pieces; a template with filters or
control flow is kept as Jinja2 source (``build_input`` then renders it with jinja2).
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
from dataclasses import dataclass, replace
from typing import Any

from promptgym.data.dataset import Example
from promptgym.data.fields import InputTemplate
from promptgym.errors import PromptgymError
from promptgym.models.base import ScoreRequest
from promptgym.tasks import parsing
from promptgym.tasks.prompt import LAYOUTS, Layout, Prompt
from promptgym.tasks.task import CONTENT_FREE_INPUTS, ChoiceTask, Task

FORMATS = ("json", "txt", "python")
OPTIONS_SEPARATOR = ", "  # how every shipped layout joins the options (checked on each export)
PLACEHOLDERS = {"input": "{input}", "options": "{options}"}
_SENTINELS = {"input": "\x00promptgym:input\x00", "options": "\x00promptgym:options\x00"}
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in _SENTINELS.values()) + ")")
_NAME_OF = {s: name for name, s in _SENTINELS.items()}
_PROBE_INPUT = "Probe {input} {{ input }} {% raw %} \\n ü"
_PROBE_OPTIONS = ["first {options} {choices}", "second"]
OPTIONS_LINE = "Answer with one of: {{ options | join(', ') }}."  # as the chat-options layout says it
SCORING = {
    "logprob": "log-probability: promptgym scores each option's words after the prompt and picks the most "
               "likely; the prompt need not name the options (needs a backend with log-probabilities)",
    "generate": "generation + matching: the model writes a reply and the option it names is the answer "
                "(promptgym's match: the reply's first line equal to an option's word, else the option "
                "named first, whole words, case-insensitive); the prompt must list the options",
}


@dataclass(frozen=True)
class RequestTemplate:
    """A prompt's request as literal pieces: ``parts`` is ``[(role, pieces)]`` for a chat layout
    or ``[("text", pieces)]`` for a plain one; in ``pieces`` the even items are literal text and
    the odd ones the name of a hole ("input" or "options")."""

    chat: bool
    parts: tuple[tuple[str, tuple[str, ...]], ...]
    answer_prefix: str

    def fill(self, input: str, words: list[str]) -> list[tuple[str, str]]:
        values = {"input": input, "options": OPTIONS_SEPARATOR.join(words)}
        return [(role, "".join(values[p] if i % 2 else p for i, p in enumerate(pieces)))
                for role, pieces in self.parts]

    def with_placeholders(self, words: list[str] | None = None,
                          input_text: str | None = None) -> list[tuple[str, str]]:
        """Readable text: ``{input}`` for the input (or ``input_text``: the input template with
        its field holes); the options joined (``{options}`` without words)."""
        values = dict(PLACEHOLDERS)
        if input_text is not None:
            values["input"] = input_text
        if words is not None:
            values["options"] = OPTIONS_SEPARATOR.join(words)
        return [(role, "".join(values[p] if i % 2 else p for i, p in enumerate(pieces)))
                for role, pieces in self.parts]


def request_template(prompt: Prompt) -> RequestTemplate:
    """The prompt's request with holes for the input and the options, checked to reproduce
    ``prompt.render`` exactly (on a probe with braces, Jinja syntax and two options)."""
    rendered = prompt.render(_SENTINELS["input"], options=[_SENTINELS["options"]])
    raw = rendered.messages if rendered.messages is not None else (("text", rendered.text or ""),)
    parts = tuple((role, tuple(_NAME_OF.get(p, p) if i % 2 else p for i, p in enumerate(_SPLIT.split(content))))
                  for role, content in raw)
    template = RequestTemplate(chat=rendered.messages is not None, parts=parts, answer_prefix=rendered.answer_prefix)
    probe = prompt.render(_PROBE_INPUT, options=_PROBE_OPTIONS)
    expected = list(probe.messages) if probe.messages is not None else [("text", probe.text)]
    if template.fill(_PROBE_INPUT, _PROBE_OPTIONS) != expected or probe.answer_prefix != template.answer_prefix:
        raise PromptgymError(f"layout '{prompt.layout.name}': cannot be exported as a fixed template (it uses "
                             "the input or the options other than as plain values)")
    return template


def field_holes(input_template: InputTemplate) -> str | None:
    """The input template as text with a ``{name}`` hole per field, when it only places fields as
    plain values (``InputTemplate.pieces``); None when it needs Jinja."""
    pieces = input_template.pieces()
    return None if pieces is None else "".join("{" + p + "}" if i % 2 else p for i, p in enumerate(pieces))


def input_record(input_template: InputTemplate) -> dict[str, Any]:
    return {"jinja": input_template.text, "fields": list(input_template.names), "text": field_holes(input_template),
            "renders": "the input: this Jinja2 template (sandboxed, a missing field is an error, a trailing "
                       "newline kept) rendered with the example's fields as values"}


def input_placeholders(input_template: InputTemplate | None) -> dict[str, str]:
    """What the input's holes are: ``{input}``, or one per field when the template has plain holes."""
    if input_template is None:
        return {"{input}": "the input text"}
    if field_holes(input_template) is None:
        return {"{input}": "the input: input_template.jinja rendered with the example's fields"}
    return {f"{{{name}}}": f"the example's field '{name}'" for name in input_template.names}


def lists_options(layout: Layout) -> bool:
    return any("options" in t for t in (layout.user, layout.system or ""))


def generation_prompt(prompt: Prompt) -> Prompt:
    """``prompt`` with the options listed, for a model that generates its answer: unchanged when its
    layout lists them already, else the layout with ``OPTIONS_LINE`` after the instruction (for
    ``chat``, that is the shipped ``chat-options``)."""
    layout = prompt.layout
    if lists_options(layout):
        return prompt
    mark, name = "{{ instruction }}", f"{layout.name}+options"
    if layout.system is not None and mark in layout.system:
        derived = replace(layout, name=name, system=layout.system.replace(mark, f"{mark}\n{OPTIONS_LINE}", 1))
    elif mark in layout.user:
        derived = replace(layout, name=name, user=layout.user.replace(mark, f"{mark}\n{OPTIONS_LINE}", 1))
    else:
        derived = replace(layout, name=name, user=f"{OPTIONS_LINE}\n\n{layout.user}")
    shipped = [l for l in LAYOUTS.values() if replace(l, name=derived.name) == derived]
    return replace(prompt, layout=shipped[0] if shipped else derived)


def run_scoring(task: Task) -> str | None:
    """How promptgym scored the run's answers: ``logprob`` or ``generate`` (choice tasks), None
    (free text: generated and scored by the task's metric)."""
    return getattr(task, "scoring", "logprob") if isinstance(task, ChoiceTask) else None


def generation_max_tokens(task: Task) -> int:
    return task.max_tokens if isinstance(task, ChoiceTask) else ChoiceTask().max_tokens


def request_details(task: Task, prompt: Prompt, labels: list[str] | None) -> dict[str, Any]:
    """How the task asks the model, read off the task's own request for a probe example: option
    scoring (the continuations' lead) or generation (max tokens, stop strings)."""
    choices = tuple(labels) if labels else ("yes", "no") if isinstance(task, ChoiceTask) else None
    request = task.request(prompt, Example("export-probe", "x", (choices[0] if choices else "",), choices))
    if isinstance(request, ScoreRequest):
        first = prompt.verbalize(choices[0])
        lead = request.continuations[0][:len(request.continuations[0]) - len(first)]
        return {"kind": "score", "lead": lead, "continuations": list(request.continuations) if labels else None,
                "normalize": getattr(task, "normalize", "none")}
    return {"kind": "generate", "max_tokens": request.max_tokens, "stop": list(request.stop)}


def _shown(template: RequestTemplate, words: list[str] | None = None,
           input_template: InputTemplate | None = None) -> dict[str, Any]:
    filled = template.with_placeholders(words, field_holes(input_template) if input_template else None)
    return ({"messages": [{"role": r, "content": c} for r, c in filled]} if template.chat
            else {"text": filled[0][1]})


CALIBRATION_APPLIED = (
    "the run scored this prompt calibrated: take the softmax of the options' log-probabilities (per token under "
    "request.normalize 'mean'), divide each option's probability by its prior, renormalise; the answer is the "
    "largest. The prior is this prompt's on this model: after changing either, read it again (the request with "
    "each content-free input as the input, their option distributions averaged and renormalised). A generated "
    "reply (generation) is not calibrated.")


def calibration_details(task: Task, run: dict[str, Any]) -> dict[str, Any] | None:
    """For a run whose choice scores were calibrated (``--calibrate``): the content-free inputs, the
    returned prompt's prior (label -> probability, from the run's summary) and how to apply it."""
    if not (isinstance(task, ChoiceTask) and task.calibrate):
        return None
    stored = run.get("calibration") or {}
    return {"content_free_inputs": list(CONTENT_FREE_INPUTS), "prior": stored.get("prior_best"),
            "apply": CALIBRATION_APPLIED}


def export_record(prompt: Prompt, task: Task, labels: list[str] | None, run: dict[str, Any],
                  input_template: InputTemplate | None = None) -> dict[str, Any]:
    """The JSON export: the prompt, its label words, its template with ``{input}`` (or a hole per
    field of the input template) and ``{options}`` placeholders, how the model is asked
    (``scoring``: what the template assumes) and, for a choice task, ``generation``: the request
    for a model that generates (options listed); ``input_template`` when the run has one."""
    template = request_template(prompt)
    words = {label: prompt.verbalize(label) for label in labels} if labels else {}
    placeholders = {**input_placeholders(input_template),
                    "{options}": f"the label words of the example's options, joined by {OPTIONS_SEPARATOR!r}"}
    scoring = run_scoring(task)
    record = {
        "run_id": run.get("run_id"), "method": run.get("method"), "dataset": run.get("dataset"),
        "prompt": prompt.to_dict(),
        "task": "choice" if isinstance(task, ChoiceTask) else "generation",
        "labels": list(labels) if labels else None,
        "label_words": words,
        "template": {"layout": prompt.layout.name, "chat": template.chat, **_shown(template, None, input_template),
                     "answer_prefix": template.answer_prefix, "placeholders": placeholders,
                     "scoring": scoring or "generate",
                     "assumes": SCORING[scoring] if scoring else "generation: the model writes the answer, "
                                                                 "scored by the task's metric"},
        "request": request_details(task, prompt, labels),
    }
    if input_template is not None:
        record["input_template"] = input_record(input_template)
    calibration = calibration_details(task, run)
    if calibration:
        record["calibration"] = calibration
    if isinstance(task, ChoiceTask):
        shown = generation_prompt(prompt)
        generation = request_template(shown)
        record["generation"] = {
            "layout": shown.layout.name, "chat": generation.chat, **_shown(generation, None, input_template),
            "answer_prefix": generation.answer_prefix, "placeholders": placeholders,
            "scoring": "generate", "assumes": SCORING["generate"],
            "max_tokens": generation_max_tokens(task),
            "same_as_template": shown is prompt,
        }
    return record


def export_text(prompt: Prompt, labels: list[str] | None, task: Task | None = None,
                input_template: InputTemplate | None = None, run: dict[str, Any] | None = None) -> str:
    """The prompt to paste into a chat: ``{input}`` where the input goes (a hole per field where
    the run's input template has plain ones); for a choice task, the
    generation-ready prompt (the options listed, filled with the label words when the label set is
    known, else ``{options}``); chat messages under ``### role`` headers. First, ``#`` lines that
    say which scoring the text assumes (not part of the prompt)."""
    task = task if task is not None else ChoiceTask() if labels else None
    choice = isinstance(task, ChoiceTask)
    shown = generation_prompt(prompt) if choice else prompt
    template = request_template(shown)
    holes = field_holes(input_template) if input_template else None
    filled = template.with_placeholders([shown.verbalize(c) for c in labels] if labels else None, holes)
    if choice:
        ran = ("log-probability, with a prompt that " + ("lists" if shown is prompt else "does not list")
               + " the options") if run_scoring(task) == "logprob" else "generation + matching"
        header = [f"# promptgym export. Scoring this text assumes: {SCORING['generate']}.",
                  f"# The run itself scored by {ran} (promptgym export --format json or python has that "
                  "exact request)."]
        calibration = calibration_details(task, run or {})
        if calibration and calibration["prior"]:
            prior = ", ".join(f"{label} {p:.3f}" for label, p in calibration["prior"].items())
            header.append(f"# Its option scores were calibrated: each option's probability divided by this prompt's "
                          f"prior ({prior}); a generated reply is not.")
    else:
        header = ["# promptgym export. Scoring this text assumes: generation (the model writes the "
                  "answer, scored by the task's metric)."]
    header.append("# Everything after the blank line below is the prompt; " + _input_note(input_template, holes))
    if not template.chat:
        body = filled[0][1] + template.answer_prefix + "\n"
    elif len(filled) == 1 and not template.answer_prefix:
        body = filled[0][1] + "\n"
    else:
        blocks = [f"### {role}\n{content}" for role, content in filled]
        if template.answer_prefix:
            blocks.append(f"### assistant\n{template.answer_prefix}")
        body = "\n\n".join(blocks) + "\n"
    return "\n".join(header) + "\n\n" + body


def _input_note(input_template: InputTemplate | None, holes: str | None) -> str:
    if input_template is None:
        return "{input} is where the input goes."
    if holes is not None:
        return f"{', '.join('{' + n + '}' for n in input_template.names)} are where the example's fields go."
    return ("{input} is where the input goes: the example's fields rendered by the Jinja2 template "
            f"{input_template.text!r}.")


def export_python(prompt: Prompt, task: Task, labels: list[str] | None, run: dict[str, Any],
                  input_template: InputTemplate | None = None) -> str:
    """A standalone snippet (no promptgym import): the prompt's constants and
    ``build_messages(input, choices=None)`` (chat layouts) or ``build_prompt`` (plain), which
    return exactly what promptgym sends the task model; for option scoring, ``continuations``."""
    template = request_template(prompt)
    details = request_details(task, prompt, labels)
    words = {label: prompt.verbalize(label) for label in labels} if labels else {}
    choice = isinstance(task, ChoiceTask)
    scoring = run_scoring(task) or "generate"
    scoring_text = (SCORING[scoring] if choice else
                    "generation: the model writes the answer, scored by the task's metric")
    generation = request_template(generation_prompt(prompt)) if choice else None
    generation_name = "build_generation_messages" if generation and generation.chat else "build_generation_prompt"
    lines = [
        '"""A prompt exported by promptgym (the run in SOURCE). Standalone: nothing here imports promptgym.',
        "",
        ("build_messages(input, choices=None) returns the chat messages promptgym sends the task model (the\n"
         "model's own chat template turns them into text; the answer follows in the assistant turn, after\n"
         "ANSWER_PREFIX)." if template.chat else
         "build_prompt(input, choices=None) returns the text promptgym sends the task model (the answer\n"
         "follows it, after ANSWER_PREFIX).")
        + " choices: the example's labels (default LABELS), shown to the model as LABEL_WORDS."
        + ("\ncontinuations(choices) are the options promptgym scores by log-probability after it." if
           details["kind"] == "score" else
           f"\npromptgym generates the answer: at most {details['max_tokens']} tokens"
           + (f", stopping at {details['stop']!r}." if details["stop"] else "."))
        + "\n\n" + textwrap.fill(f"SCORING: how that request is scored ({scoring!r}): {scoring_text}.", 100)
        + ("" if not choice else
           f"\n\nFor a model that generates its answer (a chat API): {generation_name}(input, choices=None)\n"
           "builds the prompt with the options listed (GENERATION_SCORING: generation + matching);\n"
           "answer(reply, choices=None) returns the label the reply names (None: no option named),\n"
           "matched as promptgym matches a generated answer.")
        + ("" if input_template is None else
           "\n\nbuild_input(fields) renders the input from a dict of the example's fields (INPUT_FIELDS) as\n"
           f"the run did: {'build_messages' if template.chat else 'build_prompt'}(build_input({{...}}))."),
        '"""',
        *(["", *(["import math"] if calibration_details(task, run) else []), "import re"] if choice else []),
        "",
        f"SOURCE = {dict(run_id=run.get('run_id'), method=run.get('method'), dataset=run.get('dataset'), layout=prompt.layout.name)!r}",
        f"INSTRUCTION = {prompt.instruction!r}",
        f"LABELS = {list(labels) if labels else []!r}",
        f"LABEL_WORDS = {words!r}  # label -> the word the model sees",
        f"DEMOS = {[list(d) for d in prompt.demos]!r}  # (input, label), already in the template below",
        f"ANSWER_PREFIX = {template.answer_prefix!r}",
        f"SCORING = {scoring!r}  # 'logprob': options scored by log-probability; 'generate': generation + matching",
        "# Each part: literal text at even positions, the name of what goes in at odd ones.",
        "_TEMPLATE = [",
        *(f"    ({role!r}, {list(pieces)!r})," for role, pieces in template.parts),
        "]",
        "",
        "",
        "def label_words(choices=None):",
        "    return [LABEL_WORDS.get(c, c) for c in (LABELS if choices is None else choices)]",
        "",
        "",
        "def _fill(pieces, values):",
        '    return "".join(values[p] if i % 2 else p for i, p in enumerate(pieces))',
        "",
        "",
        *(_input_lines(input_template) if input_template else []),
    ]
    values = f'{{"input": input, "options": {OPTIONS_SEPARATOR!r}.join(label_words(choices))}}'
    if template.chat:
        lines += [
            "def build_messages(input, choices=None):",
            f"    values = {values}",
            '    return [{"role": role, "content": _fill(pieces, values)} for role, pieces in _TEMPLATE]',
        ]
    else:
        lines += [
            "def build_prompt(input, choices=None):",
            f"    return _fill(_TEMPLATE[0][1], {values})",
        ]
    if details["kind"] == "score":
        lines += ["", "", "def continuations(choices=None):",
                  f"    return [{details['lead']!r} + word for word in label_words(choices)]"]
    calibration = calibration_details(task, run)
    if details["kind"] == "score" and calibration and calibration["prior"]:
        lines += _calibration_lines(calibration)
    if generation is not None:
        lines += _generation_lines(generation, generation_name, values, generation_max_tokens(task))
    return "\n".join(lines) + "\n"


def _calibration_lines(calibration: dict[str, Any]) -> list[str]:
    """The snippet's prior and ``calibrated(logprobs, choices=None)``: the options' probabilities
    as the run scored them (contextual calibration)."""
    return ["", "", "# The run's option scores were calibrated (contextual calibration): the prompt's label prior,",
            "# read from these content-free inputs, is divided out before the answer is picked.",
            f"CONTENT_FREE_INPUTS = {calibration['content_free_inputs']!r}",
            f"PRIOR = {calibration['prior']!r}  # label -> this prompt's prior on the run's model", "", "",
            "def calibrated(logprobs, choices=None):",
            '    """Label -> calibrated probability, from the options\' log-probabilities in the order of',
            "    continuations(choices) (per token if the run normalised by length): the softmax, divided",
            '    by PRIOR, renormalised. The answer is the label with the largest."""',
            "    choices = LABELS if choices is None else list(choices)",
            "    top = max(logprobs)",
            "    weights = [math.exp(lp - top) / PRIOR[c] for lp, c in zip(logprobs, choices)]",
            "    return {c: w / sum(weights) for c, w in zip(choices, weights)}"]


def _input_lines(input_template: InputTemplate) -> list[str]:
    """The snippet's ``build_input(fields)``: the template's pieces filled in, or (a template with
    filters or control flow) the Jinja2 source rendered as promptgym renders it."""
    pieces = input_template.pieces()
    lines = [f"INPUT_TEMPLATE = {input_template.text!r}  # Jinja2: the input, rendered from the example's fields",
             f"INPUT_FIELDS = {list(input_template.names)!r}"]
    if pieces is not None:
        return lines + [f"_INPUT_PIECES = {list(pieces)!r}  # INPUT_TEMPLATE as pieces, as _TEMPLATE", "", "",
                        "def build_input(fields):",
                        '    """The input text from a dict of the example\'s fields, as promptgym renders it."""',
                        "    return _fill(_INPUT_PIECES, fields)", "", ""]
    return lines + ["", "", "def build_input(fields):",
                    '    """The input text from a dict of the example\'s fields, as promptgym renders it (needs jinja2)."""',
                    "    from jinja2 import StrictUndefined",
                    "    from jinja2.sandbox import SandboxedEnvironment",
                    "",
                    "    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)",
                    "    return env.from_string(INPUT_TEMPLATE).render(**fields)", "", ""]


def _generation_lines(generation: RequestTemplate, name: str, values: str, max_tokens: int) -> list[str]:
    """The snippet's generation-ready request and promptgym's answer matching, copied from
    ``promptgym.tasks.parsing`` so that the snippet matches a reply exactly as a run does."""
    lines = ["", "", "# For a model that generates its answer: the options listed in the prompt.",
             "GENERATION_SCORING = 'generate'  # generation + matching",
             f"GENERATION_MAX_TOKENS = {max_tokens}  # what promptgym allows a generated choice",
             f"GENERATION_ANSWER_PREFIX = {generation.answer_prefix!r}",
             "_GENERATION_TEMPLATE = [",
             *(f"    ({role!r}, {list(pieces)!r})," for role, pieces in generation.parts),
             "]", "", ""]
    if generation.chat:
        lines += [f"def {name}(input, choices=None):",
                  f"    values = {values}",
                  '    return [{"role": role, "content": _fill(pieces, values)} for role, pieces in _GENERATION_TEMPLATE]']
    else:
        lines += [f"def {name}(input, choices=None):",
                  f"    return _fill(_GENERATION_TEMPLATE[0][1], {values})"]
    lines += ["", "", "# promptgym's matching of a generated reply to an option (promptgym.tasks.parsing).",
              f"_LEADS = re.compile({parsing._LEADS.pattern!r}, re.IGNORECASE)",
              f"_PUNCT = {parsing._PUNCT!r}", ""]
    for function in (parsing.normalize, parsing.extract_answer, parsing.match_option):
        lines += ["", *inspect.getsource(function).rstrip("\n").split("\n"), ""]
    lines += ["", "def answer(reply, choices=None):",
              '    """The label a generated reply names (as promptgym matches it), or None."""',
              "    choices = LABELS if choices is None else list(choices)",
              "    index = match_option(reply, label_words(choices))",
              "    return None if index is None else choices[index]"]
    return lines


def export_prompt(prompt: Prompt, task: Task, labels: list[str] | None, fmt: str,
                  run: dict[str, Any] | None = None, input_template: InputTemplate | None = None) -> str:
    """The prompt in ``fmt`` (json, txt or python) as text; ``input_template``: the run's, if any."""
    run = run or {}
    if fmt == "json":
        return json.dumps(export_record(prompt, task, labels, run, input_template), indent=2,
                          ensure_ascii=False) + "\n"
    if fmt == "txt":
        return export_text(prompt, labels, task, input_template, run)
    if fmt == "python":
        return export_python(prompt, task, labels, run, input_template)
    raise PromptgymError(f"export format '{fmt}': use one of {', '.join(FORMATS)}")
