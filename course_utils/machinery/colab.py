"""The one line the Colab bootstrap prints, so a learner (and a bug report) sees the whole setup at once.

The bootstrap cell calls ``print_summary`` on every run, after a restart too. Formatting is a pure
function (``summary_line``) so it is tested without a GPU; ``runtime_facts`` gathers the values.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from .downloads import NOTEBOOK_ROLES, describe_plan

LIBRARIES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")
NO_GPU = "NO GPU (cpu profile; Colab: Runtime > Change runtime type > T4 GPU; Kaggle: Settings > Accelerator)"


def summary_line(course: str, versions: dict[str, str], gpu: str | None, gpu_bytes: int,
                 profile: str, install_s: float | None = None) -> str:
    """Format the bootstrap's summary: course version, library versions, GPU and memory, profile."""
    libs = " ".join(f"{name} {version}" for name, version in versions.items())
    device = f"GPU {gpu} {gpu_bytes / 2**30:.1f} GiB" if gpu else NO_GPU
    installed = f" | installed in {install_s:.0f} s" if install_s is not None else ""
    return f"course {course} | {libs} | {device} | profile {profile}{installed}"


def runtime_facts() -> dict:
    """Collect the summary's values from the running machine (imports torch and the course)."""
    import torch

    from .. import __version__
    from .profiles import get_profile

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "missing"
    gpu, gpu_bytes = None, 0
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu, gpu_bytes = props.name, props.total_memory
    return {"course": __version__, "versions": versions, "gpu": gpu, "gpu_bytes": gpu_bytes,
            "profile": get_profile().name}


def print_summary(course_dir: str | Path | None = None, notebook: str = "") -> str:
    """Print and return the summary line; the install time is read from the bootstrap's stamp file.

    The stamp is read once: after a restart the line says nothing about an install that did not run.
    Then, for a lesson, one line with what it will download on this profile, before anything starts.
    """
    install_s = None
    stamp = Path(course_dir) / ".installed" if course_dir else None
    shown = Path(course_dir) / ".installed-shown" if course_dir else None
    if stamp and stamp.exists() and not shown.exists():
        install_s = float(stamp.read_text().split()[0])
        shown.touch()
    facts = runtime_facts()
    line = summary_line(**facts, install_s=install_s)
    print(line)
    if notebook in NOTEBOOK_ROLES:
        from .profiles import PROFILES

        print(describe_plan(notebook, PROFILES[facts["profile"]]))
    return line
