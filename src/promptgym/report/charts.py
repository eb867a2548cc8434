"""The run page's figures, drawn by matplotlib (headless) as inline SVG: the page carries them, so
nothing is fetched when it is viewed. No model-written text goes into a figure (candidates are
shown by their number), so the SVG needs no escaping of its own."""

from __future__ import annotations

import io
from typing import Any

# One colour per role, the same in every figure and in the page's table.
START, CHOSEN, PICK, OTHER = "#1b6ac9", "#d62728", "#ff7f0e", "#7f7f7f"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def svg(fig: Any) -> str:
    """The figure as an ``<svg>`` element (no XML prolog, so it can sit inside HTML); text stays
    text, and ids are fixed so the same figure gives the same page."""
    import matplotlib

    plt = _pyplot()
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "promptgym"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def trajectory(points: list[dict[str, Any]], curve: list[list[float]], seq: dict[str, int],
               start_score: float | None, batch: int, tests: dict[str, float] | None = None,
               returned_is_start: bool = False) -> str:
    """Left, on the training data the search saw: every training evaluation (dots) and the best
    score so far (step line) against the search's model calls, your prompt's training score as
    the baseline. Right, beside it on the same scale: the held-out test scores (``tests`` by role:
    start, chosen, pick), which the search never saw."""
    plt = _pyplot()
    tests = tests or {}
    fig, (ax, held) = plt.subplots(1, 2, figsize=(8.2, 3.2), sharey=True,
                                   gridspec_kw=dict(width_ratios=[5, 1.2], wspace=0.06))
    xs = [p["calls"] for p in points]
    ax.scatter(xs, [p["score"] for p in points], s=14, color=OTHER, alpha=0.6, label="an evaluation")
    if curve:
        ax.step([c[0] for c in curve], [c[1] for c in curve], where="post", color=CHOSEN, linewidth=1.5,
                label="best so far")
    if start_score is not None:
        ax.axhline(start_score, color=START, linestyle="--", linewidth=1, label="your prompt (baseline)")
    for p in points:
        if len(points) <= 60:
            ax.annotate(str(seq.get(p["candidate_id"], "?")), (p["calls"], p["score"]), fontsize=6,
                        xytext=(2, 2), textcoords="offset points", color="#444")
    ax.set_xlabel("search model calls spent")
    ax.set_ylabel("score")
    ax.set_title(f"training data, seen by the search ({batch} examples)", fontsize=8, loc="left")
    # below the axes: inside, it covered the dots and the baseline
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.2), ncol=3, fontsize=7, frameon=False)
    ax.grid(alpha=0.2)
    colours = {"start": START, "chosen": CHOSEN, "pick": PICK}
    names = {"start": "yours (returned)" if returned_is_start else "yours", "chosen": "returned",
             "pick": "method's pick"}
    shown = [r for r in ("start", "chosen", "pick") if tests.get(r) is not None]
    for i, r in enumerate(shown):
        held.scatter([i], [tests[r]], s=50, color=colours[r], edgecolors="black", linewidths=0.6, zorder=3)
        held.annotate(f"{tests[r]:.2f}", (i, tests[r]), fontsize=6, xytext=(5, -2), textcoords="offset points")
    held.set_xticks(range(len(shown)), [names[r] for r in shown], rotation=30, ha="right", fontsize=7)
    held.set_xlim(-0.6, max(len(shown), 1) - 0.4)
    held.set_title("test, held out", fontsize=8)
    held.grid(alpha=0.2, axis="y")
    if not shown:
        held.text(0.5, 0.5, "no test split", ha="center", va="center", fontsize=7, transform=held.transAxes)
    return svg(fig)


def lineage(nodes: list[dict[str, Any]]) -> str:
    """Candidates in the order they were made (x) at their training score (y), an edge from each
    parent; unscored candidates sit on a band below the axis. ``nodes``: seq, parents (seqs),
    score, role (start, chosen, pick or other)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    scored = [n["score"] for n in nodes if n["score"] is not None]
    low = min(scored, default=0.0)
    high = max(scored, default=1.0)
    floor = low - 0.12 * ((high - low) or 1.0)
    y = {n["seq"]: (n["score"] if n["score"] is not None else floor) for n in nodes}
    for n in nodes:
        for parent in n["parents"]:
            if parent in y:
                ax.plot([parent, n["seq"]], [y[parent], y[n["seq"]]], color="#bbbbbb", linewidth=0.7, zorder=1)
    colours = {"start": START, "chosen": CHOSEN, "pick": PICK, "other": OTHER}
    labels = {"start": "your prompt", "chosen": "returned", "pick": "method's own pick", "other": "candidate"}
    for role in ("other", "pick", "start", "chosen"):
        group = [n for n in nodes if n["role"] == role]
        if group:
            ax.scatter([n["seq"] for n in group], [y[n["seq"]] for n in group], s=60 if role != "other" else 22,
                       color=colours[role], zorder=3, label=labels[role],
                       edgecolors="black" if role != "other" else "none", linewidths=0.6)
    if len(nodes) <= 80:
        for n in nodes:
            ax.annotate(str(n["seq"]), (n["seq"], y[n["seq"]]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    if any(n["score"] is None for n in nodes):
        ax.axhline(floor + 0.06 * ((high - low) or 1.0), color="#dddddd", linewidth=0.6)
        ax.text(1.0, floor, "not scored on train ", fontsize=6, color="#666", va="bottom", ha="right",
                transform=ax.get_yaxis_transform())
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("candidate number (order made)")
    ax.set_ylabel("training score")
    ax.legend(loc="best", fontsize=7, frameon=False)
    ax.grid(alpha=0.2)
    return svg(fig)


def bars(labels: list[str], values: list[float], xlabel: str, highlight: int | None = None) -> str:
    """A horizontal bar per label (DP2O: how often the policy chose each pool prompt)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(labels) + 1.0))
    colours = [CHOSEN if i == highlight else OTHER for i in range(len(labels))]
    ax.barh(range(len(labels)), values, color=colours)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.2, axis="x")
    return svg(fig)
