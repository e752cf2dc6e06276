"""tools/make_figures.py draws every registered diagram into a folder, as non-empty PNGs."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def mf(load_tool):
    return load_tool("make_figures")


def test_every_figure_renders(tmp_path, mf):
    assert mf.main(["--out", str(tmp_path)]) == 0
    for name in mf.FIGURES:
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_notebook_figures_are_committed(mf):
    for name in mf.FIGURES:
        assert (ROOT / "images" / name).exists(), f"run `python tools/make_figures.py` to draw {name}"


def test_unknown_prefix_fails(tmp_path, mf):
    assert mf.main(["99", "--out", str(tmp_path)]) == 1


def test_quant_levels_are_the_library_code_books(mf):
    """The number line reads NF4/FP4 back by quantizing; it must show exactly bitsandbytes' code books."""
    from bitsandbytes import functional as bnbf

    levels = mf.quant_levels()
    for name in ("nf4", "fp4"):
        book = sorted({round(v, 4) for v in bnbf.get_4bit_type(name, device="cpu").tolist()})
        assert [round(v, 4) for v in levels[name.upper()]] == book
    assert len(levels["NF4"]) == 16 and 0.0 in levels["NF4"]  # NF4 spends no code twice and has an exact 0
    assert len(levels["FP4"]) == 15  # FP4's +0 and -0 are one value


def test_update_size_follows_rslora_scaling(mf):
    """rsLoRA (Kalajdzievski, 2023): the first step's update falls like 1/sqrt(r) with alpha/r, flat with
    alpha/sqrt(r). From r = 1 to 256 that predicts a 16x fall and no fall."""
    data = mf.update_size_by_rank(ranks=(1, 16, 256), d=256, seeds=2)
    fall = data["alpha/r"][0] / data["alpha/r"][-1]
    assert 10 < fall < 25, fall
    flat = data["alpha/sqrt(r)"]
    assert max(flat) / min(flat) < 1.5, flat
