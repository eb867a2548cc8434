"""Optimizers: one module per method, all behind the same small base class; the registry knows them
by name, with the methods other installed packages declare (``registry``)."""

from promptgym.optimizers.base import REGISTRY, Context, Optimizer, register
from promptgym.optimizers.registry import (BUILTIN_METHODS, ENTRY_POINT_GROUP, get_method, method_names,
                                           method_summaries)

__all__ = ["BUILTIN_METHODS", "ENTRY_POINT_GROUP", "REGISTRY", "Context", "Optimizer", "get_method",
           "method_names", "method_summaries", "register"]
