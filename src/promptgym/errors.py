"""User-facing errors: the CLI prints them as one line, without a traceback."""


class PromptgymError(Exception):
    """A problem the user can fix (bad file, unknown method, ...). Message is one line."""


class DataError(PromptgymError):
    """Bad or missing input data; the message names the file, row or field."""


class BudgetExhausted(Exception):
    """Raised before a model call that would exceed the hard call budget.

    Not a user error: optimizers stop searching and keep their best candidate.
    """
