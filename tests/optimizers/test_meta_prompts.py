"""The meta-prompts that were ``str.format`` templates render through the sandboxed Jinja renderer
to the very same text (same requests, same cache keys), braces in the values included."""

from __future__ import annotations

import pytest

from promptgym.optimizers import ape
from promptgym.optimizers.dp2o import dialogue
from promptgym.optimizers.proposals import PARAPHRASE, normalize_key

# The templates as they were (str.format syntax), kept here as the reference.
OLD = {
    "ape.PROPOSAL_USER": (
        "A friend was given an instruction and a list of inputs. Following the instruction, the friend "
        "wrote one output for every input. These are the pairs:\n\n{pairs}\n\n"
        "What instruction did the friend follow? Write it as one imperative sentence."),
    "proposals.PARAPHRASE_USER": (
        "Rewrite the following instruction in different words. Keep its meaning; reply with the new "
        "instruction only.\n\nInstruction: {instruction}"),
    "dialogue.FIRST_TURN": (
        "Task: {instruction}\nPossible answers: {labels}.\n\n"
        "Some examples of the task:\n\n{demos}\n\n"
        "Write one new example of this task whose answer is {word}. Match the examples above in topic, "
        "length and style, but do not copy them. Write only the input text."),
    "dialogue.NEXT_LABEL": ("Now write one more new example, different from the ones so far, whose answer "
                            "is {word}."),
    "dialogue.NEXT_TURN": (
        "More examples of the task:\n\n{demos}\n\n"
        "Write one new example that fits all the examples so far, whose answer is {word}. "
        "Write only the input text."),
}
NEW = {
    "ape.PROPOSAL_USER": ape.PROPOSAL,
    "proposals.PARAPHRASE_USER": PARAPHRASE,
    "dialogue.FIRST_TURN": dialogue.FIRST_TURN,
    "dialogue.NEXT_LABEL": dialogue.NEXT_LABEL,
    "dialogue.NEXT_TURN": dialogue.NEXT_TURN,
}
VALUES = [
    "Classify the review.",
    "Input: {x} costs {{2}} and {% if %} \"quotes\"\nOutput: positive\n\n",
    "}{ {{ instruction }} {0} %} {#  #} \\n\ttabs\n",
    "",
]


@pytest.mark.parametrize("name", sorted(OLD))
@pytest.mark.parametrize("value", VALUES)
def test_rendered_text_equals_the_old_format_output(name, value):
    fields = {k: f"{k}: {value}" for k in ("pairs", "instruction", "labels", "demos", "word")}
    used = {k: v for k, v in fields.items() if "{" + k + "}" in OLD[name]}
    assert NEW[name].render(**used) == OLD[name].format(**used)


@pytest.mark.parametrize("name", sorted(OLD))
def test_the_echo_filter_reads_the_same_words(name):
    assert normalize_key(NEW[name].template) == normalize_key(OLD[name])
