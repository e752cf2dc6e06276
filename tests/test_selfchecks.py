"""Self-check cells must be able to fail: flag asserts that hold by construction.

Three shapes were found in the course and are flagged here (issue 14):
- a ratio or share bounded to [0, 1] (``0 <= v <= 1``), which every ratio satisfies;
- a theorem restated (``matrix_rank(G) <= min(...)``, ``len(x) >= 0``);
- a value compared with the very expression that defined it a few lines above.
A flagged line can be kept only with ``# selfcheck: ok (<why it can fail>)`` on the same line.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("**/*.ipynb"))
WAIVER = "# selfcheck: ok"

_UNIT_BOUND = re.compile(r"\b0(\.0)?\s*<=?\s*[^<>=\n]+?<=?\s*1(\.0)?\b(?!\s*[\d.*/+-])")
_THEOREMS = (
    re.compile(r"matrix_rank\([^)]*\)\s*<=\s*min\("),
    re.compile(r"\blen\([^)]*\)\s*>=\s*0\b"),
    re.compile(r"\bassert\s+True\b"),
)


def _assert_lines(source: str):
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("assert ") and WAIVER not in line:
            yield stripped


def restated_definitions(source: str) -> list[str]:
    """Return asserts of the form ``assert x == <expr>`` where ``x = <expr>`` was the last assignment."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: skip the cell
        return []
    assigned: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = ast.unparse(node.value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
            test = node.test
            if len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq | ast.Is):
                left, right = test.left, test.comparators[0]
                for a, b in ((left, right), (right, left)):
                    if isinstance(a, ast.Name) and assigned.get(a.id) == ast.unparse(b):
                        found.append(ast.unparse(node))
    return found


def problems(source: str) -> list[str]:
    """Return the assert lines of one code cell that cannot fail."""
    out = []
    for line in _assert_lines(source):
        if _UNIT_BOUND.search(line) or any(p.search(line) for p in _THEOREMS):
            out.append(line)
    lines_with_waiver = [ln for ln in source.splitlines() if WAIVER in ln]
    out += [a for a in restated_definitions(source) if not any(a in ln for ln in lines_with_waiver)]
    return out


@pytest.mark.parametrize("source", [
    "assert 0 <= share <= 1",
    "assert all(0 <= v <= 1 for v in acc.values())",
    "assert 0 < question_share < 1",
    "assert torch.linalg.matrix_rank(G) <= min(n_tokens, *G.shape)",
    "x = a * b\nassert x == a * b",
    "assert len(rows) >= 0",
])
def test_checker_flags_checks_that_cannot_fail(source):
    assert problems(source)


@pytest.mark.parametrize("source", [
    "assert 0.9 < ratio < 1.1",  # a ratio near 1: can fail
    "assert ci.low > 0",
    "x = a * b\nassert x == 12",
    "assert 0 <= share <= 1  # selfcheck: ok (share of a different denominator)",
    "assert rel_err < 0.1 * 1",
])
def test_checker_lets_real_checks_pass(source):
    assert not problems(source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_self_checks_can_fail(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = [p for c in nb["cells"] if c["cell_type"] == "code" for p in problems("".join(c["source"]))]
    assert not found, f"{path.name}: checks that hold by construction: {found}"
