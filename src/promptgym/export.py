"""Export a prompt to paste into code: as JSON, as text, or as a standalone Python snippet.

A prompt is rendered by its layout (a Jinja2 template) with the input and the options as values.
Everything else (instruction, demonstrations, label words) is fixed for a chosen prompt, so the
rendered request is literal text with two holes: the input and the options joined. We find the
holes by rendering once with sentinel values, keep the text between them as literal pieces, and
check the pieces against promptgym's own rendering on a probe input before exporting anything:
an export either reproduces the request exactly or is refused (one line).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.models.base import ScoreRequest
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask, Task

FORMATS = ("json", "txt", "python")
OPTIONS_SEPARATOR = ", "  # how every shipped layout joins the options (checked on each export)
PLACEHOLDERS = {"input": "{input}", "options": "{choices}"}
_SENTINELS = {"input": "\x00promptgym:input\x00", "options": "\x00promptgym:options\x00"}
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in _SENTINELS.values()) + ")")
_NAME_OF = {s: name for name, s in _SENTINELS.items()}
_PROBE_INPUT = "Probe {input} {{ input }} {% raw %} \\n ü"
_PROBE_OPTIONS = ["first {choices}", "second"]


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

    def with_placeholders(self, words: list[str] | None = None) -> list[tuple[str, str]]:
        """Readable text: ``{input}`` for the input; the options joined (``{choices}`` without words)."""
        values = dict(PLACEHOLDERS)
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


def export_record(prompt: Prompt, task: Task, labels: list[str] | None, run: dict[str, Any]) -> dict[str, Any]:
    """The JSON export: the prompt, its label words, its template with ``{input}`` and
    ``{choices}`` placeholders, and how the model is asked."""
    template = request_template(prompt)
    words = {label: prompt.verbalize(label) for label in labels} if labels else {}
    filled = template.with_placeholders()
    shown: dict[str, Any] = ({"messages": [{"role": r, "content": c} for r, c in filled]} if template.chat
                             else {"text": filled[0][1]})
    return {
        "run_id": run.get("run_id"), "method": run.get("method"), "dataset": run.get("dataset"),
        "prompt": prompt.to_dict(),
        "task": "choice" if isinstance(task, ChoiceTask) else "generation",
        "labels": list(labels) if labels else None,
        "label_words": words,
        "template": {"layout": prompt.layout.name, "chat": template.chat, **shown,
                     "answer_prefix": template.answer_prefix,
                     "placeholders": {"{input}": "the input text",
                                      "{choices}": f"the label words of the example's options, joined by "
                                                   f"{OPTIONS_SEPARATOR!r}"}},
        "request": request_details(task, prompt, labels),
    }


def export_text(prompt: Prompt, labels: list[str] | None) -> str:
    """The rendered prompt with ``{input}`` where the input goes (options filled with the label
    words when the label set is known); chat messages under ``### role`` headers."""
    template = request_template(prompt)
    filled = template.with_placeholders([prompt.verbalize(c) for c in labels] if labels else None)
    if not template.chat:
        return filled[0][1] + template.answer_prefix + "\n"
    if len(filled) == 1 and not template.answer_prefix:
        return filled[0][1] + "\n"
    blocks = [f"### {role}\n{content}" for role, content in filled]
    if template.answer_prefix:
        blocks.append(f"### assistant\n{template.answer_prefix}")
    return "\n\n".join(blocks) + "\n"


def export_python(prompt: Prompt, task: Task, labels: list[str] | None, run: dict[str, Any]) -> str:
    """A standalone snippet (no promptgym import): the prompt's constants and
    ``build_messages(input, choices=None)`` (chat layouts) or ``build_prompt`` (plain), which
    return exactly what promptgym sends the task model; for option scoring, ``continuations``."""
    template = request_template(prompt)
    details = request_details(task, prompt, labels)
    words = {label: prompt.verbalize(label) for label in labels} if labels else {}
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
           + (f", stopping at {details['stop']!r}." if details["stop"] else ".")),
        '"""',
        "",
        f"SOURCE = {dict(run_id=run.get('run_id'), method=run.get('method'), dataset=run.get('dataset'), layout=prompt.layout.name)!r}",
        f"INSTRUCTION = {prompt.instruction!r}",
        f"LABELS = {list(labels) if labels else []!r}",
        f"LABEL_WORDS = {words!r}  # label -> the word the model sees",
        f"DEMOS = {[list(d) for d in prompt.demos]!r}  # (input, label), already in the template below",
        f"ANSWER_PREFIX = {template.answer_prefix!r}",
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
    return "\n".join(lines) + "\n"


def export_prompt(prompt: Prompt, task: Task, labels: list[str] | None, fmt: str,
                  run: dict[str, Any] | None = None) -> str:
    """The prompt in ``fmt`` (json, txt or python) as text."""
    run = run or {}
    if fmt == "json":
        return json.dumps(export_record(prompt, task, labels, run), indent=2, ensure_ascii=False) + "\n"
    if fmt == "txt":
        return export_text(prompt, labels)
    if fmt == "python":
        return export_python(prompt, task, labels, run)
    raise PromptgymError(f"export format '{fmt}': use one of {', '.join(FORMATS)}")
