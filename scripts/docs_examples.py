"""Run the examples of the user docs that are marked to be run, as a user would paste them.

A fenced ``sh`` or ``python`` block right after a line ``<!-- smoke -->`` in docs/data.md or
docs/api.md is run from the repository root (sh blocks with ``bash -euo pipefail``, python blocks in
a fresh interpreter), in order; the first failure stops with its document and line. The README
smoke script calls this, so a documented example that stops working fails the smoke run.

    python scripts/docs_examples.py [--list] [DOC ...]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/data.md", "docs/api.md")
MARKED = re.compile(r"^<!-- smoke -->\n```(sh|python)\n(.*?)^```", re.S | re.M)


def examples(doc: str) -> list[tuple[str, int, str]]:
    """(language, line number, code) of each marked block of ``doc``."""
    text = (ROOT / doc).read_text()
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in MARKED.finditer(text)]


def main(argv: list[str]) -> int:
    listing = "--list" in argv
    docs = [a for a in argv if not a.startswith("--")] or list(DOCS)
    for doc in docs:
        for language, line, code in examples(doc):
            print(f"docs example: {doc}:{line} ({language})", flush=True)
            if listing:
                continue
            command = ["bash", "-euo", "pipefail", "-c", code] if language == "sh" else [sys.executable, "-c", code]
            if subprocess.run(command, cwd=ROOT).returncode != 0:
                print(f"docs example failed: {doc}:{line}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
