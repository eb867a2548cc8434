"""A method's meta-prompt as one object: its name, its Jinja template, the variables the template
needs, the parser of the optimizer model's answer, and the request settings that belong to the
text (the answer cue it ends with, a token cap). Keeping them together means a variable misspelt at
a call site, or a template edited without its call sites, fails loudly with the meta-prompt's name
instead of rendering a wrong request; and the reader sees in one place what is asked and how the
answer is read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Environment, meta

from promptgym.errors import PromptgymError
from promptgym.tasks.prompt import render_template

_PARSE_ONLY = Environment()  # default delimiters, like the sandboxed renderer; used to read names only


def template_variables(template: str) -> frozenset[str]:
    """The names a Jinja template reads from its caller."""
    return frozenset(meta.find_undeclared_variables(_PARSE_ONLY.parse(template)))


def _as_is(reply: str) -> str:
    return reply


@dataclass(frozen=True)
class MetaPrompt:
    """One request text the optimizer model is sent.

    ``variables``, when given, must be exactly the names the template reads (checked at definition,
    so at import time); when omitted they are read off the template. ``cue`` is the answer prefix
    the request ends with (``""``: none), ``max_tokens`` the reply's cap when the text fixes one
    (``None``: the method's parameter decides), ``stop`` the strings that end the reply when the
    cue opens something the reply should close (a quotation). ``parser`` turns one reply into what the method
    uses (the reply as is by default)."""

    name: str
    template: str
    parser: Callable[[str], Any] = _as_is
    variables: frozenset[str] | None = None
    cue: str = ""
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    needs: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        found = template_variables(self.template)
        if self.variables is not None and frozenset(self.variables) != found:
            declared = frozenset(self.variables)
            raise PromptgymError(
                f"meta-prompt '{self.name}': declared variables {sorted(declared)} but the template "
                f"uses {sorted(found)} (missing from the declaration: {sorted(found - declared)}; "
                f"not in the template: {sorted(declared - found)})")
        object.__setattr__(self, "needs", found)

    def render(self, **values: object) -> str:
        """The request text. Every variable must be given and nothing else; values are never
        interpreted, so braces in prompts or data written by a model are safe."""
        missing = sorted(self.needs - values.keys())
        unexpected = sorted(values.keys() - self.needs)
        if missing or unexpected:
            parts = ([f"missing variable(s) {', '.join(missing)}"] if missing else []) + \
                    ([f"unexpected variable(s) {', '.join(unexpected)}"] if unexpected else [])
            raise PromptgymError(f"meta-prompt '{self.name}': {'; '.join(parts)} "
                                 f"(it takes {', '.join(sorted(self.needs)) or 'none'})")
        return render_template(self.template, f"meta-prompt '{self.name}'", **values)

    def parse(self, reply: str) -> Any:
        """What the method reads out of one reply to this meta-prompt."""
        return self.parser(reply)
