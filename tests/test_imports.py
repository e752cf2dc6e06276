"""course_utils' modules import one another without a circle, lazy (function-level) imports included."""

import subprocess
import sys
from pathlib import Path

from tests.test_layers import imported_modules

PACKAGE = Path(__file__).resolve().parents[1] / "course_utils"


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name under course_utils (``memory``, ``machinery.ledger``)."""
    files = sorted(PACKAGE.glob("*.py")) + sorted((PACKAGE / "machinery").glob("*.py"))
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in files if p.stem != "__init__"}


def internal_imports(path: Path) -> set[str]:
    """Modules of course_utils that ``path`` imports anywhere (top level or inside a function)."""
    module = "course_utils." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    return {m.removeprefix("course_utils.") for m in imported_modules(path.read_text(), module)
            if m.startswith("course_utils.")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Return one import circle as a path of module names, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_find_cycle_sees_a_circle():
    assert find_cycle({"profiles": {"memory"}, "memory": {"models"}, "models": {"profiles"}})
    assert find_cycle({"profiles": set(), "memory": set(), "models": {"profiles", "memory"}}) is None


def test_course_utils_has_no_import_circle():
    modules = module_files()
    graph = {name: internal_imports(path) & set(modules) for name, path in modules.items()}
    assert graph["machinery.loading"] >= {"machinery.profiles", "models"}  # the parser sees imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_every_module_imports_in_a_fresh_interpreter():
    """Import each module in a fresh interpreter, the bottom ones first.

    ``course_utils/__init__`` runs first whichever module is asked for, so one interpreter covers
    every entry point; the static graph above also catches the lazy imports that never run here.
    """
    first = ["memory", "models", "machinery.profiles", "machinery.ledger", "machinery.loading"]
    order = first + [n for n in sorted(module_files()) if n not in first]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module('course_utils.' + n)"
    subprocess.run([sys.executable, "-c", code, *order], check=True, cwd=PACKAGE.parent)
