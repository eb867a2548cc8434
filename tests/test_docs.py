"""docs/ stays true to the code: a page per built-in method with the required sections, the
generated blocks up to date (scripts/make_docs.py changes nothing), every relative link resolves,
every CLI command has a section in docs/cli.md, and the README links the docs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from promptgym import api
from promptgym.optimizers import BUILTIN_METHODS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECTIONS = ("What it does", "Paper", "Defaults", "Changes from the official code", "Cost per step")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _make_docs():
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _headings(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a "# comment" in a code block is no heading
    return [m.group(2).strip() for m in re.finditer(r"^(#{1,6})\s+(.+)$", text, flags=re.M)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@pytest.mark.parametrize("method", sorted(BUILTIN_METHODS))
def test_every_method_has_a_page_with_the_required_sections(method):
    page = DOCS / "methods" / f"{method}.md"
    assert page.exists(), f"write {page.relative_to(ROOT)} (see docs/index.md)"
    text = page.read_text()
    headings = _headings(text)
    missing = [s for s in SECTIONS if s not in headings]
    assert missing == [], f"{page.name} lacks sections {missing}"
    assert "<!-- generated:params -->" in text, f"{page.name}: no generated parameter table"
    assert f"--method {method}" in text
    # each section says something
    for section, body in re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S):
        if section in SECTIONS:
            assert len(body.strip()) > 40, f"{page.name}: section '{section}' is empty"


def test_every_method_page_is_a_built_in_method():
    pages = {p.stem for p in (DOCS / "methods").glob("*.md")}
    assert pages == set(BUILTIN_METHODS)


def test_parameter_tables_list_every_parameter():
    for method in BUILTIN_METHODS:
        text = (DOCS / "methods" / f"{method}.md").read_text()
        for row in api.method_parameters(method):
            assert f"| `{row['name']}` |" in text, f"{method}: parameter {row['name']} not in its page"


def test_generated_blocks_are_up_to_date():
    make_docs = _make_docs()
    assert make_docs.missing_method_pages() == []
    stale = [page.relative_to(ROOT).as_posix() for page, (old, new) in make_docs.render_all().items() if old != new]
    assert stale == [], f"run: PYTHONPATH=src python scripts/make_docs.py (out of date: {stale})"


def test_every_cli_command_has_a_section():
    from promptgym.cli import main

    headings = _headings((DOCS / "cli.md").read_text())
    missing = [name for name in main.commands if f"promptgym {name}" not in headings]
    assert missing == []
    text = (DOCS / "cli.md").read_text()
    for name, command in main.commands.items():
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert f"`{opt}`" in text, f"cli.md: {name} {opt} missing"


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return LINK.findall(text)


def test_every_relative_link_in_docs_resolves():
    broken = []
    for page in sorted(DOCS.rglob("*.md")):
        for target in _links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            if not resolved.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
                continue
            if anchor and resolved.suffix == ".md":
                if anchor not in {_slug(h) for h in _headings(resolved.read_text())}:
                    broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_index_links_every_page():
    index = (DOCS / "index.md").read_text()
    for page in sorted(DOCS.rglob("*.md")):
        if page.name != "index.md":
            assert page.relative_to(DOCS).as_posix() in index, f"docs/index.md does not link {page.name}"


def test_readme_links_the_docs():
    assert "(docs/index.md)" in (ROOT / "README.md").read_text()


def test_slug_matches_github():
    assert _slug("Changes from the official code") == "changes-from-the-official-code"
    assert _slug("RunSummary") == "runsummary"
    assert _slug("`promptgym bench`: every method") == "promptgym-bench-every-method"
