"""promptgym's public conformance suite on this package's method, and its registration."""

import pytest

from promptgym.optimizers import get_method
from promptgym.testing import MethodConformance
from promptgym_example_method import RewriteSearch


class TestRewriteSearch(MethodConformance):
    @pytest.fixture
    def method(self):
        return RewriteSearch


def test_found_by_its_entry_point():
    assert get_method("example-rewrite") is RewriteSearch
