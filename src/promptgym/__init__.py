"""promptgym: automatic prompt optimization, faithful methods, any model, honest results."""

from promptgym.api import RunResult, optimize, resume
from promptgym.data import Dataset, Example, load_dataset
from promptgym.optimizers.stopping import Stop
from promptgym.tasks import ChoiceTask, GenerationTask, Prompt
from promptgym.version import __version__  # noqa: F401  (promptgym.__version__)

__all__ = ["RunResult", "optimize", "resume", "Stop", "Dataset", "Example", "load_dataset",
           "ChoiceTask", "GenerationTask", "Prompt"]
