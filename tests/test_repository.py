"""Checks of the repository itself: clean notebooks, one bootstrap, a syllabus that resolves, lint."""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import sync_notebooks  # noqa: E402

LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
ALL = LESSONS + SOLUTIONS
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _nb(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_lessons():
    assert len(LESSONS) >= 1
    numbers = [p.name[:2] for p in LESSONS]
    assert numbers == sorted(set(numbers)), "two lessons share a number"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_notebook_committed_clean_and_canonical(path):
    """No outputs or execution counts; course kernel; Colab metadata; the shared bootstrap cell."""
    nb = _nb(path)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} has outputs"
    assert nb["metadata"]["kernelspec"] == sync_notebooks.KERNELSPEC
    assert nb["metadata"]["accelerator"] == "GPU" and "colab" in nb["metadata"]
    assert sync_notebooks.dump(sync_notebooks.canonical(nb, path.name, strip=True)) == path.read_text(
        encoding="utf-8"), f"{path.name} is not canonical: run `make strip`"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_first_code_cell_is_the_bootstrap_then_setup(path):
    code = [c for c in _nb(path)["cells"] if c["cell_type"] == "code"]
    assert "".join(code[0]["source"]) == sync_notebooks.bootstrap_source(
        notebook=sync_notebooks.lesson_name(path.name))
    assert "setup_notebook(" in "".join(code[1]["source"]), "the second code cell is the setup cell"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_install_cell_shows_one_line(path):
    """Colab shows a form cell's title only; JupyterLab hides a cell whose source_hidden is set."""
    boot = next(c for c in _nb(path)["cells"] if c["cell_type"] == "code")
    assert boot["source"][0].startswith("# @title ") and 'display-mode: "form"' in boot["source"][0]
    assert boot["metadata"]["cellView"] == "form" and boot["metadata"]["jupyter"]["source_hidden"] is True


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_opening_fits_one_screen(path):
    """Title, promise, goals, prerequisites and one table: at most 15 lines before the first section."""
    lines = []
    for cell in _nb(path)["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.lstrip().startswith("## "):
            break
        if cell["cell_type"] == "markdown":
            lines += [line for line in text.splitlines() if line.strip()]
    block = "\n".join(lines)
    measured = block.split("<!-- gpu-check:start -->")[0]  # a gpu-check measurement may follow the table
    assert len(measured.splitlines()) <= 15, f"{path.name}: {len(measured.splitlines())} lines before section 1"
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) <= 2 + 3, f"{path.name}: one row per profile"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_opens_with_goals_and_profile_table(path):
    first = "".join(_nb(path)["cells"][0]["source"])
    assert first.startswith("# "), "a lesson opens with its title"
    assert "learn" in first.lower() and "prerequisite" in first.lower()
    assert re.search(r"\|\s*cpu", first) and re.search(r"\|\s*t4", first, re.I), "runtime table per profile"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_has_exercises_and_a_solutions_notebook(path):
    text = "".join("".join(c["source"]) for c in _nb(path)["cells"] if c["cell_type"] == "markdown")
    for tier in ("Warm-up", "Core", "Stretch"):
        assert tier.lower() in text.lower(), f"{path.name} lacks a {tier} exercise"
    assert (ROOT / "notebooks" / "solutions" / f"{path.stem}_solutions.ipynb").exists()


