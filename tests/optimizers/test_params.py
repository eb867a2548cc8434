"""Typed method parameters: declared once, checked when a method is built, listed by the CLI."""

from __future__ import annotations

import pytest

from promptgym.errors import PromptgymError
from promptgym.optimizers import REGISTRY
from promptgym.optimizers.params import UNSTATED, Param, validate

ALL = sorted(REGISTRY)


@pytest.mark.parametrize("name", ALL)
def test_defaults_are_derived_from_the_declarations_and_pass_their_own_checks(name):
    cls = REGISTRY[name]
    assert cls.defaults == {k: p.default for k, p in cls.parameters.items()} and cls.defaults
    for key, param in cls.parameters.items():
        assert param.coerce(param.default) == param.default, key
        assert param.help and "\n" not in param.help, key
    assert cls().params == cls.defaults


def test_a_method_declaring_untyped_defaults_is_refused():
    from promptgym.optimizers.base import Optimizer

    with pytest.raises(TypeError, match="declare typed"):
        type("Old", (Optimizer,), {"defaults": {"steps": 3}})


@pytest.mark.parametrize("name", ALL)
def test_bad_parameters_fail_when_the_method_is_built(name):
    cls = REGISTRY[name]
    with pytest.raises(PromptgymError, match=rf"method '{name}': unknown parameter\(s\) nope"):
        cls(nope=1)
    for key, param in cls.parameters.items():
        bad = 3 if param.choices else "x"
        with pytest.raises(PromptgymError) as info:
            cls(**{key: bad})
        message = str(info.value)
        assert "\n" not in message and f"parameter '{key}' must be" in message, message


@pytest.mark.parametrize("given, expected", [
    (5, 5), (5.0, 5), ("5", 5), (" 7 ", 7),  # numbers from the CLI or from text
])
def test_integers(given, expected):
    assert validate("m", {"steps": Param(1, "steps", low=1)}, {"steps": given}) == {"steps": expected}


@pytest.mark.parametrize("given", ["x", 2.5, True, 0, None, [3]])
def test_bad_integers_name_the_parameter_and_what_it_accepts(given):
    with pytest.raises(PromptgymError) as info:
        validate("opro", {"steps": Param(200, "steps", low=1)}, {"steps": given})
    assert str(info.value) == f"method 'opro': parameter 'steps' must be an integer >= 1, got {given!r}"


def test_numbers_bools_choices_and_null():
    params = {"t": Param(1.0, "t", low=0), "p": Param(0.9, "p", low=0, high=1), "on": Param(True, "on"),
              "how": Param("a", "how", choices=("a", "b")),
              "n": Param(None, "n", kind=int, low=1, optional=True)}
    got = validate("m", params, {"t": 1, "p": "0.5", "on": "False", "how": "b", "n": None})
    assert got == {"t": 1.0, "p": 0.5, "on": False, "how": "b", "n": None}
    assert isinstance(got["t"], float)
    assert validate("m", params, {"on": "true", "n": 4})["on"] is True
    for key, bad, accepts in [("t", -1, "a number >= 0"), ("p", 1.5, "a number between 0 and 1"),
                              ("t", float("nan"), "a number >= 0"), ("on", 1, "true or false"),
                              ("on", "yes", "true or false"), ("how", "c", "one of a, b"),
                              ("n", 0, "an integer >= 1 or null"), ("t", None, "a number >= 0")]:
        with pytest.raises(PromptgymError, match=f"parameter '{key}' must be {accepts}, got "):
            validate("m", params, {key: bad})


def test_listed_values():
    assert Param(0.7, "t", paper=1.0).paper_value() == "1.0"
    assert Param(True, "b").paper_value() == "true"
    assert Param(None, "n", kind=int, optional=True).default_value() == "null"
    assert Param(20, "p", paper=UNSTATED).paper_value() == "-"
    gpo = REGISTRY["gpo"].parameters
    assert gpo["retrieval"].paper_value() == "relevance" and gpo["retrieval"].default == "recency"
