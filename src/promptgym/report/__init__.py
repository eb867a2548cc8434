"""Reports: terminal tables of a run's outcome, its candidates and the stored runs; the live
progress bar of a run."""

from promptgym.report.progress import call_progress
from promptgym.report.tables import candidates_table, compare_table, runs_table, summary_table

__all__ = ["call_progress", "candidates_table", "compare_table", "runs_table", "summary_table"]
