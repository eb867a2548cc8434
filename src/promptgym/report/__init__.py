"""Reports: terminal tables of a run's outcome, its candidates and the stored runs; the live
progress bar of a run."""

from promptgym.report.progress import run_status
from promptgym.report.tables import candidates_table, runs_table, summary_table

__all__ = ["run_status", "candidates_table", "runs_table", "summary_table"]
