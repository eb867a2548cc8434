"""Which methods exist, by name: the built-in ones, registered when their modules are imported here,
and those other installed packages declare in the ``promptgym.methods`` entry-point group (as pytest
finds its plugins):

    [project.entry-points."promptgym.methods"]
    my-method = "my_package.module:MyMethod"

A package's method is loaded when it is first asked for, by name or by a listing, so that a broken
package stops only what uses it (not ``promptgym runs``, nor the other methods); loading it then fails
with one line naming the package and the cause. The entry point's name is the method's name (the
class's ``name``); a built-in method's name cannot be taken: the built-in one wins.
"""

from __future__ import annotations

from importlib import metadata

from promptgym.errors import PromptgymError
from promptgym.optimizers import ape  # noqa: F401  (registers)
from promptgym.optimizers import opro  # noqa: F401  (registers)
from promptgym.optimizers import evoprompt  # noqa: F401  (registers)
from promptgym.optimizers import protegi  # noqa: F401  (registers)
from promptgym.optimizers import gpo  # noqa: F401  (registers)
from promptgym.optimizers import dp2o  # noqa: F401  (registers)
from promptgym.optimizers import grips  # noqa: F401  (registers)
from promptgym.optimizers import promptbreeder  # noqa: F401  (registers)
from promptgym.optimizers import rlprompt  # noqa: F401  (registers)
from promptgym.optimizers.base import REGISTRY, Optimizer

ENTRY_POINT_GROUP = "promptgym.methods"
BUILTIN_METHODS: tuple[str, ...] = tuple(REGISTRY)  # in registration order


def plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """The group's entry points by name, built-in names left out (the first of a name wins: the
    same package found twice on ``sys.path``)."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in BUILTIN_METHODS:
            found.setdefault(entry.name, entry)
    return found


def method_names() -> list[str]:
    """Every method's name: the built-in ones in registration order, then the installed packages'
    (sorted), none of them loaded."""
    return list(BUILTIN_METHODS) + sorted(set(plugin_entry_points()) | set(REGISTRY) - set(BUILTIN_METHODS))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_plugin(entry: metadata.EntryPoint) -> type[Optimizer]:
    """The method an entry point names, checked and registered; one line when it cannot be."""
    package = entry.dist.name if entry.dist else None
    where = f"'{entry.value}'" + (f" of package '{package}'" if package else "")
    try:
        loaded = entry.load()
    except Exception as exc:  # noqa: BLE001 -- whatever another package's import raises, said in one line
        raise PromptgymError(f"method '{entry.name}' ({where}) failed to load: {_one_line(exc)}") from None
    if not (isinstance(loaded, type) and issubclass(loaded, Optimizer)):
        raise PromptgymError(f"method '{entry.name}' ({where}) is not a subclass of promptgym's Optimizer")
    if loaded.name != entry.name:
        raise PromptgymError(f"method '{entry.name}' ({where}): the class's name is '{loaded.name}'; the entry "
                             "point must be named after the method")
    REGISTRY[entry.name] = loaded
    return loaded


def get_method(name: str) -> type[Optimizer]:
    """The method called ``name``, built-in or from an installed package."""
    if name in REGISTRY:
        return REGISTRY[name]
    entry = plugin_entry_points().get(name)
    if entry is None:
        raise PromptgymError(f"unknown method '{name}' (known: {', '.join(sorted(method_names()))})")
    return load_plugin(entry)


def method_summaries() -> dict[str, str]:
    """Name -> one-line summary of every method, sorted by name. A package's method that fails to
    load is listed with its error instead, so one broken package does not hide the others."""
    out = {}
    for name in sorted(method_names()):
        try:
            out[name] = get_method(name).summary
        except PromptgymError as exc:
            out[name] = f"(cannot be used: {exc})"
    return out
