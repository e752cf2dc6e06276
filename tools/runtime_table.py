"""Write the predicted GPU runtimes of `course_utils.machinery.runtime` into the headers and the guide.

docs/INSTRUCTOR_GUIDE.md gets a generated table with every part of every prediction and the
assumptions behind them, between ``<!-- runtime:start -->`` and ``<!-- runtime:end -->``; the runtime
cells of the t4/a100 rows of each notebook's header table (a total that links to that table) and the
guide's "T4 / A100 runtime" column are rewritten from the same function. Run with ``--check`` to only
report differences (the test does the same).

The "peak memory" cells of the t4/a100 rows come from the memory ledger: in ``make test`` every
rehearsal kernel saves its ledger's peaks (conftest.py, ``COURSE_LEDGER_PEAKS``), ``--check-peaks DIR``
fails when they differ from ``course_utils/sample_data/ledger_peaks.json`` (what the headers show),
and ``--peaks DIR`` (``make peaks``) takes them into that file and the headers.

    python tools/runtime_table.py          # rewrite
    python tools/runtime_table.py --check  # exit 1 if anything is out of date
    python tools/runtime_table.py --peaks DIR        # take the recorded ledger peaks, then rewrite
    python tools/runtime_table.py --check-peaks DIR  # exit 1 if a recorded peak differs from the headers
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_utils.machinery.profiles import PROFILES  # noqa: E402
from course_utils.machinery.runtime import WORKLOADS, main_model_id, predict_runtime, runtime_table_markdown  # noqa: E402

START, END = "<!-- runtime:start -->", "<!-- runtime:end -->"
GUIDE = ROOT / "docs" / "INSTRUCTOR_GUIDE.md"
GUIDE_RUNTIMES = "../docs/INSTRUCTOR_GUIDE.md#predicted-gpu-runtimes"  # from notebooks/, the headers' link
PEAKS = ROOT / "course_utils" / "sample_data" / "ledger_peaks.json"
# 11's header gives bytes per process from its own estimator (section 7); its kernel's ledger sees one process
PEAK_NOTEBOOKS = [nb for nb in WORKLOADS if nb != "11_scale_out"]


def load_peaks() -> dict:
    """{notebook: {target: {"gpu": GB, "host": GB}}}: the ledger peaks the headers show."""
    return json.loads(PEAKS.read_text()) if PEAKS.exists() else {}


def _records(directory: Path):
    """(notebook, data) of each ledger record a T4/A100 rehearsal kernel saved for a header's notebook."""
    for path in sorted(Path(directory).glob("*.json")):
        notebook = path.name.split(".")[0]
        if notebook not in PEAK_NOTEBOOKS:
            continue  # solutions and notebook 11
        data = json.loads(path.read_text())
        if data["target"] in ("t4", "a100"):  # the headers' rows (the cpu profile keeps no ledger)
            yield notebook, data


def recorded_peaks(directory: Path) -> dict:
    """Read the peaks the rehearsal kernels saved (``<notebook>.<profile>.json``), in GB to 0.1."""
    found: dict = {}
    for notebook, data in _records(directory):
        found.setdefault(notebook, {})[data["target"]] = {d: round(data[d] / 1e9, 1) for d in ("gpu", "host")}
    return found


def recorded_loads(directory: Path) -> dict:
    """{notebook: {target: loads}}: how often each rehearsal kernel loaded its notebook's main model (or a
    checkpoint it saved of it), from the ``loads`` the kernel's ledger recorded for each ``load_model``."""
    found: dict = {}
    for notebook, data in _records(directory):
        if "loads" not in data:
            continue
        model = main_model_id(notebook, PROFILES[data["target"]])
        # a checkpoint the notebook saved itself (08's merged model under outputs/) is a load of its model too
        found.setdefault(notebook, {})[data["target"]] = sum(
            n for m, n in data["loads"].items() if m == model or m.startswith("outputs/"))
    return found


def check_loads(directory: Path) -> list[str]:
    """Where ``runtime.WORKLOADS`` counts other loads of a notebook's main model than its rehearsal made."""
    differ = []
    for notebook, targets in recorded_loads(directory).items():
        for target, loads in targets.items():
            counted = WORKLOADS[notebook].n_loads(target)
            if counted != loads:
                differ.append(f"{notebook} on {target}: the rehearsal loaded "
                              f"{main_model_id(notebook, PROFILES[target])} {loads} times, the runtime model "
                              f"counts {counted} (course_utils/machinery/runtime.py WORKLOADS, loads=)")
    return differ


