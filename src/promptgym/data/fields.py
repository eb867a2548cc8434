"""An input rendered from several named fields of a row (``{{ question }}``, ``{{ context }}``) by a
template the user gives (``--input-template``): Jinja2 in the project's sandbox, strict about
missing names. The template is data, like the rows: it is stored with the run (so a resume,
``predict`` and ``export`` render the same text) and never part of a prompt, so the optimizers,
which edit prompts, never see or change it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from jinja2 import TemplateError, TemplateSyntaxError, nodes
from jinja2.meta import find_undeclared_variables

from promptgym.errors import DataError
from promptgym.templating import ENV, compile_template

TEMPLATE_FLAG = "--input-template"  # how messages name the template (Python: input_template=)
NAMED = f"named by {TEMPLATE_FLAG}"


@dataclass(frozen=True)
class InputTemplate:
    """A checked input template: its text and the fields it names, in the order they first appear."""

    text: str
    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "InputTemplate":
        """The template checked up front: Jinja syntax, and at least one field named."""
        if not isinstance(text, str):
            raise DataError(f"{TEMPLATE_FLAG}: expected text, got {type(text).__name__}")
        if not text.strip():
            raise DataError(f"{TEMPLATE_FLAG}: empty template (e.g. 'Question: {{{{ question }}}}')")
        try:
            tree = ENV.parse(text)
        except TemplateSyntaxError as exc:
            raise DataError(f"{TEMPLATE_FLAG}: line {exc.lineno}: {exc.message}") from None
        free = find_undeclared_variables(tree) - set(ENV.globals)
        names = tuple(dict.fromkeys(n.name for n in tree.find_all(nodes.Name) if n.name in free))
        if not names:
            raise DataError(f"{TEMPLATE_FLAG}: names no field (write each field as {{{{ NAME }}}}, "
                            "e.g. 'Question: {{ question }}')")
        return cls(text, names)

    def render(self, fields: Mapping[str, str], where: str) -> str:
        """The input text; a template error or an empty result is one line naming the row."""
        try:
            text = compile_template(self.text).render(**fields)
        except TemplateError as exc:
            raise DataError(f"{where}: {TEMPLATE_FLAG}: {exc}") from None
        if not text.strip():
            raise DataError(f"{where}: {TEMPLATE_FLAG} renders empty text (fields {', '.join(self.names)} empty)")
        return text

    def pieces(self) -> tuple[str, ...] | None:
        """The template as literal text (even positions) and field names (odd ones) when it only
        places fields as plain values (``{{ name }}``: no filters, tests or control flow), checked
        against Jinja's own rendering on a probe; None otherwise. An export writes such a template
        as text with holes, needing no Jinja."""
        parts = [""]
        for node in ENV.parse(self.text).body:
            if not isinstance(node, nodes.Output):
                return None
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    parts[-1] += child.data
                elif isinstance(child, nodes.Name) and child.ctx == "load":
                    parts += [child.name, ""]
                else:
                    return None
        probe = {name: f"<{name} {{{{ x }}}} {n}>" for n, name in enumerate(self.names)}
        filled = "".join(probe[p] if i % 2 else p for i, p in enumerate(parts))
        return tuple(parts) if filled == compile_template(self.text).render(**probe) else None
