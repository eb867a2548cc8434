"""``promptgym bench``: every method on the same work (datasets, seeds, task models, split, budget),
with paired tests, a table and plots. ``grid`` runs the cells, ``report`` writes the results."""

from promptgym.bench.grid import PRESETS, BenchDir, Cell, Settings, Variant, cells, parse_variants, run_grid
from promptgym.bench.report import write_report

__all__ = ["PRESETS", "BenchDir", "Cell", "Settings", "Variant", "cells", "parse_variants", "run_grid",
           "write_report"]
