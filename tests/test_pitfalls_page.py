"""docs/PITFALLS.md: every pitfall listed once, every link lands on a notebook section that exists."""

import json
import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "PITFALLS.md"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lstrip("#").strip().lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return {slug(line) for c in cells if c["cell_type"] == "markdown"
            for line in "".join(c["source"]).splitlines() if line.startswith("#")}


def test_slug_follows_github():
    assert slug("## 5 · The old way, measured (pitfalls 1–3)") == "5--the-old-way-measured-pitfalls-13"
    assert slug("### Pitfall 11: \"ΔW = W + A·B\"") == "pitfall-11-δw--w--ab"


def test_every_pitfall_once_in_order():
    rows = re.findall(r"^\| (\d+) \|", PAGE.read_text(encoding="utf-8"), flags=re.M)
    assert [int(r) for r in rows] == list(range(1, 16))


def test_every_link_lands_on_a_section():
    links = re.findall(r"\]\(\.\./(notebooks/[^)#]+\.ipynb)#([^)]+)\)", PAGE.read_text(encoding="utf-8"))
    assert len(links) >= 15
    for path, anchor in links:
        notebook = ROOT / path
        assert notebook.exists(), path
        assert anchor in anchors(notebook), f"{path}#{anchor}: no such heading"
