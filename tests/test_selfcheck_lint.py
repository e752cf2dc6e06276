"""The self-check lint (tools/selfcheck_lint.py) classifies planted tautologies and honest look-alikes."""

from pathlib import Path

import pytest

from tools.selfcheck_lint import check_cells, check_notebook, check_test_file

ROOT = Path(__file__).resolve().parents[1]

TAUTOLOGIES = [
    ["assert y == y"], ["assert torch.equal(w, w)"], ["assert torch.allclose(a, a)"],
    ["b = a", "assert torch.equal(a, b)"], ["assert len(x) > -1"], ["assert len(x) >= 0"],
    ["assert share <= 1"], ["assert 0 <= share <= 1"], ["assert recall >= 0"], ["assert True"],
    ["x = load(p)\nassert x is not None"],
    ["keep = v <= m\nassert v[keep].max() <= m"], ["keep = v <= m", "assert max(v[keep]) <= m"],
    ["lengths = [n for n in ns if n <= m]\nassert max(lengths) <= m"],
    ["lengths = [n for n in ns if n <= m]\nassert all(n <= m for n in lengths)"],
    ["short = v[v < m]\nassert short.max() < m"], ["n = min(len(rows), LIMIT)\nassert n <= LIMIT"],
    ["acc = sum(h) / len(h)", "assert acc == sum(h) / len(h)"], ["a = x @ y", "assert torch.allclose(a, x @ y)"],
    ["levels = v / v.max()\nassert levels.max() == 1"], ["total = a + b + c\nassert total == c + a + b"],
    ["total = sum(parts)\nassert total == sum(parts)"],
    ["check_claim(profile, len(x) >= 0, 'has rows')"], ["check_claim(profile, holds=acc <= 1.0, claim='ok')"],
    ["assert torch.linalg.matrix_rank(G) <= min(n, *G.shape)"], ["assert max(a, b) <= a + b"],
    ["answer = model.generate(ids)\nassert len(answer) > 0"], ["reply = chat(model, q)\nassert reply.strip()"],
    # from the regex lint this one replaced (tests/test_selfchecks.py)
    ["assert all(0 <= v <= 1 for v in acc.values())"], ["assert 0 < question_share < 1"],
    ["x = a * b\nassert x == a * b"],
]

HONEST = [
    ["assert y == z"], ["assert torch.equal(w, w0)"], ["assert torch.allclose(ours, library, atol=1e-5)"],
    ["b = a.clone()\nb += 1", "assert not torch.equal(a, b)"], ["assert len(x) > 0"], ["assert len(x) >= 3"],
    ["assert share <= 0.5"], ["assert 0.9 < ratio < 1.1"], ["assert recall >= 0.6"], ["assert ci.low > 0"],
    ["x = load(p)\nprint(x)\ny = x or None", "assert y is not None"],
    ["keep = v <= m\nassert v[keep].max() <= m2"], ["keep = v <= m", "assert keep.sum() > 10"],
    ["lengths = [n for n in ns if n <= m]\nassert max(lengths) <= m // 2"],
    ["lengths = [f(n) for n in ns]\nassert max(lengths) <= m"],
    ["short = v[v < m]\nassert v.max() < m"], ["n = min(len(rows), LIMIT)\nassert n >= 10"],
    ["acc = sum(h) / len(h)", "assert acc == sum(h2) / len(h2)"],
    ["before = checksum(model)\nmodel.train_step()\nassert checksum(model) == before"],
    ["levels = v / v.max()\nassert levels.min() == -1"], ["total = a + b + c\nassert total == measured"],
    ["assert generate(3, seed=0) == generate(3, seed=0)"],
    ["check_claim(profile, gain.low > 0, 'helps')"], ["check_claim(profile, holds=acc >= 0.8, claim='ok')"],
    ["assert torch.linalg.matrix_rank(G) <= 4"], ["assert max(a, b) <= 1.05 * max(a, b, c)"],
    ["answer = model.generate(ids)\nassert len(answer) > 0\nassert score(answer, gold) > 0.5"],
    ["assert share <= 1  # selfcheck: ok (share of another denominator)"],
    ["assert all(0.2 <= v <= 1 for v in acc.values())"], ["x = a * b\nassert x == 12"],
    ["assert rel_err < 0.1 * 1"],
]


@pytest.mark.parametrize("cells", TAUTOLOGIES, ids=lambda c: " | ".join(c)[:60])
def test_lint_flags_a_tautology(cells):
    assert check_cells(cells), cells


@pytest.mark.parametrize("cells", HONEST, ids=lambda c: " | ".join(c)[:60])
def test_lint_passes_an_honest_check(cells):
    assert not check_cells(cells), [str(f) for f in check_cells(cells)]


# Found by the lint and not fixed yet (issue 20): each needs a notebook run to replace; the list may only shrink.
KNOWN: dict[str, list[str]] = {}


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("**/*.ipynb")), ids=lambda p: p.name)
def test_course_notebook_passes_the_lint(path):
    found = [f.text for f in check_notebook(path)]
    assert found == KNOWN.get(path.name, []), f"{path.name}: checks that cannot fail: {found}"


def test_course_tests_pass_the_lint():
    found = [str(f) for p in sorted((ROOT / "tests").glob("test_*.py")) for f in check_test_file(p)]
    assert not found, found
