"""Notebooks branch on the recipe, never on the hardware, so a CPU rehearsal runs the GPU path.

Where real hardware must decide (``use_cpu``, a GPU's free memory), a notebook calls a function of
``course_utils.precision``, which has unit tests. This test reads every notebook's code for the
spellings that would bypass that: ``profile.has_gpu``, ``profile.name == ...``, ``torch.cuda.``.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("**/*.ipynb"))
HARDWARE_BRANCH = re.compile(r"\.has_gpu\b|profile\.name\s*[=!]=|\btorch\.cuda\.|\.device\s*==\s*['\"]cuda")


def hardware_branches(source: str) -> list[str]:
    """Return the lines of a code cell that decide by the hardware rather than the profile's recipe."""
    return [ln.strip() for ln in source.splitlines()
            if HARDWARE_BRANCH.search(ln) and not ln.lstrip().startswith("#")]


def test_pattern_catches_the_old_spellings():
    cell = ('lr = 2e-4 if profile.has_gpu else 1e-3\nq = "nf4" if profile.name == "t4" else None\n'
            'free = torch.cuda.mem_get_info()[0]\n# torch.cuda in a comment is fine\nuse = profile.gpu_recipe')
    assert len(hardware_branches(cell)) == 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_branches_on_the_recipe(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    # The Colab bootstrap (first code cell) legitimately asks whether CUDA is there.
    code = [c for c in cells if c["cell_type"] == "code"][1:]
    found = [ln for c in code for ln in hardware_branches("".join(c["source"]))]
    assert not found, f"{path.name}: use profile.gpu_recipe / profile.target or course_utils.precision: {found}"
