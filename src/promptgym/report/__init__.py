"""Reports: terminal tables of a run's outcome, its candidates and the stored runs."""

from promptgym.report.tables import candidates_table, runs_table, summary_table

__all__ = ["candidates_table", "runs_table", "summary_table"]
