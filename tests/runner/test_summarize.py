"""The verdict in words (``runner.summarize.verdict``): a kept start says whether a finalist scored
higher on dev (then "not clearly better"), never "no candidate beat it" next to a higher dev score."""

from __future__ import annotations

from promptgym.evaluation.selection import Entrant, Selection, plan_selection
from promptgym.runner.summarize import verdict
from promptgym.tasks.prompt import Prompt

PLAN = plan_selection(available=100, budget=200, dev_size=30, k=2)
NO_TEST = dict(test_p_value=None, test_delta=None)


def _kept(start: list[float], *finalists: list[float], dropped: int | None = None) -> Selection:
    entrants = [Entrant(Prompt("start"), -1, start)]
    entrants += [Entrant(Prompt(f"candidate {i}"), i, s) for i, s in enumerate(finalists)]
    if dropped is not None:
        entrants[-1].dropped_after = dropped
    return Selection(chosen=entrants[0].prompt, kept_start=True, p_value=0.25, comparison=None,
                     entrants=entrants, level=0.1, dev_size=len(start))


def test_a_kept_start_next_to_a_higher_finalist_says_not_clearly_better():
    text = verdict(PLAN, _kept([1, 0, 0, 1], [1, 1, 0, 1], [0, 0, 0, 1]), NO_TEST)
    assert text == ("kept your prompt: a candidate scored higher on the dev split (0.750 against 0.500) "
                    "but not clearly better (p = 0.25 on dev)")


def test_a_kept_start_no_finalist_scored_higher():
    assert verdict(PLAN, _kept([1, 1, 0, 1], [1, 0, 0, 1]), NO_TEST) == (
        "kept your prompt: no candidate scored higher on the dev split (p = 0.25 on dev)")
    # a finalist dropped early is judged by the race, not by its mean over the few examples it saw
    assert "no candidate scored higher" in verdict(PLAN, _kept([0, 0, 0, 1], [1], dropped=1), NO_TEST)
