"""User-facing errors: the CLI prints them as one line, without a traceback."""


class PromptgymError(Exception):
    """A problem the user can fix (bad file, unknown method, ...). Message is one line."""


class ScoringUnavailable(PromptgymError):
    """A model that cannot score options by log-probability (e.g. a server that returns no
    log-probabilities): ``reason`` says why, the message adds the way out. A run that chose the
    scoring itself answers by generation instead."""

    def __init__(self, reason: str):
        super().__init__(reason)  # the only argument: it pickles (a Ray task's error comes back whole)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}; use --scoring generate"


class DataError(PromptgymError):
    """Bad or missing input data; the message names the file, row or field."""


class BudgetExhausted(Exception):
    """Raised before a model call that would exceed the hard call budget.

    Not a user error: optimizers stop searching and keep their best candidate.
    """
