"""GRIPS, Gradient-free, edit-based Instruction search (Prasad et al., EACL 2023): greedy local
search over the instruction by phrase-level edits, scored on the training split.

Faithful to the paper and archiki/GRIPS (``run_search.py``):
- Score the starting instruction on a score set of up to ``score_set`` (100) training examples
  drawn at random (the code pools train and dev; here the dev split is final selection's).
  The score is ``100 x balanced accuracy`` (rounded to 2 decimals, as the code does) plus
  ``10 x entropy`` (natural log) of the predicted-label distribution: the entropy term penalises a
  prompt that answers one label for everything.
- Each iteration (at most ``num_iter``, 10): split the current instruction into disjoint phrases,
  draw ``candidates`` (m = 5) edit operations uniformly (with replacement) from ``edits`` and apply
  each to the current instruction once:
  ``del`` removes a random phrase (remembered); ``swap`` exchanges two random phrases; ``sub``
  replaces a random phrase by a paraphrase; ``add`` re-inserts a previously deleted phrase after a
  random phrase or at the start (offered only once something was deleted).
- Score every candidate; the best replaces the current instruction if it scores strictly higher
  (deleted phrases join the delete tracker, re-added ones leave it). ``patience`` (P = 2) iterations
  in a row without that end the search (the shared patience stopper reads the current score, which
  only rises on an accepted edit). The answer is the current instruction.

What differs from the official code, and why:
- Phrases come from a rule-based chunker of our own (``segment``), not supar's CRF constituency
  parser: no parser model may be downloaded at run time. It splits at punctuation, makes
  coordinators (and, or, ...) one-word phrases (as the code's lone preterminals), starts a new
  phrase at a preposition, subordinator, pronoun, auxiliary or determiner that follows a content
  word, and keeps a quoted label ('yes') whole. Checked and left out: TextBlob (Pattern's tagger
  and chunker, model inside its wheel) pulls in nltk, regex, joblib and tqdm, far from a small
  pure-Python dependency, and its chunks are as shallow as these (it also tagged the imperative
  "Read" of "Read the movie review" as a proper noun: instructions start that way).
- ``sub`` asks the optimizer model for the paraphrase (one sample, shown the whole instruction,
  the reply primed to open a quotation) instead of a local PEGASUS model (10 beams, one picked at
  random). Without ``sub`` in ``edits`` GRIPS never calls the optimizer model.
- Edits work on the phrase's position, not with ``str.replace``: the code's replace edits every
  occurrence of a repeated phrase, and its ``swap`` overwrites the second phrase with the first
  (the second replacement starts from the original string); here a swap exchanges the two.
- Candidates identical to the current prompt or to another of the iteration (e.g. a swap of a
  phrase with an equal one) are dropped unscored: they could not be accepted anyway.
- Left out (off by default in the code): simulated annealing, composed edits (``num_compose``),
  word/sentence/span-level edits, the task-agnostic instruction.
- Tasks without label choices are scored by ``100 x`` the task's mean metric (the paper's tasks
  are all classification).
- Budget: a candidate costs the score set plus, with ``sub`` on, one optimizer call. When the run's
  budget cannot pay for the plan, ``num_iter`` is cut first, so that an iteration still compares
  the paper's m candidates, then ``candidates``; never raised. The plan assumes every candidate
  is scored; dropped ones leave budget unspent.

Our extension, not in the paper (``format_edits``, on by default): the same search also edits the
format, because on small models the layout and the label words move accuracy as much as the
instruction's words. Two more operations join the draw: ``layout`` switches to another shipped
layout, ``labels`` changes the label words: all to another case (lower, Capitalised, UPPER) or,
with ``sub`` on, one label to a synonym the optimizer model proposes.

A second extension, off by default (``reasoning_edits``): for a choice task, one more operation,
``reasoning``, toggles whether the model reasons before it answers (``Prompt.reasoning``), so the
search itself may move between direct and reasoning answers. A reasoning candidate costs the same
calls but generates up to the task's ``reasoning_tokens`` per example, far slower than scoring.

``candidate_eval`` (``optimizers.candidate_eval``; ``full``, the paper's scoring, by default): with
``halving`` or ``rejects`` an iteration's candidates race on the score set by the task's metric
(the GRIPS score, balanced accuracy plus entropy of the predicted labels, is not a per-example mean),
and only the race's winner gets its GRIPS score, on the whole score set, to beat the current one.
``saved_calls=candidates`` draws more edits per iteration.

Every candidate is recorded with the operation that made it (del, swap, sub, add, layout, labels, reasoning)
and the current prompt as its parent; ``ctx.stats["grips"]`` has the plan, the accepted edits and
the score after each iteration. The method's best score (what the patience and ``target`` stoppers
read) is the GRIPS score above, not accuracy.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation import arms
from promptgym.evaluation.evaluator import EvalResult
from promptgym.optimizers import budget, candidate_eval
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import Param
from promptgym.optimizers.proposals import clean_instruction
from promptgym.optimizers.stopping import Patience
from promptgym.tasks.prompt import LAYOUTS, Prompt

INSTRUCTION_EDITS = ("del", "swap", "sub", "add")
# Every subset of the edits in the code's order; "add" only with "del" (it re-inserts deletions).
EDIT_CHOICES = tuple(",".join(ops) for k in range(len(INSTRUCTION_EDITS), 0, -1)
                     for ops in itertools.combinations(INSTRUCTION_EDITS, k) if "del" in ops or "add" not in ops)



def _new_words(reply: str) -> str:
    """The rewritten phrase: first line, without the full stops the code strips."""
    return clean_instruction(reply.strip().split("\n")[0].strip(".")).strip(".")


def _synonym(reply: str) -> str:
    """The synonym: first line, letters, digits, spaces, apostrophes and hyphens only."""
    return re.sub(r"[^\w\s'-]", "", reply.strip().split("\n")[0]).strip()


# Replies are primed to open a quotation and stop at its end: a small model then writes a phrase, not
# a chat (measured on SmolLM2-135M: unprimed, most replies were whole sentences about the request).
CUE_STOP = ('"', "\n")
PHRASE_PARAPHRASE = MetaPrompt(
    "grips.phrase-paraphrase",
    "Here is an instruction:\n\n{{ instruction }}\n\n"
    "Rewrite only the part \"{{ phrase }}\" in different words that keep its meaning. "
    "Reply with the new words for that part only.",
    parser=_new_words, cue='New words: "', max_tokens=30, stop=CUE_STOP)
LABEL_SYNONYM = MetaPrompt(
    "grips.label-synonym",
    "A classifier answers with one of these words: {{ words | join(', ') }}.\n"
    "Give one other word that means the same as \"{{ word }}\" and could replace it as an answer. "
    "Reply with that word only.",
    parser=_synonym, cue='Word: "', max_tokens=10, stop=CUE_STOP)
SUB_TEMPERATURE = 1.0  # one sample stands in for "one of PEGASUS's 10 beams, picked at random"

# -----------------------------------------------------------------------------------------------
# Phrase segmentation: a rule-based chunker over closed-class English words (see the docstring).

COORDINATORS = frozenset("and or but nor yet".split())
PRONOUNS = frozenset("i you he she it we they me him her us them".split())  # the head of their phrase
STARTERS = PRONOUNS | frozenset((  # words that open a phrase (after a phrase that has a head word)
    # prepositions and subordinators
    "about above across after against along among around as at because before behind below beneath "
    "beside between beyond by despite during except for from if in inside into like near of off on "
    "onto out outside over per since than that though through throughout to toward towards under "
    "unless until unlike upon via when whenever where whereas whether which while who whom whose "
    "with within without how what why "
    # auxiliaries and modals
    "am is are was were be been being do does did have has had can could may might must shall "
    "should will would "
    # determiners
    "a an the this these those each every any some all no another either neither its their your "
    "our my his").split())
TOKEN = re.compile(r"""(?P<quote>(?<!\w)['"‘“][^'"‘’“”\n]{1,40}?['"’”](?!\w))"""  # a short quotation
                   r"""|(?P<word>\w+(?:['’-]\w+)*)|\S""")  # a word (don't, well-kept) or a punctuation mark
CASES = (str.lower, lambda w: w[:1].upper() + w[1:].lower(), str.upper)  # label-word case variants


def segment(text: str) -> list[tuple[int, int]]:
    """The disjoint phrases of ``text`` as (start, end) character spans, in order. Punctuation
    belongs to no phrase (the code drops punctuation-only phrases too)."""
    spans: list[list[int]] = []
    open_phrase = False  # whether the last token was a word of a phrase that may go on
    has_head = False  # whether that phrase has a word other than a function word (or a pronoun)
    for match in TOKEN.finditer(text):
        word, (start, end) = match.group().lower(), match.span()
        head = word not in STARTERS or word in PRONOUNS
        if match.lastgroup is None:  # punctuation
            open_phrase = False
        elif word in COORDINATORS or match.lastgroup == "quote":  # a phrase alone
            spans.append([start, end])
            open_phrase = False
        elif open_phrase and not (word in STARTERS and has_head):
            spans[-1][1] = end
            has_head = has_head or head
        else:
            spans.append([start, end])
            open_phrase, has_head = True, head
    return [(s, e) for s, e in spans]


def phrases(text: str) -> list[str]:
    return [text[s:e] for s, e in segment(text)]


def tidy(text: str) -> str:
    """One space between words, none before punctuation, no leading comma (after a deletion)."""
    text = " ".join(text.split())
    text = re.sub(r"\s+([,.;:!?)\]])", r"\1", text)
    return re.sub(r"^[\s,;:]+", "", text)


def delete(text: str, i: int) -> str:
    s, e = segment(text)[i]
    return tidy(text[:s] + text[e:])


def swap(text: str, i: int, j: int) -> str:
    (s1, e1), (s2, e2) = sorted((segment(text)[i], segment(text)[j]))
    return tidy(text[:s1] + text[s2:e2] + text[e1:s2] + text[s1:e1] + text[e2:])


def substitute(text: str, i: int, new: str) -> str:
    s, e = segment(text)[i]
    return tidy(text[:s] + new + text[e:])


def add(text: str, phrase: str, after: int) -> str:
    """``phrase`` inserted after phrase ``after``, or at the start when ``after`` is -1."""
    if after < 0:
        return tidy(phrase + " " + text)
    e = segment(text)[after][1]
    return tidy(text[:e] + " " + phrase + text[e:])


# -----------------------------------------------------------------------------------------------
# The score


def grips_score(predictions: Sequence[str], targets: Sequence[str], labels: Sequence[str]) -> float:
    """``round(100 x balanced accuracy, 2) + 10 x entropy`` of the predicted labels (natural log):
    balanced accuracy is the mean recall over the labels that occur in ``targets`` (as sklearn's);
    the entropy is over ``labels``' share of the predictions."""
    recalls = [np.mean([p == t for p, t in zip(predictions, targets) if t == label])
               for label in labels if label in targets]
    balanced = float(np.mean(recalls)) if recalls else 0.0
    counts = np.array([sum(p == label for p in predictions) for label in labels], dtype=float)
    shares = counts[counts > 0] / counts.sum() if counts.sum() else np.array([])
    entropy = float(-(shares * np.log(shares)).sum())
    return round(100 * balanced, 2) + 10 * entropy


# -----------------------------------------------------------------------------------------------
# The search


@dataclass
class Edit:
    """A candidate and what its edit deleted from or re-added to the instruction."""

    prompt: Prompt
    operation: str
    deleted: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


@dataclass
class GripsState(State):
    plan: dict[str, int] = field(default_factory=dict)
    score_set: list[Example] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # empty for tasks without label choices
    base: Prompt | None = None  # the current prompt
    base_score: float = -math.inf
    accepted: list[Prompt] = field(default_factory=list)  # every accepted prompt, scores rising
    deleted: list[str] = field(default_factory=list)  # the delete tracker
    iteration: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


@register
class GripsOptimizer(Optimizer):
    name = "grips"
    summary = "GRIPS: greedy phrase-level edits (delete, swap, paraphrase, add) of the instruction"
    parameters = {
        "num_iter": Param(10, "search iterations at most (cut to fit the budget)", low=1),
        "candidates": Param(5, "edited candidates per iteration (m)", low=1),
        "patience": Param(2, "iterations in a row without a better candidate before stopping (0: never)", low=0),
        "score_set": Param(100, "training examples every candidate is scored on", low=1),
        "edits": Param("del,swap,sub,add", "instruction edits drawn from; without sub the optimizer model "
                       "is never called", choices=EDIT_CHOICES),
        "format_edits": Param(True, "also edit the layout and the label words (promptgym's extension)",
                              paper=False),
        "reasoning_edits": Param(False, "choice tasks: also toggle reasoning before the answer (promptgym's "
                                 "extension; reasoning candidates generate, far slower)"),
        **candidate_eval.PARAMETERS,
    }

    @property
    def operations(self) -> list[str]:
        return self.params["edits"].split(",")

    @property
    def uses_optimizer_model(self) -> bool:  # type: ignore[override]
        """Only ``sub`` (and the label synonyms it enables) asks the optimizer model."""
        return "sub" in self.operations

    @property
    def edits_layout(self) -> bool:  # type: ignore[override]
        """Format edits switch layouts, chat ones too (a task model without a chat template cannot)."""
        return bool(self.params["format_edits"])

    def stoppers(self) -> list[Patience]:
        return [Patience(self.params["patience"])] if self.params["patience"] else []

    def setup(self, ctx: Context) -> GripsState:
        train, n = ctx.train, min(self.params["score_set"], len(ctx.train))
        chosen = sorted(ctx.rng.choice(len(train), size=n, replace=False).tolist()) if n < len(train) else range(n)
        score_set = [train[i] for i in chosen]
        labels = sorted({c for e in score_set for c in e.choices or ()}) if all(e.choices for e in score_set) else []
        plan = self.plan(ctx, n)
        sub, strategy = int(self.uses_optimizer_model), self.params["candidate_eval"]
        plan["candidates"] = candidate_eval.more_candidates(
            ctx, self.params, plan["candidates"], lambda m: m * sub + arms.pool_cost("full", m, n),
            lambda m: m * sub + arms.pool_cost(strategy, m, n), "candidates")
        state = GripsState(plan=plan, score_set=score_set, labels=labels, base=ctx.initial)
        state.stats = ctx.stats["grips"] = dict(plan=plan, iterations=0, accepted=[], dropped=0, trajectory=[])
        state.base_score = self._score(ctx, state, ctx.initial)
        state.stats["trajectory"].append(round(state.base_score, 4))
        return state

    def result(self, ctx: Context, state: GripsState | None) -> Prompt:
        return state.base if state and state.base else ctx.initial

    def ranking(self, ctx: Context, state: GripsState | None) -> list[Prompt]:
        """By the GRIPS score, not accuracy: the accepted prompts, the latest (highest) first."""
        return list(reversed(state.accepted)) if state else []

    def best_score(self, ctx: Context, state: GripsState) -> float:
        return state.base_score

    def shown_score(self, ctx: Context, state: GripsState, best: float | None) -> float | None:
        """The current prompt's mean metric on the score set (0-1), not its GRIPS score (balanced
        accuracy and entropy on a 0-100 scale), so the status line reads like every method's."""
        result = ctx.results.get((state.base.id, "train"))
        return None if result is None else result.mean

    def step(self, ctx: Context, state: GripsState) -> None:
        ops = self._operations(state)
        drawn = [ops[k] for k in ctx.rng.integers(len(ops), size=state.plan["candidates"])]
        edits: list[Edit] = []
        seen = {state.base.id}
        for op in drawn:  # make every candidate first, then score them all (as the code does)
            edit = self._edit(ctx, state, op)
            if edit is None or edit.prompt.id in seen:
                state.stats["dropped"] += 1
                continue
            seen.add(edit.prompt.id)
            edits.append(edit)
        if candidate_eval.racing(self.params):
            best, score = self._race(ctx, state, edits)
        else:
            scores = [self._score(ctx, state, ctx.add(e.prompt, [state.base], e.operation)) for e in edits]
            best = int(np.argmax(scores)) if scores else -1
            score = scores[best] if scores else -math.inf
        if best >= 0 and score > state.base_score:
            chosen = edits[best]
            state.base, state.base_score = chosen.prompt, score
            state.accepted.append(chosen.prompt)
            for phrase in chosen.added:
                state.deleted.remove(phrase)
            state.deleted.extend(chosen.deleted)
            state.stats["accepted"].append(chosen.operation)
        state.iteration += 1
        state.stats["iterations"] = state.iteration
        state.stats["trajectory"].append(round(state.base_score, 4))
        ctx.log(f"GRIPS iteration {state.iteration}: {len(edits)} candidates ({', '.join(drawn)}), "
                f"score {state.base_score:.2f}")
        if state.iteration >= state.plan["num_iter"]:
            state.finished = "done" if state.plan["num_iter"] == self.params["num_iter"] else "budget"

    def _operations(self, state: GripsState) -> list[str]:
        """The operations drawn from this iteration: ``add`` once something was deleted."""
        ops = [op for op in self.operations if op != "add" or state.deleted]
        if self.params["format_edits"]:
            ops += ["layout"] + (["labels"] if state.labels else [])
        if self.params["reasoning_edits"] and state.labels:
            ops.append("reasoning")
        return ops

    def _edit(self, ctx: Context, state: GripsState, op: str) -> Edit | None:
        """Apply ``op`` to the current prompt; None when it cannot apply or leaves no instruction."""
        base, rng = state.base, ctx.rng
        text = base.instruction
        found = phrases(text)
        deleted: tuple[str, ...] = ()
        added: tuple[str, ...] = ()
        if op == "layout":
            others = [layout for name, layout in LAYOUTS.items() if name != base.layout.name]
            return Edit(replace(base, layout=others[rng.integers(len(others))]), op)
        if op == "reasoning":
            return Edit(replace(base, reasoning=not base.reasoning), op)
        if op == "labels":
            words = self._relabel(ctx, state)
            return Edit(with_label_words(base, state.labels, words), op) if words else None
        if op == "add":
            phrase = state.deleted[rng.integers(len(state.deleted))]
            new, added = add(text, phrase, int(rng.integers(-1, len(found)))), (phrase,)
        elif not found:
            return None
        elif op == "del":
            i = int(rng.integers(len(found)))
            new, deleted = delete(text, i), (found[i],)
        elif op == "swap":
            if len(found) < 2:
                return None
            i, j = rng.choice(len(found), size=2, replace=False).tolist()
            new = swap(text, i, j)
        else:  # sub
            i = int(rng.integers(len(found)))
            new = paraphrase(ctx, text, i)
            if new is None:
                return None
        if not any(ch.isalpha() for ch in new):
            return None
        return Edit(base.with_instruction(new), op, deleted, added)

    def _relabel(self, ctx: Context, state: GripsState) -> list[str] | None:
        """New label words: all in another case, or (with the optimizer model) one synonym."""
        words = [state.base.verbalize(label) for label in state.labels]
        if self.uses_optimizer_model and ctx.rng.integers(2):
            k = int(ctx.rng.integers(len(words)))
            reply = ctx.ask([("user", LABEL_SYNONYM.render(words=words, word=words[k]))],
                            temperature=SUB_TEMPERATURE, max_tokens=LABEL_SYNONYM.max_tokens,
                            answer_prefix=LABEL_SYNONYM.cue, stop=LABEL_SYNONYM.stop)[0]
            synonym = LABEL_SYNONYM.parse(reply)
            if not synonym or len(synonym.split()) > 2 or synonym.casefold() in {w.casefold() for w in words}:
                return None
            return words[:k] + [synonym] + words[k + 1:]
        others = [case for case in CASES if [case(w) for w in words] != words]
        if not others:
            return None
        case = others[ctx.rng.integers(len(others))]
        new = [case(w) for w in words]
        return new if len({w.casefold() for w in new}) == len(new) else None  # labels stay distinct

    def _race(self, ctx: Context, state: GripsState, edits: list[Edit]) -> tuple[int, float]:
        """The iteration's candidates raced on the score set (``candidate_eval``) by the task's
        metric, the only per-example score; (the winner, its GRIPS score on the whole score set)."""
        prompts = [ctx.add(e.prompt, [state.base], e.operation) for e in edits]
        if not prompts:
            return -1, -math.inf
        race = ctx.evaluate_pool(prompts, state.score_set, "train", self.params["candidate_eval"])
        best = race.ranking()[0]
        return best, self._grips(state, race.result(best))

    def _score(self, ctx: Context, state: GripsState, prompt: Prompt) -> float:
        return self._grips(state, ctx.evaluate(prompt, state.score_set, split="train"))

    @staticmethod
    def _grips(state: GripsState, result: EvalResult) -> float:
        """The GRIPS score of a result on the whole score set (100 x the mean without label choices)."""
        if not state.labels:
            return 100 * result.mean
        return grips_score(result.predictions, [e.target for e in result.examples], state.labels)

    def plan(self, ctx: Context, score_set: int) -> dict[str, int]:
        """(iterations, candidates per iteration) the budget pays for; iterations are cut first."""
        per_candidate = score_set + (1 if self.uses_optimizer_model else 0)
        return budget.fit({"num_iter": self.params["num_iter"], "candidates": self.params["candidates"]},
                          lambda plan: score_set + plan["num_iter"] * plan["candidates"] * per_candidate,
                          budget.planning_budget(ctx), [budget.lower("num_iter"), budget.lower("candidates")],
                          ctx=ctx, names={"num_iter": "num_iter", "candidates": "candidates"})


def paraphrase(ctx: Context, text: str, i: int) -> str | None:
    """``text`` with phrase ``i`` rewritten by the optimizer model (one sample, ``ctx.ask``); None
    when the reply is empty or far longer than the phrase. GRIPS's ``sub``, also used by
    ``promptgym.envs``."""
    phrase = phrases(text)[i]
    reply = ctx.ask([("user", PHRASE_PARAPHRASE.render(instruction=text, phrase=phrase))],
                    temperature=SUB_TEMPERATURE, max_tokens=PHRASE_PARAPHRASE.max_tokens,
                    answer_prefix=PHRASE_PARAPHRASE.cue, stop=PHRASE_PARAPHRASE.stop)[0]
    words = PHRASE_PARAPHRASE.parse(reply)
    if not words or len(words.split()) > 2 * len(phrase.split()) + 4:
        return None
    return substitute(text, i, words)


def with_label_words(prompt: Prompt, labels: Sequence[str], words: Sequence[str]) -> Prompt:
    """``prompt`` showing ``words[i]`` for ``labels[i]`` (a label shown as itself needs no entry)."""
    return replace(prompt, verbalizers=tuple((label, word) for label, word in zip(labels, words) if word != label))
