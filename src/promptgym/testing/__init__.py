"""The conformance suite of the method contract, public (as ``optuna.testing`` is): a method written
in another package passes the same checks as every built-in one, then registers through the
``promptgym.methods`` entry-point group (docs/plugins.md).

- ``MethodConformance``: a pytest test class; subclass it with a ``method`` fixture.
- ``check_method(MyMethod, workdir)``: every check without pytest; ``check_budget`` etc. one each.
  A broken rule raises ``ConformanceError`` naming it.
- ``ConformanceBackend``, ``make_context``: the scripted world the checks run in, for a method's
  own unit tests (a deterministic stand-in model, not a language model).

Needs pytest for ``MethodConformance`` (``pip install 'promptgym[testing]'``).
"""

from promptgym.testing.checks import (BUDGETS, ConformanceError, LineageRecorder, check_bad_parameters,
                                      check_budget, check_capabilities, check_deterministic, check_hash_seed, check_lineage,
                                      check_method, check_no_test_leak, check_rehearsal, check_result_renders,
                                      check_resume, check_runs_to_its_end, check_runs_twice_alike, check_stoppers,
                                      fingerprint)
from promptgym.testing.scripted import (LABELS, ConformanceBackend, RecordingBackend, heldout_examples,
                                        make_context, make_examples, scripted_logprob, scripted_reply)
from promptgym.testing.suite import MethodConformance

__all__ = ["BUDGETS", "ConformanceBackend", "ConformanceError", "LABELS", "LineageRecorder", "MethodConformance",
           "RecordingBackend", "check_bad_parameters", "check_budget", "check_capabilities", "check_deterministic",
           "check_hash_seed", "check_lineage", "check_method", "check_no_test_leak", "check_rehearsal", "check_result_renders",
           "check_resume", "check_runs_to_its_end", "check_runs_twice_alike", "check_stoppers", "fingerprint",
           "heldout_examples", "make_context", "make_examples", "scripted_logprob", "scripted_reply"]
