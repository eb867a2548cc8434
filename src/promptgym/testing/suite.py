"""The conformance checks as a pytest test class, in the manner of Optuna's sampler test cases:
subclass it in a test module and give it a ``method`` fixture that returns your ``Optimizer``
subclass; pytest then runs every check on it, one test each.

    import pytest
    from promptgym.testing import MethodConformance
    from my_package import MyMethod

    class TestMyMethod(MethodConformance):
        @pytest.fixture
        def method(self):
            return MyMethod

A check that cannot apply to a method is left out by overriding its test with a reason, e.g.
``@pytest.mark.skip(reason="...")`` on a ``test_...`` method of the same name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from promptgym.optimizers.base import Optimizer
from promptgym.testing import checks


class MethodConformance:
    """Every check of ``promptgym.testing.checks``, one test each, on the ``method`` fixture."""

    @pytest.fixture
    def method(self) -> type[Optimizer]:
        raise NotImplementedError("give the test class a `method` fixture that returns your Optimizer subclass")

    @pytest.mark.parametrize("budget", checks.BUDGETS)
    def test_budget_respected_exactly(self, method: type[Optimizer], budget: int, tmp_path: Path) -> None:
        checks.check_budget(method, tmp_path, budget)

    def test_deterministic_for_seed_and_fresh_cache(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_deterministic(method, tmp_path)

    def test_resume_after_interruption(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_resume(method, tmp_path)

    def test_never_sees_test_examples(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_no_test_leak(method, tmp_path)

    def test_returned_prompt_renders(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_result_renders(method, tmp_path)

    def test_runs_to_its_own_end_without_a_budget(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_runs_to_its_end(method, tmp_path)

    @pytest.mark.parametrize("budget", [40, None])
    def test_every_parent_is_a_recorded_candidate(self, method: type[Optimizer], budget: int | None,
                                                  tmp_path: Path) -> None:
        checks.check_lineage(method, tmp_path, budget)

    def test_independent_of_python_hash_seed(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_hash_seed(method, tmp_path)

    def test_bad_parameters_fail_at_construction(self, method: type[Optimizer]) -> None:
        checks.check_bad_parameters(method)

    def test_each_stopper_stops_it(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_stoppers(method, tmp_path)

    def test_one_instance_runs_twice_alike(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_runs_twice_alike(method, tmp_path)

    def test_projection_rehearsal(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_rehearsal(method, tmp_path)

    def test_declared_capabilities_hold(self, method: type[Optimizer], tmp_path: Path) -> None:
        checks.check_capabilities(method, tmp_path)
