"""A meta-prompt checks its variables when defined and when rendered, naming itself in the error,
and reads replies with its own parser."""

from __future__ import annotations

import pytest

from promptgym.errors import PromptgymError
from promptgym.optimizers import ape, evoprompt, gpo, grips, opro, promptbreeder, proposals, protegi
from promptgym.optimizers.dp2o import dialogue
from promptgym.optimizers.metaprompt import MetaPrompt, template_variables

GREETING = MetaPrompt("greeting", "Hello {{ who }}, {% if polite %}please {% endif %}write {{ what }}.",
                      parser=str.upper)


def test_variables_are_read_off_the_template():
    assert GREETING.needs == {"who", "polite", "what"}
    assert template_variables("{% for x in items %}{{ x }}{{ sep }}{% endfor %}") == {"items", "sep"}


def test_render_fills_the_template():
    assert GREETING.render(who="Ann", polite=True, what="{{ a poem }}") == "Hello Ann, please write {{ a poem }}."


def test_a_missing_variable_fails_at_render_with_the_meta_prompts_name():
    with pytest.raises(PromptgymError, match=r"meta-prompt 'greeting': missing variable\(s\) what"):
        GREETING.render(who="Ann", polite=False)


def test_an_unknown_variable_fails_at_render_with_the_meta_prompts_name():
    with pytest.raises(PromptgymError, match=r"meta-prompt 'greeting': unexpected variable\(s\) whom"):
        GREETING.render(who="Ann", polite=False, what="x", whom="Bob")


def test_declared_variables_that_disagree_with_the_text_fail_at_definition():
    with pytest.raises(PromptgymError, match=r"meta-prompt 'typo'.*missing from the declaration: \['pairs'\]"):
        MetaPrompt("typo", "Pairs: {{ pairs }}", variables=frozenset({"pair"}))
    assert MetaPrompt("ok", "Pairs: {{ pairs }}", variables=frozenset({"pairs"})).needs == {"pairs"}


def test_parse_delegates_to_the_parser():
    assert GREETING.parse("done") == "DONE"
    assert MetaPrompt("plain", "x").parse(" as is ") == " as is "


def test_the_built_in_meta_prompts_have_distinct_names_and_a_parser_each():
    found = [v for m in (ape, evoprompt, gpo, grips, opro, promptbreeder, proposals, protegi, dialogue)
             for v in vars(m).values() if isinstance(v, MetaPrompt)]
    assert len(found) >= 20
    names = [mp.name for mp in found]
    assert len(set(names)) == len(set(map(id, found)))  # one name per object (an alias is the same object)
    assert all(mp.parser is not MetaPrompt.parser for mp in found)  # every reply is read on purpose
