"""Write the predicted GPU runtimes of `course_utils.runtime` into the notebooks' headers and the guide.

Each notebook's first (markdown) cell and docs/INSTRUCTOR_GUIDE.md get a generated table between
``<!-- runtime:start -->`` and ``<!-- runtime:end -->`` (appended once if the markers are missing),
and the runtime cells of the t4/a100 rows of a notebook's header table (and the guide's
"T4 / A100 runtime" column) are rewritten from the same function. Run with ``--check`` to only
report differences (the test does the same).

    python tools/runtime_table.py          # rewrite
    python tools/runtime_table.py --check  # exit 1 if anything is out of date
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.profiles import PROFILES  # noqa: E402
from course_utils.runtime import WORKLOADS, predict_runtime, runtime_table_markdown  # noqa: E402

START, END = "<!-- runtime:start -->", "<!-- runtime:end -->"
GUIDE = ROOT / "docs" / "INSTRUCTOR_GUIDE.md"


def with_block(text: str, block: str) -> str:
    """Replace the text between the markers by ``block`` (appending the markers if missing)."""
    body = f"{START}\n{block}\n{END}"
    if START in text:
        return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: body, text, flags=re.S)
    return text.rstrip("\n") + "\n\n" + body + "\n"


def minutes(notebook: str, target: str) -> str:
    return f"≈ {predict_runtime(notebook, PROFILES[target])['total']:.0f} min"


def with_runtime_cells(text: str, notebook: str) -> str:
    """Rewrite the runtime cell of the t4 and a100 rows of a header table."""
    lines, col = text.split("\n"), None
    for k, line in enumerate(lines):
        cells = line.split("|")
        if line.startswith("| profile") and "runtime" in [c.strip() for c in cells]:
            col = [c.strip() for c in cells].index("runtime")
        elif col and line.startswith(("| t4", "| a100")):
            target = "t4" if line.startswith("| t4") else "a100"
            cells[col] = f" *predicted:* {minutes(notebook, target)} (table below) "
            lines[k] = "|".join(cells)
    return "\n".join(lines)


def notebook_text(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(nb["cells"][0]["source"])


def updated_notebook(path: Path) -> str:
    name = path.stem
    return with_block(with_runtime_cells(notebook_text(path), name), runtime_table_markdown(name))


def updated_guide() -> str:
    text = GUIDE.read_text()
    lines = text.split("\n")
    for k, line in enumerate(lines):
        match = re.match(r"\| (\d\d) ", line)
        nb = next((n for n in WORKLOADS if match and n.startswith(match.group(1))), None)
        if nb and "T4 / A100" not in line and line.count("|") == 6:
            cells = line.split("|")
            cells[5] = f" *predicted:* {minutes(nb, 't4')} / {minutes(nb, 'a100')} "
            lines[k] = "|".join(cells)
    return with_block("\n".join(lines), runtime_table_markdown())


def main(check: bool) -> int:
    stale = []
    for path in sorted((ROOT / "notebooks").glob("0*.ipynb")):
        new = updated_notebook(path)
        if new != notebook_text(path):
            stale.append(path.name)
            if not check:
                nb = json.loads(path.read_text())
                nb["cells"][0]["source"] = new.splitlines(keepends=True)
                path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    new = updated_guide()
    if new != GUIDE.read_text():
        stale.append(GUIDE.name)
        if not check:
            GUIDE.write_text(new)
    print(("out of date: " if check else "rewrote: ") + (", ".join(stale) or "nothing"))
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
