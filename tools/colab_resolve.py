"""Resolve the Colab bootstrap's pip command against Colab's recorded package list, without Colab.

``seed_env`` makes a virtual environment (no pip of its own) whose site-packages holds a
metadata-only ``.dist-info`` for every package of tools/colab/pip-freeze.gpu.txt, so pip sees
Colab's versions as installed. ``resolve`` runs this Python's pip against that environment
(``pip --python``) with the bootstrap's own arguments plus ``--dry-run --report``, for Colab's Python
(``--python-version``, ``--only-binary=:all:``), and returns pip's report: what pip would install,
which is what it would replace when Colab has another version. Nothing is installed; PyPI is read
(pip's cache makes a second run faster).

    python tools/colab_resolve.py            # what the bootstrap would change on Colab's GPU runtime
    python tools/colab_resolve.py --before   # the same for the old install (requirements.txt through
                                             # the full constraints.txt), for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_install  # noqa: E402

FREEZE = ROOT / "tools" / "colab" / "pip-freeze.gpu.txt"
# requirements.txt's libraries whose tested versions the lessons are written against (APIs, numerics):
# on Colab they are installed at constraints.txt's versions. The others come as Colab ships them,
# within requirements.txt's ranges: torch (Colab's CUDA build), pandas, matplotlib, ipywidgets, tqdm.
COURSE_LIBRARIES = ("accelerate", "bitsandbytes", "datasets", "gguf", "peft", "safetensors",
                    "sentence-transformers", "transformers", "trl")


def norm(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_freeze(path: Path = FREEZE) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({name: version}, {header key: value}) of a recorded ``pip freeze``.

    ``name @ url`` lines take the version from the wheel's or sdist's file name; a git URL has none
    and is left out (no such package is in the course's dependencies).
    """
    versions, header = {}, {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            key, sep, value = line[1:].strip().partition(": ")
            if sep and re.fullmatch(r"[a-z]+", key):
                header.setdefault(key, value.strip())
            continue
        line = line.strip()
        if not line:
            continue
        if " @ " in line:
            name, url = line.split(" @ ", 1)
            m = re.search(r"/[A-Za-z0-9_.]+?-(\d[^-/]*?)(?:-[^/]*\.whl|\.tar\.gz|\.zip)(?:#.*)?$", url)
            if m:
                versions[norm(name)] = m.group(1)
            continue
        name, _, version = line.partition("==")
        versions[norm(name)] = version
    return versions, header


def find_python(version: str) -> Path | None:
    """An interpreter of Colab's Python ``version`` on this machine (pyenv or PATH) that runs, or None."""
    candidates = sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"), reverse=True)
    if shutil.which(f"python{version}"):
        candidates.append(Path(shutil.which(f"python{version}")))
    for python in candidates:
        if subprocess.run([python, "-c", ""], capture_output=True).returncode == 0:
            return python
    return None


def seed_env(dest: Path, versions: dict[str, str], python: Path | None = None) -> Path:
    """A venv without pip whose site-packages lists every package of ``versions`` as installed."""
    base = python or getattr(sys, "_base_executable", sys.executable)
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(dest)], check=True)
    env_python = dest / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([env_python, "-c", purelib], check=True, capture_output=True,
                               text=True).stdout.strip())
    for name, version in versions.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("colab-freeze\n")
    return env_python


def pip_env(cache: Path | None = None) -> dict[str, str]:
    """This machine's pip settings left out (config files, PIP_* variables): plain PyPI, as on Colab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if cache:
        env["PIP_CACHE_DIR"] = str(cache)
    return env


def colab_pip(version: str, cache: Path) -> Path:
    """Colab's own pip release as a wheel in ``cache`` (pip runs from its wheel: python WHEEL/pip)."""
    wheel = cache / f"pip-{version}-py3-none-any.whl"
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"pip=={version}",
                        "-d", str(cache)], check=True, env=pip_env(cache / "http"), timeout=300)
    return wheel


def resolve(args: list[str], env_python: Path, python_version: str, report: Path, pip_wheel: Path,
            cache: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``pip install ARGS --dry-run --report`` in ``env_python``'s environment; return pip's run.

    ``args`` are the bootstrap's arguments after ``pip install``. pip is Colab's release, run from
    its wheel; ``--python-version`` is added when ``env_python`` is not Colab's Python (then pip
    still evaluates environment markers for this one: prefer a real Colab Python, ``find_python``).
    """
    cmd = [str(env_python), str(pip_wheel / "pip"), "install", *args, "--dry-run", "--report", str(report),
           "--only-binary=:all:"]
    here = subprocess.run([env_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    if here != python_version:
        cmd += ["--python-version", python_version]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=pip_env(cache), timeout=900)


def replaced(report: dict, colab: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{name: (Colab's version, the version pip would install)} for each package Colab has."""
    out = {}
    for item in report["install"]:
        name, version = norm(item["metadata"]["name"]), item["metadata"]["version"]
        if name in colab and colab[name] != version:
            out[name] = (colab[name], version)
    return out


