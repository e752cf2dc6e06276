"""The lock file: exact tested versions that every requirement range admits, and torch left alone."""

import importlib.metadata as md
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def read_pins(text: str) -> dict[str, str]:
    """Return {normalized name: version} from a constraints file's ``name==version`` lines."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints line is not an exact pin: {line!r}"
            pins[_norm(name)] = version
    return pins


def read_requirements(*files: str) -> list[Requirement]:
    reqs = []
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                reqs.append(Requirement(line))
    return reqs


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def range_violations(reqs: list[Requirement], pins: dict[str, str]) -> list[str]:
    """Requirements whose range rejects the pinned version, or that the lock does not pin."""
    bad = []
    for req in reqs:
        pinned = pins.get(_norm(req.name))
        if pinned is None:
            bad.append(f"{req.name}: not pinned")
        elif not req.specifier.contains(Version(pinned), prereleases=True):
            bad.append(f"{req.name}: {req.specifier} rejects the pinned {pinned}")
    return bad


PINS = read_pins((ROOT / "constraints.txt").read_text())
REQS = read_requirements("requirements.txt", "requirements-dev.txt", "requirements-models.txt")


def test_every_requirement_range_admits_its_pin():
    non_torch = [r for r in REQS if _norm(r.name) != "torch"]
    assert range_violations(non_torch, PINS) == []


def test_range_check_fails_on_a_pin_outside_the_range():
    reqs = [Requirement("transformers>=5.0"), Requirement("peft>=0.18")]
    assert range_violations(reqs, {"transformers": "4.57.1", "peft": "0.21.2"}) == [
        "transformers: >=5.0 rejects the pinned 4.57.1"]
    assert range_violations(reqs, {"transformers": "5.23.0"}) == ["peft: not pinned"]


def test_torch_is_never_pinned_and_its_range_accepts_newer_releases():
    """Colab's CUDA torch must satisfy requirements.txt as it is, or pip would replace it."""
    assert "torch" not in PINS
    (torch_req,) = [r for r in REQS if _norm(r.name) == "torch"]
    makefile = (ROOT / "Makefile").read_text()
    tested = re.search(r"^TORCH_SPEC \?= torch==(\S+)", makefile, re.M).group(1)
    assert torch_req.specifier.contains(tested), "requirements.txt rejects the torch make test uses"
    assert not [s for s in torch_req.specifier if s.operator in ("<", "<=", "==", "~=", "===")], (
        "an upper bound on torch would make pip replace a newer Colab torch")


def test_the_test_environment_is_the_locked_one():
    """make test runs what learners get: installed course libraries equal the pins."""
    drift = {}
    for req in REQS:
        name = _norm(req.name)
        if name == "torch":
            continue
        installed = md.version(req.name)
        if installed != PINS[name]:
            drift[name] = (installed, PINS[name])
    assert drift == {}, f"installed vs constraints.txt: {drift}"


def test_colab_pins_are_tested_versions_and_leave_the_runtime_stack_alone():
    """tools/colab/constraints.txt (the Colab install) pins a part of constraints.txt, at its versions,
    and never the packages the bootstrap keeps as the runtime has them (tools/colab_install.py KEEP)."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import colab_install

    colab = read_pins((ROOT / colab_install.COLAB_CONSTRAINTS).read_text())
    assert colab and {name: PINS.get(name) for name in colab} == colab
    assert sorted(set(colab) & {_norm(name) for name in colab_install.KEEP}) == []
