"""The package's two layers: the lesson helpers never import the course machinery (issue 21).

``course_utils/*.py`` are the helpers lessons teach and call; ``course_utils/machinery/`` is what runs a
notebook on every profile. Machinery may use the lesson layer, never the reverse, so a learner who
opens a lesson module meets no profile, ledger or download logic. The package's ``__init__`` is the
front door that re-exports from both; notebooks and ``course_utils/scripts`` (entry points) use both.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "course_utils"
LESSON_MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
MACHINERY_MODULES = sorted((PACKAGE / "machinery").glob("*.py"))


def imported_modules(source: str, module: str) -> list[str]:
    """Every module an import statement in ``source`` names, anywhere (function bodies too), absolute.

    ``module`` is the dotted name of the file (``course_utils.memory``), for resolving relative imports.
    ``from X import a`` yields ``X`` and ``X.a`` (``a`` may be a submodule).
    """
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names]
    return found


def machinery_arrows(source: str, module: str) -> list[str]:
    """The imports in a lesson module that reach the machinery: the subpackage, or the package's front
    door (``course_utils/__init__`` re-exports machinery, so importing from it is an arrow too)."""
    return sorted({m for m in imported_modules(source, module)
                   if m == "course_utils.machinery" or m.startswith("course_utils.machinery.")
                   or (m.startswith("course_utils.") and m.count(".") == 1
                       and not (PACKAGE / f"{m.split('.')[1]}.py").exists()
                       and not (PACKAGE / m.split(".")[1]).is_dir())})


@pytest.mark.parametrize("path", LESSON_MODULES, ids=lambda p: p.name)
def test_lesson_module_imports_no_machinery(path):
    arrows = machinery_arrows(path.read_text(), f"course_utils.{path.stem}")
    assert not arrows, f"{path.name} (lesson layer) imports the machinery: {arrows}"


def test_the_check_sees_every_kind_of_arrow():
    """The check itself can fail: each of these imports is an arrow into the machinery."""
    for source in ("from .machinery.ledger import current",
                   "def f():\n    from .machinery import profiles",
                   "import course_utils.machinery.loading as loading",
                   "from . import load_model",  # the front door re-exports machinery
                   "from course_utils import PROFILES"):
        assert machinery_arrows(source, "course_utils.memory"), source
    for source in ("from .memory import fmt_bytes", "from .registry import original_of",
                   "import torch", "from . import stats"):
        assert not machinery_arrows(source, "course_utils.models"), source


def test_the_layers_split_the_package():
    """Both layers hold code; the machinery modules import from the lesson layer, as the arrow allows."""
    assert len(LESSON_MODULES) >= 10 and len(MACHINERY_MODULES) >= 8
    uses_lessons = [p.name for p in MACHINERY_MODULES
                    if any(m.startswith("course_utils.") and not m.startswith("course_utils.machinery")
                           for m in imported_modules(p.read_text(), f"course_utils.machinery.{p.stem}"))]
    assert "ledger.py" in uses_lessons and "loading.py" in uses_lessons


def test_readme_lists_every_module_and_tool_with_a_line():
    """Issue 21 item 6: the README's layout names every module of both layers and every tool."""
    root = PACKAGE.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Repository layout"):]
    layout = layout[:layout.index("\n## ", 3)]
    rows = set(re.findall(r"^\| `([^`]+)` \| \S", layout, re.M))
    wanted = {p.name for p in LESSON_MODULES} | {p.name for p in MACHINERY_MODULES if p.name != "__init__.py"}
    wanted |= {f"scripts/{p.name}" for p in (PACKAGE / "scripts").glob("*.py")}
    wanted |= {p.name for p in (root / "tools").glob("*.py")}
    assert wanted <= rows, f"README layout lacks {sorted(wanted - rows)}"
    assert rows <= wanted, f"README layout names modules that do not exist: {sorted(rows - wanted)}"


def _lesson_code_and_headings() -> dict[str, tuple[str, set[str]]]:
    import json

    out: dict[str, tuple[str, set[str]]] = {}
    for path in sorted((PACKAGE.parent / "notebooks").glob("**/[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code, headings = out.get(path.name[:2], ("", set()))
        code += "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code") + "\n"
        headings |= {m.strip() for c in cells if c["cell_type"] == "markdown"
                     for m in re.findall(r"^##\s+(.+)$", "".join(c["source"]), re.M)}
        out[path.name[:2]] = (code, headings)
    return out


TAUGHT = re.compile(r"Taught in lesson (\d\d), section «([^»]+)»")


def test_a_helper_one_lesson_uses_names_the_lesson_and_section_that_teach_it():
    """Issue 21 item 5 (d2l's "Defined in" tags): a lesson-layer helper that a single lesson (with its
    solutions) calls says in its docstring which lesson and section use it, and that section exists."""
    lessons = _lesson_code_and_headings()
    missing, wrong = [], []
    for path in LESSON_MODULES:
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.FunctionDef | ast.ClassDef) or node.name.startswith("_"):
                continue
            users = [n for n, (code, _) in lessons.items() if re.search(rf"\b{node.name}\b", code)]
            if len(users) != 1:
                continue
            tag = TAUGHT.search(ast.get_docstring(node) or "")
            where = f"{path.name}:{node.name}"
            if tag is None:
                missing.append(f"{where} (lesson {users[0]})")
            elif tag.group(1) != users[0] or tag.group(2) not in lessons[users[0]][1]:
                wrong.append(f"{where} says lesson {tag.group(1)} «{tag.group(2)}»; used by lesson {users[0]}")
    assert not missing, f"untagged single-lesson helpers: {missing}"
    assert not wrong, f"tags that name the wrong lesson or a missing section: {wrong}"
