"""The registry (``promptgym.optimizers.registry``): built-in methods, and methods other packages
declare in the ``promptgym.methods`` entry-point group, found through a package's metadata on
``sys.path`` (a dist-info folder written here, as pip would write it)."""

from __future__ import annotations

import importlib
import sys

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.errors import PromptgymError
from promptgym.optimizers import BUILTIN_METHODS, REGISTRY, get_method, method_names, method_summaries, register
from promptgym.optimizers.ape import ApeOptimizer

GOOD = '''
from promptgym.optimizers import Optimizer


class Tiny(Optimizer):
    name = "tiny"
    summary = "a tiny method from another package"
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """``installed(package, modules, entry_points)``: a package's module files and its dist-info,
    on ``sys.path`` for this test; the registry and the imported modules are put back afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = dict(REGISTRY)
    added_modules: list[str] = []

    def install(package: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
        site = tmp_path / package
        for name, code in modules.items():
            (site / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
            (site / f"{name}.py").write_text(code)
            added_modules.append(name)
        info = site / f"{package.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[promptgym.methods]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()

    yield install
    REGISTRY.clear()
    REGISTRY.update(before)
    for name in added_modules:
        sys.modules.pop(name, None)


def test_a_packages_method_is_found_by_name_and_listed(installed):
    installed("tiny-method", {"tiny_method": GOOD}, {"tiny": "tiny_method:Tiny"})
    assert "tiny" in method_names() and "tiny" not in REGISTRY  # listed before it is loaded
    cls = get_method("tiny")
    assert cls.__module__ == "tiny_method" and REGISTRY["tiny"] is cls
    assert api.methods()["tiny"] == "a tiny method from another package"
    out = CliRunner().invoke(main, ["methods"])
    assert out.exit_code == 0 and any(line.split()[:1] == ["tiny"] for line in out.output.splitlines())


def test_built_in_methods_come_first_in_registration_order(installed):
    installed("tiny-method", {"tiny_method": GOOD}, {"tiny": "tiny_method:Tiny"})
    assert method_names()[: len(BUILTIN_METHODS)] == list(BUILTIN_METHODS)
    assert method_names()[-1] == "tiny"


@pytest.mark.parametrize("code, value, message", [
    ("import no_such_dependency\n", "broken_method:Tiny",
     "method 'broken' ('broken_method:Tiny' of package 'broken-method') failed to load: "
     "ModuleNotFoundError: No module named 'no_such_dependency'"),
    ("raise RuntimeError('bad\\nconfig')\n", "broken_method:Tiny",
     "method 'broken' ('broken_method:Tiny' of package 'broken-method') failed to load: RuntimeError: bad config"),
    ("Tiny = 3\n", "broken_method:Tiny",
     "method 'broken' ('broken_method:Tiny' of package 'broken-method') is not a subclass of promptgym's Optimizer"),
    (GOOD, "broken_method:Tiny",
     "method 'broken' ('broken_method:Tiny' of package 'broken-method'): the class's name is 'tiny'; the entry "
     "point must be named after the method"),
])
def test_a_package_that_fails_to_load_is_one_line(installed, code, value, message):
    installed("broken-method", {"broken_method": code}, {"broken": value})
    with pytest.raises(PromptgymError) as err:
        get_method("broken")
    assert str(err.value) == message and "\n" not in str(err.value)
    assert "broken" not in REGISTRY


def test_a_broken_package_does_not_hide_the_others(installed):
    installed("broken-method", {"broken_method": "import no_such_dependency\n"}, {"broken": "broken_method:X"})
    summaries = method_summaries()
    assert summaries["broken"].startswith("(cannot be used: method 'broken'")
    assert summaries["ape"] == ApeOptimizer.summary and get_method("ape") is ApeOptimizer
    out = CliRunner().invoke(main, ["optimize", "--dataset", "example:sentiment", "--method", "broken"])
    assert out.exit_code != 0 and "failed to load: ModuleNotFoundError" in out.output
    assert "Traceback" not in out.output


def test_a_built_in_name_cannot_be_taken(installed):
    installed("shadow", {"shadow_method": "raise RuntimeError('never imported')\n"}, {"ape": "shadow_method:X"})
    assert get_method("ape") is ApeOptimizer and method_names().count("ape") == 1


def test_unknown_method_names_the_known_ones_with_the_packages(installed):
    installed("tiny-method", {"tiny_method": GOOD}, {"tiny": "tiny_method:Tiny"})
    with pytest.raises(PromptgymError, match=r"unknown method 'nope' \(known: ape, .*tiny"):
        get_method("nope")


def test_register_refuses_a_taken_name():
    class Other(ApeOptimizer):
        pass

    with pytest.raises(ValueError, match="'ape' is taken by promptgym.optimizers.ape.ApeOptimizer"):
        register(Other)
    assert REGISTRY["ape"] is ApeOptimizer
    assert register(ApeOptimizer) is ApeOptimizer  # the same class again is no change
