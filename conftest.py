"""Repository-wide pytest hooks: name the profile, print how long each notebook took."""

import os
from collections import defaultdict

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


def pytest_report_header(config):
    return f"course profile: {os.environ.get('COURSE_PROFILE') or 'auto-detected'}"
