"""A run's search trajectory read back from the store: what each evaluation scored and when, in
model calls spent. Shared by the run page and the bench's curves."""

from __future__ import annotations

from typing import Any


def _search_scores(calls: list[dict[str, Any]], scores: list[dict[str, Any]]
                   ) -> tuple[list[float], list[dict[str, Any]], int]:
    """(times of the search's charged calls, the training scores recorded during the search,
    the largest batch they used). Splits ``train*`` but not ``train-final``, which is scored after
    the search; final selection's calls (role ``select``) are not the search's."""
    charged = [c["created"] for c in calls if c["charged"] and not c["cached"] and c["role"] != "select"]
    search = [s for s in scores if s["split"].startswith("train") and s["split"] != "train-final"]
    if not charged and search:
        # a run answered wholly from the cache spent nothing: count the answers it took (cached,
        # search only: up to the first score after the search), else every dot sits at 0 calls
        after = min((s["created"] for s in scores if not s["split"].startswith("train") or s["split"] == "train-final"),
                    default=float("inf"))
        charged = [c["created"] for c in calls if c["role"] != "select" and c["created"] <= after]
    return charged, search, max((s["n"] for s in search), default=0)


def curve_of(calls: list[dict[str, Any]], scores: list[dict[str, Any]]) -> list[list[float]]:
    """``[[search calls spent, best score so far], ...]`` from a run's ledger rows and score rows:
    the scores a method recorded on its training data during the search, on the largest batch it
    used (methods score minibatches of different sizes; mixing sizes would make the curve jump with
    the batch, not the prompt). Ends at the calls spent."""
    charged, search, full = _search_scores(calls, scores)
    curve: list[list[float]] = []
    for s in search:
        if s["n"] == full and (not curve or s["score"] > curve[-1][1]):
            curve.append([sum(1 for t in charged if t <= s["created"]), s["score"]])
    if curve and len(charged) > curve[-1][0]:
        curve.append([len(charged), curve[-1][1]])
    return curve


def points_of(calls: list[dict[str, Any]], scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every training evaluation of the search on the largest batch: candidate, calls spent when
    it was recorded, score (one point per evaluation, so a re-scored candidate appears twice)."""
    charged, search, full = _search_scores(calls, scores)
    return [dict(candidate_id=s["candidate_id"], calls=sum(1 for t in charged if t <= s["created"]),
                 score=s["score"], n=s["n"]) for s in search if s["n"] == full]


def train_curve(store: Any, run_id: str) -> list[list[float]]:
    """``curve_of`` a stored run."""
    return curve_of(store.call_rows(run_id), store.scores(run_id))
