"""tools/make_figures.py draws every registered diagram into a folder, as non-empty PNGs."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "tools" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_figure_renders(tmp_path):
    mf = _load()
    assert mf.main(["--out", str(tmp_path)]) == 0
    for name in mf.FIGURES:
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_notebook_figures_are_committed():
    mf = _load()
    for name in mf.FIGURES:
        assert (ROOT / "images" / name).exists(), f"run `python tools/make_figures.py` to draw {name}"


def test_unknown_prefix_fails(tmp_path):
    assert _load().main(["99", "--out", str(tmp_path)]) == 1