def tested_pins_of(path: Path) -> dict[str, str]:
    """{name: version} of a constraints file's ``name==version`` lines (comments ignored)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[norm(name)] = version
    return pins


def course_requirements(path: Path = ROOT / "requirements.txt") -> list[Requirement]:
    """The ranges requirements.txt states."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [Requirement(line) for line in lines if line]


def requirements_in(report: dict) -> list[tuple[str, Requirement]]:
    """(package, requirement) for every dependency the packages pip would install declare for Colab.

    Markers are evaluated for the report's environment, with each extra pip was asked for.
    """
    env = report["environment"]
    found = []
    for item in report["install"]:
        extras = ["", *item.get("requested_extras", [])]
        for text in item["metadata"].get("requires_dist", []):
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras):
                found.append((item["metadata"]["name"], req))
    return found


def reasons(report: dict, colab: dict[str, str], course_libraries: dict[str, str],
            course_reqs: list[Requirement]) -> dict[str, str]:
    """{name: why the course needs Colab's version replaced} for each replaced package with a reason.

    A replacement is needed when the package is one of the course's own libraries (``course_libraries``:
    {name: tested version}), or when requirements.txt or a package pip installs declares a range
    that rejects Colab's version. A replaced package missing here was replaced for nothing.
    """
    why = {}
    stated = [("requirements.txt", r) for r in course_reqs] + requirements_in(report)
    for name, (old, _new) in replaced(report, colab).items():
        if name in course_libraries:
            why[name] = f"a course library: the tested {course_libraries[name]}"
            continue
        rejecting = [f"{who} requires {req.name}{req.specifier}" for who, req in stated
                     if norm(req.name) == name and not req.specifier.contains(Version(old), prereleases=True)]
        if rejecting:
            why[name] = "; ".join(sorted(set(rejecting)))
    return why


def old_bootstrap_args(course: Path, torch_pin: Path) -> list[str]:
    """The bootstrap's pip arguments before this change: everything through the full constraints.txt."""
    return ["--disable-pip-version-check", "-c", str(course / "constraints.txt"), "-c", str(torch_pin),
            "-r", str(course / "requirements.txt")]


CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lora-course-colab"


def run_resolution(pip_args_for, freeze: Path = FREEZE, cache: Path = CACHE) -> dict:
    """Resolve ``pip_args_for(tmp, keep_file, colab_versions)`` in a seeded Colab environment.

    Returns {"colab", "header", "report" (None when pip failed), "output", "seconds", "python"}.
    """
    colab, header = read_freeze(freeze)
    version = header.get("python", "3.12")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = find_python(version)
        python = seed_env(tmp / "colab", colab, base)
        keep = tmp / ".colab-keep.txt"
        keep.write_text(colab_install.keep_pins(colab))
        wheel = colab_pip(colab.get("pip", "24.1.2"), cache)
        start = time.time()
        done = resolve(pip_args_for(tmp, keep, colab), python, version, tmp / "report.json", wheel,
                       cache / "http")
        took = time.time() - start
        report = json.loads((tmp / "report.json").read_text()) if done.returncode == 0 else None
    return {"colab": colab, "header": header, "report": report, "output": done.stdout, "seconds": took,
            "python": str(base or sys.executable)}


def summary(result: dict) -> list[str]:
    """Lines that say what pip would install on Colab, replaced versions first."""
    colab, report = result["colab"], result["report"]
    swaps = replaced(report, colab)
    new = sorted(i["metadata"]["name"] for i in report["install"] if norm(i["metadata"]["name"]) not in colab)
    lines = [f"Colab GPU runtime of {result['header'].get('date', '?')}: pip would install "
             f"{len(report['install'])} packages ({result['seconds']:.0f} s to resolve with "
             f"{result['python']}); {len(swaps)} replace a version Colab ships, {len(new)} are new"]
    lines += [f"  {name} {old} -> {version}" for name, (old, version) in sorted(swaps.items())]
    lines.append("  new: " + " ".join(new))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", action="store_true", help="resolve the old install command instead")
    ap.add_argument("--freeze", type=Path, default=FREEZE)
    args = ap.parse_args(argv)

    def pip_args(tmp, keep, colab):
        if args.before:
            torch_pin = tmp / "torch.txt"
            torch_pin.write_text(f"torch=={colab['torch']}\n")
            return old_bootstrap_args(ROOT, torch_pin)
        (step,) = colab_install.pip_steps(ROOT, keep, has_gpu=True)
        return step

    result = run_resolution(pip_args, args.freeze)
    if result["report"] is None:
        print(*colab_install.messages(result["output"])[-80:], sep="\n")
        return 1
    print(*summary(result), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
