"""Jinja2 in a sandbox, strict about missing names: the one place templates are compiled and
rendered. A template is trusted (a layout, a user's input template); the values are not (inputs,
model-written instructions), so braces in values are never interpreted. Low in the layers so that
the data (input templates) and the tasks (layouts) render the same way."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from promptgym.errors import PromptgymError

ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def compile_template(template: str) -> Template:
    return ENV.from_string(template)


def render_template(template: str, what: str, /, **values: Any) -> str:
    """Render a trusted template with untrusted values (sandboxed, strict about missing names)."""
    try:
        return compile_template(template).render(**values)
    except TemplateError as exc:
        raise PromptgymError(f"{what}: template error: {exc}") from None
