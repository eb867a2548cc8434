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