# A call that changes weights: a Trainer's train(), or a hand-written loop's backward and optimizer step.
_TRAINS = re.compile(r"trainer\w*\.train\(|\.backward\(|\.step\(\)", re.I)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_has_an_experiment_that_trains_with_an_executed_solution(path):
    """Issue 22 item 5: one exercise changes the training or the data and measures what happens.

    The lesson lists it as `- *Experiment:*`; its solution, under `## Experiment:` in the solutions
    notebook (which `make test` executes), trains and asserts what it measured."""
    text = "".join("".join(c["source"]) for c in _nb(path)["cells"] if c["cell_type"] == "markdown")
    assert re.search(r"^- \*Experiment:\*", text, re.M), f"{path.name} lists no `- *Experiment:*` exercise"
    cells = _nb(ROOT / "notebooks" / "solutions" / f"{path.stem}_solutions.ipynb")["cells"]
    starts = [i for i, c in enumerate(cells)
              if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## Experiment:")]
    assert starts, f"{path.stem}_solutions has no `## Experiment:` section"
    section = []
    for cell in cells[starts[0] + 1:]:
        if cell["cell_type"] == "markdown" and "".join(cell["source"]).startswith("## "):
            break
        if cell["cell_type"] == "code":
            section.append("".join(cell["source"]))
    code = "\n".join(section)
    assert _TRAINS.search(code), "the experiment's solution trains nothing"
    assert re.search(r"^\s*assert ", code, re.M), "the experiment's solution checks nothing it measured"


def _config_fields(path) -> list[str]:
    """The annotated fields of the lesson's ``class Config`` (read with ast, never executed)."""
    for cell in _nb(path)["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "code" and re.search(r"^class Config\b", text, re.M):
            tree = ast.parse("\n".join(line for line in text.splitlines() if not line.lstrip().startswith(("!", "%"))))
            config = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
            return [n.target.id for n in config.body if isinstance(n, ast.AnnAssign)]
    raise AssertionError(f"{path.name} has no `class Config`")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_config_holds_at_most_twelve_knobs(path):
    """Issue 22 item 2: Config holds the knobs the lesson talks about; the rest are named where used."""
    fields = _config_fields(path)
    assert len(fields) <= 12, f"{path.name}: {len(fields)} Config fields: {fields}"


def test_readme_syllabus_lists_every_lesson_once_in_order_with_a_badge():
    linked = re.findall(r"\]\(notebooks/(\d\d_[\w]+\.ipynb)\)", README)
    assert linked == [p.name for p in LESSONS]
    badges = re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/main/([^)\s]+)", README)
    assert [b[1] for b in badges] == [f"notebooks/{p.name}" for p in LESSONS]
    repo = sync_notebooks.repo_url().removeprefix("https://github.com/")
    assert {b[0] for b in badges} == {repo}, "badges point at the repository named in pyproject.toml"


def test_every_relative_link_resolves():
    docs = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def lint_paths() -> list[str]:
    """The paths `make lint` runs ruff over (the Makefile's LINT_PATHS): the test lints the same ones."""
    return re.search(r"^LINT_PATHS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()


def test_make_lint_covers_every_python_file_and_notebook():
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.ipynb"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    paths = lint_paths()
    outside = [f for f in tracked if not any(f == p or f.startswith(p.rstrip("/") + "/") for p in paths)]
    assert not outside, f"`make lint` (LINT_PATHS in the Makefile) misses {outside}"
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "$(LINT_PATHS)" in recipe and "selfcheck_lint.py" in recipe and "sync_notebooks.py --check" in recipe


def test_lint_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    result = subprocess.run([ruff, "check", *lint_paths()], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


HOME = sync_notebooks.repo_url()
HOME_DOCS = [ROOT / "README.md", ROOT / "docs" / "INSTRUCTOR_GUIDE.md", *ALL]


@pytest.mark.parametrize("path", HOME_DOCS, ids=lambda p: p.name)
def test_badges_and_bootstrap_name_the_home_in_pyproject(path):
    """pyproject.toml's [project.urls] Repository is the one place the course's home is written."""
    assert sync_notebooks.home_mismatches(path.read_text(encoding="utf-8"), HOME) == []


def test_readme_and_guide_carry_colab_badges_of_the_home():
    for doc in HOME_DOCS[:2]:
        text = doc.read_text(encoding="utf-8")
        assert f"colab.research.google.com/github/{sync_notebooks.home_slug(HOME)}/blob/" in text, doc.name
        assert sync_notebooks.sync_badges(text, HOME) == text, f"{doc.name}: run tools/sync_notebooks.py"


def test_home_check_fails_on_a_mismatch():
    """A fork that changed pyproject.toml but not the README (or the reverse) is caught."""
    fork_pyproject = (ROOT / "pyproject.toml").read_text().replace(
        HOME, "https://github.com/alice/lora-qlora-course")
    fork = sync_notebooks.repo_url(fork_pyproject)
    assert fork == "https://github.com/alice/lora-qlora-course"
    # every mention of the home is caught: the Colab badges and the gpu-check one-liner's clone
    assert README.count("colab.research.google.com/github/") >= 11
    assert sync_notebooks.home_mismatches(README, fork) == ["lora-course/lora-qlora-course"] * README.count(
        "lora-course/lora-qlora-course")
    assert sync_notebooks.home_mismatches(sync_notebooks.bootstrap_source(fork), HOME) == [
        "alice/lora-qlora-course"]
    typo = README.replace(f"github/{sync_notebooks.home_slug(HOME)}/blob/main/notebooks/04",
                          "github/lora-course/lora-qlora-courses/blob/main/notebooks/04")
    assert sync_notebooks.home_mismatches(typo, HOME) == ["lora-course/lora-qlora-courses"]
    assert sync_notebooks.home_mismatches(sync_notebooks.sync_badges(typo, HOME), HOME) == [], "sync repairs it"
