"""Typed method parameters: each method declares what it accepts, so a wrong name, type or value
fails when the method is built (one line naming the parameter), and ``promptgym methods NAME`` can
list defaults next to the paper's values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from promptgym.errors import PromptgymError

SAME = object()  # the paper's value is the default
UNSTATED = object()  # the paper gives no value (a promptgym decision)

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class Param:
    """One parameter: ``kind`` comes from the default unless given (needed when the default is
    None); ``low``/``high`` bound numbers (inclusive), ``choices`` restrict strings; ``optional``
    also accepts None; ``paper`` is the paper's (or its code's) value where it differs."""

    default: Any
    help: str
    kind: type | None = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    paper: Any = SAME

    @property
    def type(self) -> type:
        return self.kind or type(self.default)

    def accepts(self) -> str:
        """What the parameter accepts, as the tail of a sentence ("an integer >= 1")."""
        if self.choices:
            text = "one of " + ", ".join(self.choices)
        else:
            text = _KINDS[self.type]
            if self.low is not None and self.high is not None:
                text += f" between {_show(self.low)} and {_show(self.high)}"
            elif self.low is not None:
                text += f" >= {_show(self.low)}"
            elif self.high is not None:
                text += f" <= {_show(self.high)}"
        return text + (" or null" if self.optional else "")

    def coerce(self, value: Any) -> Any:
        """The value as this parameter's type (an int where a float is expected, "true" for a
        bool, "3" for an int), or ValueError."""
        if value is None:
            if self.optional:
                return None
            raise ValueError
        kind = self.type
        if isinstance(value, str) and kind is not str:
            value = _json_or_text(value.strip().lower() if kind is bool else value)
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
        elif kind is int:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError
            value = float(value)
            if value != value:  # NaN passes every bound
                raise ValueError
        elif not isinstance(value, str) or (self.choices and value not in self.choices):
            raise ValueError
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError
        return value

    def default_value(self) -> str:
        return _show(self.default)

    def paper_value(self) -> str:
        return "-" if self.paper is UNSTATED else _show(self.default if self.paper is SAME else self.paper)


def validate(method: str, params: Mapping[str, Param], given: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults overridden by ``given``, each value checked and coerced to its type."""
    unknown = sorted(set(given) - set(params))
    if unknown:
        raise PromptgymError(f"method '{method}': unknown parameter(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(params))})")
    values = {name: p.default for name, p in params.items()}
    for name, value in given.items():
        try:
            values[name] = params[name].coerce(value)
        except (ValueError, TypeError):
            raise PromptgymError(f"method '{method}': parameter '{name}' must be "
                                 f"{params[name].accepts()}, got {value!r}") from None
    return values


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return str(value)
