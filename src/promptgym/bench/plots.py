"""The bench's two figures (matplotlib, headless): one panel per dataset x task model.

- ``test-delta.png``: each method's returned prompt minus the start on test, the pooled 95% paired
  interval as a bar and each seed as a dot; zero is the start.
- ``train-curve.png`` (smaller: it is not the result): the best training score found so far against
  the search budget spent, the mean over seeds of each method's step curve, the start's training
  score dashed as the baseline, and each method's held-out Δ test beside its name in the legend.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from promptgym.bench.work import group_key
from promptgym.report.charts import svg


def _panels(records: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(map(group_key, records)))


def _title(key: tuple[str, str, str]) -> str:
    dataset, model, layout = key
    return f"{dataset.split(':')[-1]}\n{model} ({layout})"


def draw(folder: Path, rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, str]:
    """Write the PNGs into ``folder``; return each figure as inline SVG by file name (the HTML page)."""
    import matplotlib  # the report extra: a missing one is the caller's ImportError

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    folder.mkdir(parents=True, exist_ok=True)
    panels = _panels(records)
    if not panels:
        return {}
    written: dict[str, str] = {}

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.45 * max(
        sum(1 for r in records if group_key(r) == k) for k in panels) + 1.6),
        squeeze=False, sharex=True)
    for ax, key in zip(axes[0], panels):
        recs = [r for r in records if group_key(r) == key]
        for y, rec in enumerate(recs):
            p = rec.get("pooled")
            if p:
                ax.plot([p["low"], p["high"]], [y, y], color="tab:blue", linewidth=3, alpha=0.5)
                ax.plot([p["delta"]], [y], marker="|", color="tab:blue", markersize=12)
            runs = [r["summary"] for r in rows if r["status"] == "ok" and r["variant"] == rec["variant"]
                    and group_key(r) == key and r["summary"].get("test_delta") is not None]
            picks = [s["test_method_best"] - s["test_initial"] for s in runs if s.get("test_method_best") is not None]
            ax.scatter(picks, [y + 0.2] * len(picks), facecolors="none", edgecolors="tab:red", s=14, zorder=3,
                       label="method's own pick (before selection)" if y == 0 else None)
            ax.scatter([s["test_delta"] for s in runs], [y] * len(runs), color="black", s=10, zorder=3,
                       label="returned prompt, per seed" if y == 0 else None)
        ax.axvline(0, color="grey", linewidth=1)
        ax.set_yticks(range(len(recs)), [r["variant"] for r in recs], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(_title(key), fontsize=9)
        ax.set_xlabel("test score minus the start's (held out)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(axis="x", labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(folder / "test-delta.png", dpi=110)
    written["test-delta.png"] = svg(fig)

    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 2.3), squeeze=False)
    for ax, key in zip(axes[0], panels):
        starts = [r["summary"]["initial_score"] for r in rows if r["status"] == "ok" and group_key(r) == key
                  and r["summary"].get("initial_score") is not None]
        if starts:
            ax.axhline(float(np.mean(starts)), color="grey", linestyle="--", linewidth=1,
                       label="your prompt (start)")
        for rec in (r for r in records if group_key(r) == key):
            curves = [r["train_curve"] for r in rows if r["status"] == "ok" and r["variant"] == rec["variant"]
                      and group_key(r) == key and r.get("train_curve")]
            if not curves:
                continue
            end = max(c[-1][0] for c in curves) or 1
            grid = np.arange(0, end + 1)
            # each seed's best-so-far is a step function of calls spent; before its first score it is undefined
            values = np.array([[max([s for x, s in c if x <= g], default=np.nan) for g in grid] for c in curves])
            with warnings.catch_warnings():  # calls before any seed's first score: a gap, not a warning
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(values, axis=0)
            held = rec.get("test_delta_mean")
            ax.step(grid, mean, where="post", linewidth=1.2,
                    label=rec["variant"] + ("" if held is None else f" (held-out Δ test {held:+.3f})"))
        ax.set_title(_title(key), fontsize=8)
        ax.set_xlabel("search calls spent", fontsize=7)
        ax.set_ylabel("best training score so far\n(train: seen by the search)", fontsize=7)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:  # per panel: each panel's Δ test is its own
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=6.5, frameon=False)
    fig.tight_layout()
    fig.savefig(folder / "train-curve.png", dpi=110, bbox_inches="tight")
    written["train-curve.png"] = svg(fig)
    return written
