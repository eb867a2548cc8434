"""Prompt rendering: every layout, literal (never interpreted) data, stable content ids."""

from __future__ import annotations

import json

import pytest

from promptgym.errors import PromptgymError
from promptgym.tasks.prompt import LAYOUTS, REASONING_LINE, Layout, Prompt, get_layout, with_reasoning

NASTY = [
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "{0} and {name} and {}",
    "{# comment #} tail",
    "{{ ''.__class__.__mro__ }}",
    "}} {{ unbalanced {%",
    "{{ undefined_variable }}",
]


def _all_text(rendered) -> str:
    if rendered.messages is not None:
        return "\n".join(content for _, content in rendered.messages)
    return rendered.text


# -- every layout ---------------------------------------------------------------------------------

def test_chat_layout_renders_instruction_demos_and_input_in_order():
    prompt = Prompt("Classify the review.", layout=LAYOUTS["chat"], demos=(("great food", "positive"),))
    r = prompt.render("cold soup")
    assert r.text is None
    assert r.messages == (("user", "Classify the review.\n\nInput: great food\nAnswer: positive\n\nInput: cold soup"),)
    assert r.answer_prefix == ""


def test_chat_layout_without_demos_has_no_blank_demo_block():
    r = Prompt("Classify.", layout=LAYOUTS["chat"]).render("cold soup")
    assert r.messages == (("user", "Classify.\n\nInput: cold soup"),)


def test_chat_options_layout_lists_the_options():
    r = Prompt("Classify.", layout=LAYOUTS["chat-options"]).render("cold soup", options=["good", "bad"])
    assert r.messages == (("user", "Classify.\nAnswer with one of: good, bad.\n\nInput: cold soup"),)


def test_chat_system_layout_puts_instruction_and_demos_in_the_system_turn():
    prompt = Prompt("Classify.", layout=LAYOUTS["chat-system"], demos=(("great", "positive"), ("awful", "negative")))
    r = prompt.render("cold soup")
    assert r.messages == (
        ("system", "Classify.\n\nInput: great\nAnswer: positive\n\nInput: awful\nAnswer: negative"),
        ("user", "cold soup"),
    )


def test_plain_layout_is_raw_text_ending_with_the_answer_cue():
    r = Prompt("Classify.", layout=LAYOUTS["plain"]).render("cold soup")
    assert r.messages is None
    assert r.text == "Classify.\n\nInput: cold soup\nAnswer:"


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_contains_instruction_input_and_demo(name):
    prompt = Prompt("  Decide the label.  ", layout=LAYOUTS[name], demos=(("demo text", "yes"),))
    r = prompt.render("the input text", options=["yes", "no"])
    text = _all_text(r)
    assert "Decide the label." in text
    assert "  Decide" not in text  # instruction is stripped
    assert "the input text" in text
    assert "demo text" in text and "yes" in text
    assert (r.messages is None) == (not LAYOUTS[name].chat)
    assert text.index("Decide the label.") < text.index("demo text")


def test_get_layout_known_and_unknown():
    assert get_layout("plain") is LAYOUTS["plain"]
    with pytest.raises(PromptgymError, match="unknown layout 'nope'"):
        get_layout("nope")


def test_broken_layout_template_is_a_promptgym_error():
    bad = Layout(name="bad", user="{{ instruction }} {% if %}")
    with pytest.raises(PromptgymError, match="layout 'bad'"):
        Prompt("x", layout=bad).render("y")


# -- templating is safe -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LAYOUTS))
@pytest.mark.parametrize("nasty", NASTY)
def test_braces_in_input_instruction_and_demos_are_literal(name, nasty):
    prompt = Prompt(f"Instruction {nasty}", layout=LAYOUTS[name],
                    demos=((f"demo {nasty}", f"label {nasty}"),))
    text = _all_text(prompt.render(f"input {nasty}", options=[f"opt {nasty}", "other"]))
    assert f"Instruction {nasty}" in text
    assert f"input {nasty}" in text
    assert f"demo {nasty}" in text
    assert f"label {nasty}" in text
    assert "49" not in text  # {{ 7*7 }} never evaluated
    assert "looploop" not in text
    assert "<class" not in text


def test_nasty_verbalizer_words_are_literal():
    prompt = Prompt("Classify.", layout=LAYOUTS["chat-options"],
                    verbalizers=(("positive", "{{ 7*7 }}"),), demos=(("nice", "positive"),))
    text = _all_text(prompt.render("x", options=["{{ 7*7 }}", "bad"]))
    assert "Answer: {{ 7*7 }}" in text
    assert "one of: {{ 7*7 }}, bad." in text


# -- identity and serialisation --------------------------------------------------------------------

