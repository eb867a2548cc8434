"""Evaluation: the Evaluator (cache, budget, ledger, progress) and the response cache."""

from promptgym.evaluation.cache import ResponseCache, request_key
from promptgym.evaluation.evaluator import Budget, EvalResult, Evaluator

__all__ = ["Budget", "EvalResult", "Evaluator", "ResponseCache", "request_key"]
