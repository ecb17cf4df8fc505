"""The documentation: the MkDocs site builds without a warning, and the README stays short
with every link into docs/ pointing at a file that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300
# relative links the README makes into the documentation: docs/PAGE.md, docs/figures/X.png
DOCS_LINK = re.compile(r"\]\((docs/[^)#\s]+?\.(?:md|png))(?:#[^)\s]*)?\)")


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings"):
        pytest.importorskip(module, reason=f"{module} is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr}"


def test_readme_short_and_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text.count("\n") + (not text.endswith("\n"))
    assert lines < README_MAX_LINES, f"README.md has {lines} lines (limit {README_MAX_LINES})"
    links = DOCS_LINK.findall(text)
    assert links, "README.md links to no docs/ page"
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README.md links to missing files: {missing}"
