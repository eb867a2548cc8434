"""Config files: a TOML file whose keys are a command's options (``promptgym optimize --config
run.toml``).

The file is checked against the command's own click options, with click's own types, so a key
accepts exactly what its flag accepts and says so the same way. Keys are the options' long names,
``train-size`` or ``train_size``; method parameters go in a ``[params]`` table (= ``--param K=V``).
Options given on the command line win over the file (click's ``ParameterSource`` says which were).
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import click
from click.core import ParameterSource

from promptgym.errors import PromptgymError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PARAMS_TABLE = "params"  # method parameters: the TOML table that stands for repeated --param K=V
PARAMS_OPTION = "params"  # the click parameter (--param) the table feeds


def read_toml(path: str | Path) -> dict[str, Any]:
    """The file's table; a missing file or bad syntax is one line naming the file (and the line)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PromptgymError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PromptgymError(f"{path}: is a directory, expected a TOML file") from None
    except UnicodeDecodeError as exc:
        raise PromptgymError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise PromptgymError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except RecursionError:  # tomllib parses nested arrays and inline tables by recursion
        raise PromptgymError(f"{path}: invalid TOML: arrays or inline tables nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column \d+\)", message)
        if where:
            message = message[:where.start()].strip()
            raise PromptgymError(f"{path}:{where.group(1)}: invalid TOML: {message}") from None
        line = text.count("\n") + 1  # "at end of document"
        raise PromptgymError(f"{path}:{line}: invalid TOML: {message.split(' (at')[0]}") from None


def describe(param: click.Parameter) -> str:
    """What an option accepts, in words (for errors about a file's key)."""
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return "true or false"
    if isinstance(kind, click.Choice):
        return "one of: " + ", ".join(str(c) for c in kind.choices)
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        noun = "an integer" if isinstance(kind, click.IntRange) else "a number"
        bounds = []
        if kind.min is not None:
            bounds.append(f"{'>' if kind.min_open else '>='} {kind.min:g}")
        if kind.max is not None:
            bounds.append(f"{'<' if kind.max_open else '<='} {kind.max:g}")
        return f"{noun} {' and '.join(bounds)}".strip()
    if kind is click.INT:
        return "an integer"
    if kind is click.FLOAT:
        return "a number"
    if isinstance(kind, click.DateTime):
        return "a date (" + " or ".join(kind.formats) + ")"
    return "a string"


def _fits_toml_type(param: click.Parameter, value: Any) -> bool:
    """TOML values are typed: an integer option wants a TOML integer (not "3" or 3.0), a string
    option a TOML string; a number option takes an integer too."""
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(kind, click.IntRange) or kind is click.INT:
        return isinstance(value, int)
    if isinstance(kind, click.FloatRange) or kind is click.FLOAT:
        return isinstance(value, (int, float))
    return isinstance(value, str)


def _shown(value: Any) -> str:
    """A value as the file would write it (``"abc"``, ``true``, ``[0, 1]``)."""
    try:
        return json.dumps(value)
    except TypeError:  # TOML dates and times
        return str(value)


def option_values(path: str | Path, command: click.Command, ctx: click.Context,
                  list_options: Iterable[str] = ()) -> dict[str, Any]:
    """The file's values by click parameter name, converted and checked by each option's click
    type. ``list_options`` (parameter names) are comma-separated options: their key may also be a
    TOML array, joined with commas. A ``[params]`` table becomes ``--param K=V`` items."""
    table = read_toml(path)
    lists = set(list_options)
    by_key: dict[str, click.Option] = {}
    for param in command.params:
        if not isinstance(param, click.Option) or "--config" in param.opts:
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                by_key[opt[2:]] = param
    accepted = sorted(k for k, p in by_key.items() if p.name != PARAMS_OPTION)
    has_params = any(p.name == PARAMS_OPTION for p in by_key.values())
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}  # parameter name -> the key that gave it
    for key, value in table.items():
        if key == PARAMS_TABLE and has_params:
            values[PARAMS_OPTION] = _param_items(path, value)
            continue
        param = by_key.get(key.replace("_", "-"))
        if param is None or param.name == PARAMS_OPTION:
            known = ", ".join(accepted) + (f", [{PARAMS_TABLE}]" if has_params else "")
            hint = f" (method parameters go in a [{PARAMS_TABLE}] table)" if param is not None else ""
            raise PromptgymError(f"{path}: {key}: unknown key{hint}; known keys: {known}")
        if param.name in seen:
            raise PromptgymError(f"{path}: {key}: given twice (also as {seen[param.name]}); keep one")
        seen[param.name] = key
        if param.name in lists and isinstance(value, list) and all(
                isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            value = ",".join(str(v) for v in value)
        if not _fits_toml_type(param, value):
            raise PromptgymError(f"{path}: {key}: expected {describe(param)}, got {_shown(value)}")
        try:
            values[param.name] = param.type_cast_value(ctx, value)
        except click.BadParameter:
            raise PromptgymError(f"{path}: {key}: expected {describe(param)}, got {_shown(value)}") from None
    return values


def _param_items(path: str | Path, table: Any) -> tuple[str, ...]:
    """``[params]`` as ``--param`` items: each value JSON-encoded, which is how --param reads it."""
    if not isinstance(table, dict):
        raise PromptgymError(f"{path}: {PARAMS_TABLE}: expected a table of method parameters "
                             f"([{PARAMS_TABLE}] with KEY = VALUE lines), got {_shown(table)}")
    items = []
    for key, value in table.items():
        where = f"{path}: {PARAMS_TABLE}.{key}"
        problem = _not_json(value)
        if problem:
            raise PromptgymError(f"{where}: a method parameter is a string, number, true/false, array or "
                                 f"table; {problem}")
        try:
            items.append(f"{key}={json.dumps(value)}")
        except (RecursionError, ValueError):
            raise PromptgymError(f"{where}: nested too deeply") from None
    return tuple(items)


def _not_json(value: Any, depth: int = 0) -> str | None:
    """What in a TOML value has no JSON form (``--param`` values are JSON), or None. TOML dates and
    times are the only such values; NaN and infinity pass, as ``--param`` reads them."""
    if depth > 100:
        return "got values nested more than 100 deep"
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return f"got the TOML {type(value).__name__} {value} (quote it to pass it as a string)"
    if isinstance(value, list):
        return next((p for p in (_not_json(v, depth + 1) for v in value) if p), None)
    if isinstance(value, dict):
        return next((p for p in (_not_json(v, depth + 1) for v in value.values()) if p), None)
    return None


def merge_into(ctx: click.Context, path: str | Path, command: click.Command,
               list_options: Iterable[str] = ()) -> None:
    """Put the file's values into ``ctx.params`` for every option not given on the command line.
    ``--param`` items add up: the file's first, the command line's after (so they win per key)."""
    for name, value in option_values(path, command, ctx, list_options).items():
        given = ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
        if name == PARAMS_OPTION:
            ctx.params[name] = tuple(value) + tuple(ctx.params.get(name) or ())
        elif not given:
            ctx.params[name] = value
