"""Refresh Colab's recorded package list, then rebuild the Colab install's constraints from it.

    python tools/refresh_colab_freeze.py                    # fetch the newest list (github.com), rebuild
    python tools/refresh_colab_freeze.py --commit SHA       # a given version of the list
    python tools/refresh_colab_freeze.py --constraints-only # rebuild from the recorded list (PyPI only)

1. Fetch: Google publishes the GPU runtime's ``pip freeze`` as pip-freeze.gpu.txt in the public
   repository googlecolab/backend-info. The file is written to tools/colab/pip-freeze.gpu.txt under a
   header with its source, commit, date and Python. Without github.com the tool says so and changes
   nothing (exit 2).
2. Rebuild tools/colab/constraints.txt, the course's pins on Colab (tools/colab_install.py): pip
   resolves the bootstrap's command against the list with only the course's libraries pinned (the
   rest as Colab has it); each package it must then replace (a range rejects Colab's version) or add
   gets its tested version from constraints.txt; a second resolution checks that those pins replace
   nothing more. Needs PyPI.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import colab_install  # noqa: E402
import colab_resolve as cr  # noqa: E402

REPO, PATH = "googlecolab/backend-info", "pip-freeze.gpu.txt"
CONSTRAINTS = ROOT / colab_install.COLAB_CONSTRAINTS


class Unreachable(Exception):
    pass


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise Unreachable(f"{url}: {getattr(e, 'reason', e)}") from e


def fetch(commit: str | None = None, timeout: float = 20) -> tuple[str, str, str]:
    """Return (text, commit, date) of pip-freeze.gpu.txt, the newest version or ``commit``'s."""
    api = f"https://api.github.com/repos/{REPO}/commits?path={PATH}&per_page=1"
    if commit:
        api = f"https://api.github.com/repos/{REPO}/commits/{commit}"
    info = json.loads(_get(api, timeout))
    info = info[0] if isinstance(info, list) else info
    sha, date = info["sha"], info["commit"]["committer"]["date"][:10]
    text = _get(f"https://raw.githubusercontent.com/{REPO}/{sha}/{PATH}", timeout).decode()
    return text, sha, date


def python_of(text: str) -> str:
    """Colab's Python, from the cp3XY tags of the list's wheel URLs (3.12 when there are none)."""
    tags = re.findall(r"-cp3(\d+)-", text)
    return f"3.{max(tags, key=int)}" if tags else "3.12"


def with_header(text: str, sha: str, date: str, today: str) -> str:
    return ("# Colab's GPU runtime as Google publishes it: `pip freeze`, copied verbatim below this header.\n"
            f"# source: https://github.com/{REPO}/blob/{sha}/{PATH}\n"
            f"# commit: {sha}\n# date: {date}\n# python: {python_of(text)}\n"
            f"# Refresh with `python tools/refresh_colab_freeze.py` (needs github.com); recorded {today};\n"
            "# tests/test_colab_resolution.py resolves the bootstrap's pip command against this list.\n"
            + text)


def _resolve_with(pins: dict[str, str], freeze: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "constraints.txt"
        trial.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))

        def args(_tmp, keep, _colab):
            (step,) = colab_install.pip_steps(ROOT, keep, has_gpu=True)
            step[step.index(str(ROOT / colab_install.COLAB_CONSTRAINTS))] = str(trial)
            return step

        result = cr.run_resolution(args, freeze)
    if result["report"] is None:
        raise SystemExit("pip cannot resolve the course on Colab:\n"
                         + "\n".join(colab_install.messages(result["output"])[-60:]))
    return result


def build_constraints(freeze: Path = cr.FREEZE) -> str:
    """The text of tools/colab/constraints.txt for the recorded list ``freeze``."""
    tested = cr.tested_pins_of(ROOT / "constraints.txt")
    colab, header = cr.read_freeze(freeze)
    libs = {n: tested[n] for n in cr.COURSE_LIBRARIES}
    first = _resolve_with(libs, freeze)
    why = cr.reasons(first["report"], colab, libs, cr.course_requirements())
    swaps = cr.replaced(first["report"], colab)
    if set(swaps) - set(why):
        raise SystemExit(f"pip replaces {sorted(set(swaps) - set(why))} with no range asking for it")
    pins, notes = dict(libs), {n: "course library" for n in libs}
    for item in first["report"]["install"]:
        name = cr.norm(item["metadata"]["name"])
        if name in pins or name not in tested:
            continue
        pins[name] = tested[name]
        notes[name] = f"Colab has {colab[name]}: {why[name]}" if name in colab else "not on Colab"
    second = _resolve_with(pins, freeze)
    more = set(cr.replaced(second["report"], colab)) - set(swaps)
    if more:
        raise SystemExit(f"the tested versions would also replace {sorted(more)}: pin fewer")
    lines = [
        "# The course's pins on Colab (tools/colab_install.py): its own libraries at their tested versions",
        "# (constraints.txt), and the tested version of each package Colab lacks or ships at a version a",
        "# range rejects. Nothing else: pip keeps every other package as Colab has it.",
        f"# Built by tools/refresh_colab_freeze.py from Colab's list of {header.get('date', '?')}"
        f" ({header.get('commit', '?')[:12]}); do not edit by hand.",
    ]
    width = max(len(f"{n}=={v}") for n, v in pins.items())
    lines += [f"{f'{n}=={v}':<{width}}  # {notes[n]}" for n, v in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import datetime

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commit", help="a commit of googlecolab/backend-info (default: the newest)")
    ap.add_argument("--constraints-only", action="store_true",
                    help="do not fetch: rebuild tools/colab/constraints.txt from the recorded list")
    args = ap.parse_args(argv)
    if not args.constraints_only:
        _, old = cr.read_freeze()
        try:
            text, sha, date = fetch(args.commit)
        except Unreachable as e:
            print(f"cannot reach GitHub ({e}).\nNothing changed: {cr.FREEZE.relative_to(ROOT)} stays at "
                  f"commit {old.get('commit', '?')[:12]} of {old.get('date', '?')}. Run this where "
                  "github.com is reachable, or rebuild the constraints from the recorded list with "
                  "--constraints-only.", file=sys.stderr)
            return 2
        today = datetime.date.today().isoformat()
        cr.FREEZE.write_text(with_header(text, sha, date, today))
        print(f"{cr.FREEZE.relative_to(ROOT)}: commit {sha[:12]} of {date}")
    CONSTRAINTS.write_text(build_constraints())
    print(f"{CONSTRAINTS.relative_to(ROOT)} rebuilt; now check: python tools/colab_resolve.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
