"""Model backends: what optimizers never see past. A backend answers requests, knows no tasks."""

from promptgym.models.base import Backend, Completion, GenerationRequest, OptionScores, ScoreRequest
from promptgym.models.factory import make_backend

__all__ = ["Backend", "Completion", "GenerationRequest", "OptionScores", "ScoreRequest", "make_backend"]
