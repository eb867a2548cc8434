"""A prompt candidate is more than an instruction: instruction + layout + verbalizers + demos.

Later methods search each part (GRIPS edits the instruction, verbalizer searches change the label
words, DP2O picks demonstrations), so all four live in one hashable, serialisable record.

Templating is Jinja2 in a sandbox: the layout is the only template; instruction, inputs and demos
are *values*, so braces in data or in model-written prompts are never interpreted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from promptgym.errors import PromptgymError
from promptgym.templating import render_template


@dataclass(frozen=True)
class Layout:
    """Where the instruction, the demonstrations, the input and the answer cue go.

    ``chat``: the text becomes chat messages (``system`` if given, then ``user``) rendered by the
    backend's own chat template, and the answer is the assistant turn starting with
    ``answer_prefix``. Otherwise ``user`` is the raw completion prompt and the answer follows it.
    Template variables: instruction, input, demos (pre-rendered text, may be empty), options.
    """

    name: str
    user: str
    system: str | None = None
    answer_prefix: str = ""
    chat: bool = True
    demo: str = "Input: {{ input }}\nAnswer: {{ answer }}"


LAYOUTS: dict[str, Layout] = {
    # Instruction first everywhere: the shared prefix's KV cache is reused across examples.
    "chat": Layout(
        name="chat",
        user="{{ instruction }}\n\n{% if demos %}{{ demos }}\n\n{% endif %}Input: {{ input }}",
        answer_prefix="",
    ),
    "chat-options": Layout(
        name="chat-options",
        user=("{{ instruction }}\nAnswer with one of: {{ options | join(', ') }}.\n\n"
              "{% if demos %}{{ demos }}\n\n{% endif %}Input: {{ input }}"),
        answer_prefix="",
    ),
    "chat-system": Layout(
        name="chat-system",
        system="{{ instruction }}{% if demos %}\n\n{{ demos }}{% endif %}",
        user="{{ input }}",
        answer_prefix="",
    ),
    "plain": Layout(
        name="plain",
        user="{{ instruction }}\n\n{% if demos %}{{ demos }}\n\n{% endif %}Input: {{ input }}\nAnswer:",
        answer_prefix="",
        chat=False,
    ),
}
DEFAULT_LAYOUT = "chat"


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt, ready for a backend: chat messages or raw text, then the answer cue."""

    messages: tuple[tuple[str, str], ...] | None
    text: str | None
    answer_prefix: str


@dataclass(frozen=True)
class Prompt:
    """One candidate. ``verbalizers`` maps a label to the word the model sees (missing = itself)."""

    instruction: str
    layout: Layout = field(default_factory=lambda: LAYOUTS[DEFAULT_LAYOUT])
    verbalizers: tuple[tuple[str, str], ...] = ()
    demos: tuple[tuple[str, str], ...] = ()  # (input, label) pairs, shown in order

    def verbalize(self, label: str) -> str:
        for key, word in self.verbalizers:
            if key == label:
                return word
        return label

    def with_instruction(self, instruction: str) -> "Prompt":
        return replace(self, instruction=instruction)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prompt":
        layout = data.get("layout") or LAYOUTS[DEFAULT_LAYOUT]
        if isinstance(layout, str):
            layout = get_layout(layout)
        elif isinstance(layout, dict):
            layout = Layout(**layout)
        return cls(
            instruction=data["instruction"],
            layout=layout,
            verbalizers=tuple(tuple(p) for p in data.get("verbalizers", ())),  # type: ignore[misc]
            demos=tuple(tuple(p) for p in data.get("demos", ())),  # type: ignore[misc]
        )

    @property
    def id(self) -> str:
        """Content hash: the same prompt gets the same id in every run."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def render(self, input: str, options: list[str] | None = None) -> Rendered:
        layout = self.layout
        demos = "\n\n".join(
            _render(layout.demo, layout.name, input=d_in, answer=self.verbalize(d_label))
            for d_in, d_label in self.demos
        )
        values = dict(instruction=self.instruction.strip(), input=input, demos=demos,
                      options=options or [])
        user = _render(layout.user, layout.name, **values)
        if not layout.chat:
            return Rendered(messages=None, text=user, answer_prefix=layout.answer_prefix)
        messages: list[tuple[str, str]] = []
        if layout.system is not None:
            messages.append(("system", _render(layout.system, layout.name, **values)))
        messages.append(("user", user))
        return Rendered(messages=tuple(messages), text=None, answer_prefix=layout.answer_prefix)


OPTIONS_LINE = "Answer with one of: {{ options | join(', ') }}."


def shows_options(layout: Layout) -> bool:
    """Whether the layout puts the options (the label words) into the prompt."""
    return "options" in layout.user or "options" in (layout.system or "")


def with_options(layout: Layout) -> Layout:
    """``layout`` with the options line after the instruction (``chat`` becomes ``chat-options``;
    another gets it under its name plus ``-options``). A choice task answered by generation needs
    it: the model must see the label words to answer with one (a layout that shows them already is
    returned as it is)."""
    if shows_options(layout):
        return layout
    part = "system" if layout.system is not None and "{{ instruction }}" in layout.system else "user"
    text = getattr(layout, part)
    if "{{ instruction }}" not in text:  # a layout of one's own without the instruction: options first
        changed = replace(layout, **{part: OPTIONS_LINE + "\n" + text})
    else:
        changed = replace(layout, **{part: text.replace("{{ instruction }}", "{{ instruction }}\n" + OPTIONS_LINE, 1)})
    for named in LAYOUTS.values():
        if replace(changed, name=named.name) == named:
            return named
    return replace(changed, name=f"{layout.name}-options")


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise PromptgymError(f"unknown layout '{name}' (known: {', '.join(LAYOUTS)})") from None


def _render(template: str, layout_name: str, **values: Any) -> str:
    return render_template(template, f"layout '{layout_name}'", **values)
