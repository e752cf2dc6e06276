"""The Colab bootstrap cell, run as Colab would run it: a fresh VM, then again after a restart.

A temporary directory stands for /content, ``google.colab`` is faked in ``sys.modules`` of a fresh
interpreter, and the course is cloned from a git repository made of this working tree. The "Colab
Python" is a new virtual environment that sees the course's installed packages (as Colab sees its own
preinstalled ones), so the bootstrap's pip (tools/colab_install.py) runs with the index switched
off: it must find every pinned version already there, and fails if it wanted to download or replace
one. tests/test_colab_resolution.py resolves the same command against Colab's own package list.
"""

import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import sync_notebooks  # noqa: E402

LESSON = ROOT / "notebooks" / "03_8bit_loading.ipynb"  # a cell displays images/03_*.png


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                   cwd=cwd, check=True, capture_output=True)


def _course_repo(dest: Path) -> Path:
    """Make a git repository of the working tree (tracked and new files, as a push would carry)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    _git("init", "-q", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-q", "-m", "course", cwd=dest)
    return dest


def _colab_python(dest: Path) -> Path:
    """A fresh venv whose site-packages also holds this environment's (Colab's preinstalled set)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(dest)], check=True)
    python = dest / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "colab-preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _cell(nb: Path, index: int) -> str:
    code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    return "".join(code[index]["source"])


DRIVER = textwrap.dedent("""
    import os, sys, types
    sys.modules["google.colab"] = types.ModuleType("google.colab")  # what Colab's kernel has imported
    exec(compile(open(sys.argv[1]).read(), "bootstrap", "exec"), {"__name__": "__main__"})
    import course_utils
    print("COURSE_UTILS", course_utils.__file__)
    print("CWD", os.getcwd())
    if len(sys.argv) > 2:  # the notebook's setup cell
        exec(compile(open(sys.argv[2]).read(), "setup", "exec"), {"__name__": "__main__"})
""")


def _run(python: Path, content: Path, *cells: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", PIP_NO_INDEX="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    driver = content.parent / "driver.py"
    driver.write_text(DRIVER)
    done = subprocess.run([python, driver, *cells], cwd=content, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to clone the course")
def test_bootstrap_installs_once_and_survives_a_restart(tmp_path):
    content = tmp_path / "content"  # stands for Colab's /content
    content.mkdir()
    origin = _course_repo(tmp_path / "origin")
    course = content / "course"
    boot_src = sync_notebooks.bootstrap_source(home=f"file://{origin}", notebook=LESSON.stem)
    boot_src = boot_src.replace('COURSE_DIR = "/content/course"', f'COURSE_DIR = "{course}"')
    assert str(course) in boot_src and "/content" not in boot_src.replace(str(content), "")
    boot, setup = tmp_path / "bootstrap.py", tmp_path / "setup.py"
    boot.write_text(boot_src)
    setup.write_text(_cell(LESSON, 1))
    python = _colab_python(tmp_path / "venv")

    first = _run(python, content, boot)
    assert "WARNING: this Colab runtime has NO GPU" in first
    assert (course / ".git").is_dir() and (course / ".installed").exists()
    keep = (course / ".colab-keep.txt").read_text()  # the runtime's torch and notebook stack, pinned
    assert keep.startswith(f"torch=={md.version('torch')}\n") and f"ipython=={md.version('ipython')}\n" in keep
    summary = [line for line in first.splitlines() if line.startswith("course ")]
    assert len(summary) == 1, first
    assert re.fullmatch(r"course \S+ \| torch \S+ transformers \S+ peft \S+ trl \S+ bitsandbytes \S+ "
                        r"accelerate \S+ datasets \S+ \| NO GPU .* \| profile cpu \| installed in \d+ s",
                        summary[0]), summary[0]
    assert "downloads: none (cpu profile" in first, "the lesson says what it downloads before it starts"
    assert f"COURSE_UTILS {course}/course_utils/__init__.py" in first  # the clone, not this checkout
    assert f"CWD {course}/notebooks" in first

    # "Runtime > Restart session": a new interpreter on the same VM. Nothing is installed again (the
    # origin is gone, so a clone would fail), yet the course is importable and its images are found.
    shutil.rmtree(origin)
    stamp = (course / ".installed").stat().st_mtime_ns
    second = _run(python, content, boot, setup)
    assert (course / ".installed").stat().st_mtime_ns == stamp
    again = [line for line in second.splitlines() if line.startswith("course ")]
    assert len(again) == 1 and "installed in" not in again[0], second
    assert f"CWD {course}/notebooks" in second and f"COURSE_UTILS {course}/course_utils" in second
    assert "profile  cpu" in second, "the setup cell ran and printed the environment report"
    # The notebooks find images from the package's path (plots.show_diagram), not the working directory:
    # every image they name is in the clone.
    text = "".join(p.read_text() for p in NOTEBOOKS)
    images = set(re.findall(r'show_diagram\(\\?["\']([\w.]+)', text))
    assert images, "no notebook shows an image from images/ any more: pick another check of the clone"
    for name in images:
        assert (course / "images" / name).is_file(), name


def test_bootstrap_is_silent_outside_colab(tmp_path):
    """Locally (no google.colab) the cell changes nothing: no clone, no chdir, no output."""
    done = subprocess.run([sys.executable, "-c", sync_notebooks.bootstrap_source()], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "" and list(tmp_path.iterdir()) == []


def test_bootstrap_sets_up_the_course_on_kaggle(tmp_path):
    """Kaggle sets KAGGLE_KERNEL_RUN_TYPE and has no google.colab: the cell must act there too.

    The course is already installed here (a stamp and links into this checkout stand for a finished
    first run), so the cell only puts it on sys.path, enters notebooks/ and prints its summary.
    """
    course = tmp_path / "kaggle" / "working" / "course"
    (course / "notebooks").mkdir(parents=True)
    (course / "course_utils").symlink_to(ROOT / "course_utils")
    (course / ".installed").write_text("5\n")
    src = sync_notebooks.bootstrap_source(notebook=LESSON.stem)
    assert 'COURSE_DIR = "/kaggle/working/course"' in src
    src = src.replace('"/kaggle/working/course"', f'"{course}"')
    code = src + "\nimport course_utils\nprint('COURSE_UTILS', course_utils.__file__)\nprint('CWD', os.getcwd())"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "PYTHON", "KAGGLE"))}
    env.update(HF_HUB_OFFLINE="1", KAGGLE_KERNEL_RUN_TYPE="Interactive")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WARNING: this Kaggle runtime has NO GPU" in done.stdout and "Settings > Accelerator" in done.stdout
    assert f"COURSE_UTILS {course}/course_utils/__init__.py" in done.stdout
    assert f"CWD {course}/notebooks" in done.stdout
    assert re.search(r"^course \S+ \| torch .* \| profile cpu \| installed in 5 s$", done.stdout, re.M), done.stdout