def test_id_is_stable_and_content_based():
    a = Prompt("Classify the review.")
    b = Prompt("Classify the review.")
    assert a.id == b.id
    assert len(a.id) == 16 and all(c in "0123456789abcdef" for c in a.id)
    assert a.id != Prompt("Classify the review!").id
    assert a.id != Prompt("Classify the review.", layout=LAYOUTS["plain"]).id
    assert a.id != Prompt("Classify the review.", verbalizers=(("positive", "good"),)).id
    assert a.id != Prompt("Classify the review.", demos=(("x", "positive"),)).id
    assert a.with_instruction("Other").id == Prompt("Other").id


def test_id_survives_a_json_round_trip_and_ignores_dict_order():
    prompt = Prompt("Classify the review.", verbalizers=(("positive", "good"),))
    data = json.loads(json.dumps(prompt.to_dict()))
    assert Prompt.from_dict(data).id == prompt.id
    reordered = {k: data[k] for k in reversed(list(data))}
    assert Prompt.from_dict(reordered).id == prompt.id


def test_to_dict_from_dict_round_trip_through_json():
    prompt = Prompt("Classify {x}.", layout=LAYOUTS["chat-system"],
                    verbalizers=(("positive", "good"), ("negative", "bad")),
                    demos=(("nice", "positive"), ("{{ awful }}", "negative")))
    data = json.loads(json.dumps(prompt.to_dict()))
    back = Prompt.from_dict(data)
    assert back == prompt
    assert back.id == prompt.id
    assert back.render("z") == prompt.render("z")


def test_from_dict_accepts_layout_name_and_defaults():
    assert Prompt.from_dict({"instruction": "x", "layout": "plain"}).layout == LAYOUTS["plain"]
    assert Prompt.from_dict({"instruction": "x"}) == Prompt("x")


# -- verbalizers --------------------------------------------------------------------------------------

def test_verbalize_maps_labels_and_falls_back_to_label():
    prompt = Prompt("x", verbalizers=(("positive", "great"), ("negative", "terrible")))
    assert prompt.verbalize("positive") == "great"
    assert prompt.verbalize("negative") == "terrible"
    assert prompt.verbalize("neutral") == "neutral"


def test_demos_show_verbalized_labels():
    prompt = Prompt("x", verbalizers=(("positive", "great"),), demos=(("nice", "positive"), ("meh", "neutral")))
    text = _all_text(prompt.render("y"))
    assert "Input: nice\nAnswer: great" in text
    assert "Input: meh\nAnswer: neutral" in text
    assert "Answer: positive" not in text


# -- reasoning before the answer -------------------------------------------------------------------

def test_ids_and_stored_form_of_direct_prompts_are_those_before_the_reasoning_switch():
    """Pinned on the code before ``reasoning`` existed: stored runs, caches and pinned request
    sequences key on these ids, so a direct prompt must hash and serialise as it did."""
    plain = Prompt("Classify the review.", layout=LAYOUTS["plain"], verbalizers=(("positive", "good"),),
                   demos=(("x", "positive"),))
    assert Prompt("Classify the review.").id == "85b611c6a641336a"
    assert plain.id == "d534d6af6645f16e"
    assert "reasoning" not in Prompt("Classify the review.").to_dict()
    assert Prompt.from_dict(Prompt("Classify the review.").to_dict()).reasoning is False


def test_a_reasoning_prompt_is_a_different_candidate_that_survives_the_store():
    direct = Prompt("Classify the review.")
    twin = Prompt("Classify the review.", reasoning=True)
    assert twin.id != direct.id and twin.to_dict()["reasoning"] is True
    back = Prompt.from_dict(json.loads(json.dumps(twin.to_dict())))
    assert back == twin and back.id == twin.id
    assert twin.with_instruction("Other").reasoning is True  # a method's edits keep the mode


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_a_reasoning_prompt_renders_the_options_and_the_cue_before_the_input(name):
    rendered = Prompt("Classify.", layout=LAYOUTS[name], reasoning=True).render("The soup.", options=["good", "bad"])
    text = _all_text(rendered)
    assert "Answer with one of: good, bad." in text and REASONING_LINE in text
    assert text.index("Classify.") < text.index(REASONING_LINE) < text.index("The soup.")
    direct = _all_text(Prompt("Classify.", layout=LAYOUTS[name]).render("The soup.", options=["good", "bad"]))
    assert REASONING_LINE not in direct


def test_a_plain_reasoning_prompt_cues_the_reasoning_not_the_answer():
    text = Prompt("Classify.", layout=LAYOUTS["plain"], reasoning=True).render("The soup.", options=["a", "b"]).text
    assert text.endswith("Input: The soup.\nReasoning:")
    assert with_reasoning(LAYOUTS["chat"]).name == "chat-options+reasoning"
