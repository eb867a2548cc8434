"""Reports: terminal tables of a run's outcome, its candidates, the stored runs and two runs side
by side; the live status line of a run; the HTML run and bench pages (``report.html``)."""

from promptgym.report.progress import run_status
from promptgym.report.tables import candidates_table, compare_table, runs_table, summary_table

__all__ = ["run_status", "candidates_table", "compare_table", "runs_table", "summary_table"]
