"""The public conformance suite (``promptgym.testing``) on every built-in method: the same checks a
method from another package runs on itself (tests/plugin_example). A method joins by being built in;
what each check asks and why is in ``promptgym.testing.checks``."""

from __future__ import annotations

import pytest

from promptgym.optimizers import BUILTIN_METHODS, get_method
from promptgym.testing import MethodConformance


class TestBuiltinMethods(MethodConformance):
    @pytest.fixture(params=sorted(BUILTIN_METHODS))
    def method(self, request):
        return get_method(request.param)


# Parameter variants that change how a method scores its candidates (the shared ``candidate_eval``,
# and ProTeGi's selectors from the same module) go through every check as if they were methods:
# each is a subclass built with those parameters, defined at module level so that the check run in
# a fresh process (PYTHONHASHSEED) can import it by its path.
POOL_METHODS = ("ape", "evoprompt-ga", "grips", "opro", "promptbreeder")
VARIANTS: dict[str, tuple[str, dict]] = {
    **{f"{m}[candidate_eval={s}]": (m, {"candidate_eval": s}) for m in POOL_METHODS for s in ("halving", "rejects")},
    **{f"{m}[candidate_eval=halving,saved_calls=candidates]": (m, {"candidate_eval": "halving",
                                                                   "saved_calls": "candidates"})
       for m in POOL_METHODS},
    **{f"protegi[selector={s}]": ("protegi", {"selector": s}) for s in ("halving", "rejects")},
}


def _variant_class(label: str, method: str, params: dict) -> type:
    base = get_method(method)

    def __init__(self, **kw):
        base.__init__(self, **{**params, **kw})

    name = "Variant_" + "".join(c if c.isalnum() else "_" for c in label)
    cls = type(name, (base,), {"__init__": __init__, "__module__": __name__, "__qualname__": name})
    globals()[name] = cls
    return cls


VARIANT_CLASSES = {label: _variant_class(label, method, params) for label, (method, params) in VARIANTS.items()}


class TestPoolScoringVariants(MethodConformance):
    @pytest.fixture(params=list(VARIANT_CLASSES))
    def method(self, request):
        return VARIANT_CLASSES[request.param]
