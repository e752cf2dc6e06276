"""Repository-wide pytest hooks: name the profile, print how long each notebook took, and (in the
rehearsals, when COURSE_LEDGER_PEAKS names a directory) save each notebook's memory-ledger peak there;
when COURSE_EXECUTED names a directory (make test's cpu stage), keep each notebook's executed outputs
there for `make site` (tools/build_site.py)."""

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

_durations: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    if report.nodeid.endswith(".ipynb") or ".ipynb::" in report.nodeid:
        _durations[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations:
        return
    profile = os.environ.get("COURSE_PROFILE") or "auto-detected"
    terminalreporter.section(f"notebook runtimes ({profile} profile)")
    for path, seconds in sorted(_durations.items()):
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}")
    terminalreporter.write_line(f"{sum(_durations.values()):7.1f} s  total")


_HEADER_RUNTIME = re.compile(r"^\| cpu [^\n]*?≈ ([\d.]+) (min|s)\b", re.M)


def _stated_cpu_seconds(path: Path) -> float:
    """The cpu runtime a lesson's header states (a solutions notebook: 30 s; a test file: 0)."""
    if path.suffix != ".ipynb":
        return 0.0
    if path.parent.name == "solutions":
        return 30.0
    header = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    match = _HEADER_RUNTIME.search(header)
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1) if match else 60.0


def pytest_collection_modifyitems(config, items):
    """Longest first, so two workers finish together: lessons by the cpu runtime their headers state, then
    the solutions, then the unit-test files, which fill in at the end (a stable sort keeps each file's items,
    a notebook's cells, in order). make test passes --no-loadscope-reorder so xdist keeps this order."""
    weight = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in weight:
            weight[path] = _stated_cpu_seconds(path)
    items.sort(key=lambda item: -weight[Path(str(item.fspath))])


def pytest_report_header(config):
    return f"course profile: {os.environ.get('COURSE_PROFILE') or 'auto-detected'}"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """After a notebook's last cell, while its kernel still runs, save the kernel's ledger peaks.

    The file is named after the notebook and the profile; ``tools/runtime_table.py --check-peaks`` compares
    it with the "peak memory" cells of the notebook's header.
    """
    out = os.environ.get("COURSE_LEDGER_PEAKS")
    kernel = getattr(item.parent, "kernel", None)
    if not out or kernel is None or (nextitem is not None and nextitem.parent is item.parent):
        return
    path = Path(out) / f"{Path(str(item.parent.fspath)).stem}.{os.environ.get('COURSE_PROFILE', '')}.json"
    code = f"from course_utils import ledger as _ledger\n_ledger.save_peak({str(path)!r})"
    kernel.await_reply(kernel.execute_cell_input(code, allow_stdin=False), timeout=60)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Hand each notebook cell's outputs to tools/build_site.py (keeps notebooks whose cells all passed)."""
    report = (yield).get_result()
    out = os.environ.get("COURSE_EXECUTED")
    if out and hasattr(item, "test_outputs") and (call.when == "call" or report.failed):
        from tools.build_site import capture_cell

        capture_cell(item, report, out)