def memory_cell(peak: dict) -> str:
    host = f" + {peak['host']:.1f} GB host RAM" if peak["host"] else ""
    return f" *ledger prediction:* ≈ {peak['gpu']:.1f} GB GPU{host} "


def with_block(text: str, block: str, start: str = START, end: str = END) -> str:
    """Replace the text between the markers by ``block`` (appending the markers if missing)."""
    body = f"{start}\n{block}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    return text.rstrip("\n") + "\n\n" + body + "\n"


def minutes(notebook: str, target: str) -> str:
    return f"≈ {predict_runtime(notebook, PROFILES[target])['total']:.0f} min"


def with_runtime_cells(text: str, notebook: str, peaks: dict | None = None) -> str:
    """Rewrite the runtime cell (and the peak memory cell, from ``peaks``) of a header's t4 and a100 rows."""
    lines, col, mem = text.split("\n"), None, None
    peaks = (peaks or {}).get(notebook, {}) if notebook in PEAK_NOTEBOOKS else {}
    for k, line in enumerate(lines):
        cells = line.split("|")
        names = [c.strip() for c in cells]
        if line.startswith("| profile") and "runtime" in names:
            col, mem = names.index("runtime"), names.index("peak memory") if "peak memory" in names else None
        elif col and line.startswith(("| t4", "| a100")):
            target = "t4" if line.startswith("| t4") else "a100"
            cells[col] = f" *predicted:* {minutes(notebook, target)} ([how]({GUIDE_RUNTIMES})) "
            if mem and target in peaks:
                cells[mem] = memory_cell(peaks[target])
            lines[k] = "|".join(cells)
    return "\n".join(lines)


def notebook_text(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(nb["cells"][0]["source"])


def without_block(text: str) -> str:
    """Remove a generated block (and the blank line before it): the headers only link to the guide's."""
    return re.sub(r"\n*" + re.escape(START) + r".*?" + re.escape(END) + r"\n?", "\n", text, flags=re.S)


def updated_notebook(path: Path) -> str:
    return without_block(with_runtime_cells(notebook_text(path), path.stem, load_peaks()))


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


def check_peaks(directory: Path) -> int:
    """Exit status 1 (with what to do) when a recorded ledger peak differs from what the headers show."""
    shown, differ = load_peaks(), []
    for notebook, targets in recorded_peaks(directory).items():
        for target, peak in targets.items():
            if shown.get(notebook, {}).get(target) != peak:
                differ.append(f"{notebook} on {target}: the ledger's peak is {peak}, the header shows "
                              f"{shown.get(notebook, {}).get(target)} (GB)")
    if differ:
        print("The rehearsals' memory ledger no longer agrees with the notebook headers:", *differ,
              f"Take the new peaks: python tools/runtime_table.py --peaks {directory}", sep="\n  ")
    loads = check_loads(directory)
    if loads:
        print("The runtime model counts other loads than the rehearsals made:", *loads,
              "Fix the counts, then rewrite the tables: python tools/runtime_table.py", sep="\n  ")
    if differ or loads:
        return 1
    checked = sum(map(len, recorded_peaks(directory).values()))
    counted = sum(map(len, recorded_loads(directory).values()))
    print(f"ledger peaks agree with the headers ({checked} checked); the runtime model's load counts agree "
          f"with the rehearsals ({counted} checked)")
    return 0


def take_peaks(directory: Path) -> None:
    """Merge the recorded peaks into the peaks file the headers are written from."""
    peaks = load_peaks()
    for notebook, targets in recorded_peaks(directory).items():
        peaks.setdefault(notebook, {}).update(targets)
    PEAKS.write_text(json.dumps(dict(sorted(peaks.items())), indent=1, sort_keys=True) + "\n")


def main(check: bool) -> int:
    stale = []
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
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
    if "--check-peaks" in sys.argv:
        sys.exit(check_peaks(Path(sys.argv[sys.argv.index("--check-peaks") + 1])))
    if "--peaks" in sys.argv:
        take_peaks(Path(sys.argv[sys.argv.index("--peaks") + 1]))
    sys.exit(main("--check" in sys.argv))
