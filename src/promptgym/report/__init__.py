"""Reports: terminal tables of a run's outcome, its candidates, the stored runs and two runs side
by side; the HTML run page (``report.html``). (A run's live status line is the runner's:
``promptgym.runner.progress``.)"""

from promptgym.report.tables import candidates_table, compare_table, runs_table, summary_table

__all__ = ["candidates_table", "compare_table", "runs_table", "summary_table"]
