"""Optimizers: one module per method, all behind the same small base class and registry."""

from promptgym.optimizers import ape  # noqa: F401  (registers)
from promptgym.optimizers import opro  # noqa: F401  (registers)
from promptgym.optimizers import evoprompt  # noqa: F401  (registers)
from promptgym.optimizers import protegi  # noqa: F401  (registers)
from promptgym.optimizers import gpo  # noqa: F401  (registers)
from promptgym.optimizers import dp2o  # noqa: F401  (registers)
from promptgym.optimizers import grips  # noqa: F401  (registers)
from promptgym.optimizers import promptbreeder  # noqa: F401  (registers)
from promptgym.optimizers import rlprompt  # noqa: F401  (registers)
from promptgym.optimizers.base import REGISTRY, Context, Optimizer, get_method, register

__all__ = ["REGISTRY", "Context", "Optimizer", "get_method", "register"]
