"""The runner: how a run is built and executed, below the public API (``promptgym.api``).

``setup`` builds everything a run needs from its config (data, splits, task and reward, start,
method, models, cache), checked before a run row exists; ``execute`` runs it as
``search`` -> ``final_selection`` -> ``heldout`` -> ``summarize``, each a module you can read
alone, under the run's lease (``served_scoring`` first settles how a served model scores choices). ``backends`` says which Backend a model spec means in this process
(including backend objects a caller passes in); ``summary`` holds the result types.
"""

from promptgym.runner.summary import RunResult, RunSummary

__all__ = ["RunResult", "RunSummary"]
