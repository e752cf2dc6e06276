"""Build the course's static website (`make site`): every notebook with its executed cpu-profile outputs.

Where the outputs come from. ``make test``'s cpu stage runs every notebook under nbval; with
``COURSE_EXECUTED=DIR`` set (the Makefile's ``test-cpu`` does), the hook in ``conftest.py`` hands each
cell's outputs to :func:`capture_cell`, which writes the executed notebook to ``DIR`` once all its cells
have run, with the profile, commit and date in its metadata. A notebook with a failing cell is not
written (and its older copy is deleted). The site is then built from those copies, so ``make test``
does not execute anything twice.

A copy is used only while it is current: the hash of the committed notebook's code cells and the hash
of ``course_utils/`` must equal the ones it recorded. Otherwise (or when there is no copy) this script
executes the committed notebook itself with nbclient, in the cpu profile, in the notebook's own folder,
and stops with an error if a cell fails. ``--only-executed`` (for development) builds only the notebooks
that have a current copy; ``--no-execute`` (``make test``) fails instead of executing.

The pages are rendered by Sphinx with MyST-NB (stored outputs, never re-executed by Sphinx) and the
sphinx-book-theme; ``docs/site/conf.py`` is the configuration. The staged sources (landing page from
the README, notebooks with their outputs, the pitfalls page and the instructor guide) go to
``build/site-src`` and the HTML to ``build/site``.

    python tools/build_site.py                    # all notebooks; executes the missing or stale ones
    python tools/build_site.py --only-executed    # only the notebooks with a current executed copy
    python tools/build_site.py --only 00 05       # only these (executed first where needed)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / ".pytest_cache" / "executed"
STAGE = ROOT / "build" / "site-src"
OUT = ROOT / "build" / "site"
CONF_DIR = ROOT / "docs" / "site"
DOCS = ["docs/PITFALLS.md", "docs/INSTRUCTOR_GUIDE.md"]
PROFILE = "cpu"
# What the cpu stage of make test runs under (Makefile TEST_ENV); the site's own executions use the same.
RUN_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "TORCHDYNAMO_DISABLE": "1", "COURSE_PROFILE": PROFILE}
CELL_TIMEOUT_S = 900  # pyproject's --nbval-cell-timeout
META = "course_site"  # the notebook metadata key of an executed copy's provenance


# ---------------------------------------------------------------- provenance and freshness

def lessons() -> list[Path]:
    """Lessons in syllabus order (00, 01, ...), then their solutions in the same order."""
    lesson = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return lesson + sorted((NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.ipynb"))


def code_sha256(nb: dict) -> str:
    """Hash of a notebook's code cells' sources, in order: what its outputs depend on in the notebook."""
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in nb["cells"] if c["cell_type"] == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def course_utils_sha256() -> str:
    """Hash of the helper package's files (code and sample data): what every notebook's outputs depend on."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "course_utils"], capture_output=True)
    tracked = [ROOT / name for name in listed.stdout.decode().split("\0") if name]  # not caches a run leaves
    files = tracked or [p for p in (ROOT / "course_utils").rglob("*") if "__pycache__" not in p.parts]
    h = hashlib.sha256()
    for path in sorted(p for p in files if p.is_file()):
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


_GIT: dict | None = None


def git_info() -> dict:
    """The checkout's commit, its date, and whether tracked files differ from it."""
    global _GIT
    if _GIT is None:
        def git(*args):
            done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
            return done.stdout.strip() if done.returncode == 0 else ""
        _GIT = {"commit": git("rev-parse", "HEAD") or "unknown",
                "commit_date": git("log", "-1", "--format=%cI"),
                "local_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}
    return _GIT


def provenance(nb: dict, executed_by: str, seconds: float, profile: str | None = None) -> dict:
    return {"profile": profile or os.environ.get("COURSE_PROFILE") or "auto-detected", **git_info(),
            "executed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "executed_by": executed_by, "seconds": round(seconds, 1),
            "code_sha256": code_sha256(nb), "course_utils_sha256": course_utils_sha256()}


def executed_path(notebook: Path, executed: Path = EXECUTED) -> Path:
    return executed / notebook.resolve().relative_to(NOTEBOOKS)


def staleness(notebook: Path, executed: Path = EXECUTED) -> str | None:
    """None when the executed copy of `notebook` is current, else why it cannot be used."""
    path = executed_path(notebook, executed)
    if not path.exists():
        return "no executed copy"
    meta = json.loads(path.read_text()).get("metadata", {}).get(META, {})
    committed = json.loads(notebook.read_text())
    if meta.get("profile") != PROFILE:
        return f"executed in the {meta.get('profile')!r} profile, not {PROFILE!r}"
    if meta.get("code_sha256") != code_sha256(committed):
        return "its code cells differ from the notebook's"
    if meta.get("course_utils_sha256") != course_utils_sha256():
        return "course_utils changed since it ran"
    return None


def _write_atomically(path: Path, nb) -> None:
    import nbformat

    nbformat.validate(nb)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    nbformat.write(nb, str(tmp))
    tmp.replace(path)


# ---------------------------------------------------------------- capture during make test (conftest.py)

_RUNS: dict[str, dict] = {}


def capture_cell(item, report, out_dir: str) -> None:
    """Record one nbval cell's outcome and outputs; after a notebook's last cell, write or drop its copy.

    `item` is an nbval ``IPyNbCell`` (``item.test_outputs``: the outputs its kernel sent, streams merged),
    `report` its setup or call report. Called from ``pytest_runtest_makereport`` in ``conftest.py``.
    """
    parent = item.parent
    run = _RUNS.setdefault(parent.nodeid, {"cells": {}, "start": time.time()})
    ok = report.passed or (report.skipped and not hasattr(report, "wasxfail"))  # an nbval "skip" cell is fine
    run["cells"][item.cell_num] = (report.passed, list(item.test_outputs or [])) if ok else None
    code_cells = [c for c in parent.nb.cells if c.cell_type == "code"]
    if len(run["cells"]) < len(code_cells):
        return
    del _RUNS[parent.nodeid]
    target = executed_path(Path(str(parent.fspath)), Path(out_dir))
    if any(outputs is None for outputs in run["cells"].values()):
        target.unlink(missing_ok=True)  # never leave an older run in place of a failed one
        return
    nb = copy.deepcopy(parent.nb)
    count = 0
    for num, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        ran, outputs = run["cells"][num]
        cell.outputs = copy.deepcopy(outputs)
        if ran:
            count += 1
            cell.execution_count = count
            for out in cell.outputs:
                if out.output_type == "execute_result":
                    out.execution_count = count
    nb.metadata[META] = provenance(nb, "make test (pytest + nbval)", time.time() - run["start"])
    try:
        _write_atomically(target, nb)
    except Exception as err:  # noqa: BLE001 - the test run goes on; make site then executes this notebook
        target.unlink(missing_ok=True)
        print(f"\nmake site: could not keep the outputs of {parent.nodeid}: {err!r}", file=sys.stderr)


# ---------------------------------------------------------------- execution by make site (nbclient)

def execute(notebook: str, executed: str) -> tuple[str, float]:
    """Execute a committed notebook in the cpu profile (nbclient, nbval's kernel); keep its copy."""
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

    path = Path(notebook)
    nb = nbformat.read(str(path), as_version=4)
    start = time.time()
    km = AsyncKernelManager(kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_spec_manager=NbvalKernelspecManager())
    cwd = {"metadata": {"path": str(path.parent)}}  # the notebook's own folder, as under nbval
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, resources=cwd)
    client.execute(env={**os.environ, **RUN_ENV})  # raises CellExecutionError on the first failing cell
    nb.metadata.pop("widgets", None)  # as in a test run: the page shows no live widgets
    nb.metadata[META] = provenance(nb, "make site (nbclient)", time.time() - start, PROFILE)
    _write_atomically(executed_path(path, Path(executed)), nb)
    return notebook, time.time() - start


def execute_missing(notebooks: list[Path], executed: Path, jobs: int) -> None:
    """Execute the notebooks, `jobs` at a time, each in a fresh Python process; exit listing every failure."""
    from concurrent.futures import ThreadPoolExecutor

    print(f"make site: executing {len(notebooks)} notebook(s) in the {PROFILE} profile, {jobs} at a time")

    def run(nb: Path) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--execute-one", nb, "--executed", executed]
        return subprocess.run(cmd, capture_output=True, text=True)

    failed = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for nb, done in zip(notebooks, pool.map(run, notebooks), strict=True):
            if done.returncode:
                failed.append(f"{nb.relative_to(ROOT)}:\n{(done.stdout + done.stderr)[-3000:]}")
            else:
                print(done.stdout.strip())
    if failed:
        sys.exit("make site: these notebooks failed to execute, no site was built:\n" + "\n\n".join(failed))


# ---------------------------------------------------------------- staging the sources

def repository_url() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.M).group(1).rstrip("/")


_LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def rewrite_links(text: str, source: Path, pages: set[Path]) -> str:
    """Point relative links to repository files that are not pages of the site at the repository."""
    def fix(m):
        target = m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve()
        if resolved in pages or resolved.is_relative_to(ROOT / "images"):
            return m.group(0)
        try:
            rel = resolved.relative_to(ROOT)
        except ValueError:
            return m.group(0)
        kind = "tree" if resolved.is_dir() else "blob"
        anchor = f"#{anchor}" if anchor else ""
        return f"{m.group(1)}{repository_url()}/{kind}/main/{rel.as_posix()}{anchor}{m.group(3)}"
    return _LINK.sub(fix, text)


def gpu_figures_note() -> str:
    guide = (ROOT / "docs" / "INSTRUCTOR_GUIDE.md").read_text()
    if "<!-- gpu-check:start -->" in guide:
        return ("The T4 and A100 figures of the header are predictions of the course's memory ledger and "
                "runtime model; a `make gpu-check` measurement is in "
                "[the instructor guide](../docs/INSTRUCTOR_GUIDE.md).")
    return ("The T4 and A100 figures of the header are *predictions*, not measurements: peak memory is the "
            "memory ledger's peak over the T4/A100 rehearsal (which `make test` runs and checks against the "
            "header), the runtime comes from `course_utils.machinery.runtime`; no `make gpu-check` "
            "measurement has been recorded yet.")


def provenance_cell(meta: dict, depth: int) -> dict:
    commit = meta["commit"][:10]
    url = f"{repository_url()}/tree/{meta['commit']}"
    changes = " plus uncommitted local changes" if meta.get("local_changes") else ""
    note = gpu_figures_note().replace("](../", "](" + "../" * depth)
    text = (f":::{{admonition}} Outputs on this page: the `{meta['profile']}` profile\n"
            f":class: note\n\n"
            f"Every output below comes from one run of this notebook in the **{meta['profile']}** profile "
            f"(SmolLM2-135M-Instruct on a CPU) by {meta['executed_by']}, at commit [`{commit}`]({url})"
            f"{changes} (committed {meta['commit_date'][:10]}), executed {meta['executed_at'][:16]}Z in "
            f"{meta['seconds']:.0f} s. {note}\n:::\n")
    return {"cell_type": "markdown", "metadata": {}, "source": text, "id": "course-site-provenance"}


WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("*An interactive widget (ipywidgets) stands here in the notebook; it needs a running kernel: "
               "open the notebook in JupyterLab or Colab to use it.*")


def static_outputs(outputs: list[dict]) -> list[dict]:
    """Outputs as a static page can show them: a widget view (no kernel here) becomes a note saying so.

    A test run saves no widget state, so the page could not draw the widget; progress bars (tqdm's widget,
    "0%|" as text at the moment it was displayed) are dropped.
    """
    shown = []
    for out in outputs:
        data = out.get("data", {})
        if WIDGET not in data:
            shown.append(out)
            continue
        text = "".join(data.get("text/plain", ""))
        if not re.search(r"\d+%\|", text):
            note = {"text/markdown": WIDGET_NOTE}
            shown.append({"output_type": "display_data", "metadata": {}, "data": note})
    return shown


def stage_notebook(notebook: Path, executed: Path, pages: set[Path]) -> dict:
    """Write the page's source: the committed cells with the executed copy's outputs and a provenance note."""
    committed = json.loads(notebook.read_text())
    ran = json.loads(executed_path(notebook, executed).read_text())
    meta = ran["metadata"][META]
    nb = copy.deepcopy(committed)
    ran_code = [c for c in ran["cells"] if c["cell_type"] == "code"]
    if errors := [o.get("ename") for c in ran_code for o in c["outputs"] if o["output_type"] == "error"]:
        sys.exit(f"make site: {notebook.relative_to(ROOT)}'s executed copy holds error outputs {errors}")
    for cell, done in zip((c for c in nb["cells"] if c["cell_type"] == "code"), ran_code, strict=True):
        cell["outputs"], cell["execution_count"] = static_outputs(done["outputs"]), done["execution_count"]
        if "bootstrap" in cell["metadata"].get("tags", []):  # Colab's install cell: folded on the page
            cell["metadata"]["tags"] = [*cell["metadata"]["tags"], "hide-input"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = rewrite_links(src, notebook, pages)
    depth = len(notebook.relative_to(ROOT).parts) - 1
    nb["cells"].insert(1, provenance_cell(meta, depth))
    nb["metadata"][META] = meta
    target = STAGE / notebook.relative_to(ROOT)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return meta


def readme_section(readme: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", readme, re.M | re.S)
    return m.group(1).strip()


def landing_page(built: list[Path], metas: dict[Path, dict], partial: bool) -> str:
    """The landing page: the README's introduction, two commands and syllabus (with GPU runtimes), the nav."""
    sys.path.insert(0, str(ROOT))
    from course_utils.machinery.profiles import PROFILES
    from course_utils.machinery.runtime import WORKLOADS, predict_runtime

    readme = (ROOT / "README.md").read_text()
    title = readme.splitlines()[0]
    paragraphs = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip().split("\n\n")
    intro = "\n\n".join(par for par in paragraphs if "make site" not in par)  # not the link to this site
    commands = readme_section(readme, "Two commands").split("\n\n`make lab` prints", 1)[0]
    syllabus = readme_section(readme, "Syllabus")
    table, _, after = syllabus.partition("\n\n")
    rows = table.splitlines()
    cpu = "| cpu runtime (2 cores) |"
    out_rows = [rows[0].replace(cpu, f"{cpu} T4 runtime (predicted) | A100 runtime (predicted) |"),
                rows[1] + "---|---|"]
    for row in rows[2:]:
        m = re.search(r"\]\((notebooks/([0-9]{2}_[^)]+)\.ipynb)\)", row)
        stem = m.group(2)
        cells = row.split(" | ")
        cpu_at = 3
        gpu = [f"≈ {predict_runtime(stem, PROFILES[t])['total']:.0f} min" if stem in WORKLOADS else "–"
               for t in ("t4", "a100")]
        cells[cpu_at + 1:cpu_at + 1] = gpu
        row = " | ".join(cells)
        if ROOT / m.group(1) not in built:
            row = row.replace(f"]({m.group(1)})", "](#not-built)")
        out_rows.append(row)
    pages = {p.resolve() for p in built} | {(ROOT / d).resolve() for d in DOCS}
    after = rewrite_links(after, ROOT / "README.md", pages)
    commits = sorted({(m["commit"][:10], m["executed_by"]) for m in metas.values()})
    runs = "; ".join(f"commit `{c}` by {by}" for c, by in commits) or "none"
    lesson_pages = [p for p in built if p.parent == NOTEBOOKS]
    solution_pages = [p for p in built if p.parent != NOTEBOOKS]

    def toctree(caption: str, paths: list[str]) -> str:
        return "```{toctree}\n:caption: " + caption + "\n:hidden:\n\n" + "\n".join(paths) + "\n```\n"

    parts = [
        title, "", intro, "",
        "## Two commands", "", commands, "",
        "## Syllabus", "", "\n".join(out_rows), "", after, "",
        "## About these pages", "",
        f"Each notebook page shows the outputs of a real run of the committed notebook in the **{PROFILE}** "
        f"profile (SmolLM2-135M-Instruct on a CPU, data the course ships): {runs}. Pages are built only "
        "from a run whose every cell passed, on the same code cells and `course_utils` as the page; each "
        "page names its run's commit and date. The T4 and A100 runtimes above and in the headers are "
        "predictions of `course_utils.machinery.runtime`, and the GPU peak memories are the memory ledger's, "
        "checked by the rehearsals; `make gpu-check` measures them on a GPU "
        "([instructor guide](docs/INSTRUCTOR_GUIDE.md)).", "",
    ]
    if partial:
        missing = [p.relative_to(ROOT).as_posix() for p in lessons() if p not in built]
        parts += ["(not-built)=", "### Not in this build", "",
                  "A development build (`--only-executed` or `--only`) leaves out "
                  + ", ".join(f"`{m}`" for m in missing) + ".", ""]
    parts += [toctree("Lessons", [p.relative_to(ROOT).with_suffix("").as_posix() for p in lesson_pages]),
              toctree("Solutions", [p.relative_to(ROOT).with_suffix("").as_posix() for p in solution_pages]),
              toctree("Reference", [Path(d).with_suffix("").as_posix() for d in DOCS])]
    return "\n".join(parts)


def stage(built: list[Path], executed: Path, partial: bool) -> dict[Path, dict]:
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    shutil.copytree(ROOT / "images", STAGE / "images")
    pages = {p.resolve() for p in built} | {(ROOT / d).resolve() for d in DOCS}
    metas = {nb: stage_notebook(nb, executed, pages) for nb in built}
    for doc in DOCS:
        target = STAGE / doc
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite_links((ROOT / doc).read_text(), ROOT / doc, pages))
    (STAGE / "index.md").write_text(landing_page(built, metas, partial))
    return metas


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executed", type=Path, default=EXECUTED, help="where the executed copies are")
    parser.add_argument("--out", type=Path, default=OUT, help="where the HTML goes")
    parser.add_argument("--only-executed", action="store_true",
                        help="development: build only the notebooks with a current executed copy")
    parser.add_argument("--no-execute", action="store_true",
                        help="fail where a notebook has no current copy (make test runs nothing twice)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="development: build only the notebooks whose file names start with these")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("SITE_JOBS", "2")),
                        help="notebooks executed at a time")
    parser.add_argument("--execute-one", type=Path, help=argparse.SUPPRESS)  # execute_missing's worker
    args = parser.parse_args(argv)
    if args.execute_one:
        _, seconds = execute(str(args.execute_one), str(args.executed.resolve()))
        print(f"make site: executed {args.execute_one.resolve().relative_to(ROOT)} in {seconds:.0f} s")
        return 0
    start = time.time()
    executed = args.executed.resolve()
    wanted = [nb for nb in lessons() if not args.only or nb.name.startswith(tuple(args.only))]
    todo = {nb: why for nb in wanted if (why := staleness(nb, executed))}
    for nb, why in todo.items():
        print(f"make site: {nb.relative_to(ROOT)}: {why}")
    if todo and args.no_execute:
        sys.exit("make site --no-execute: run make test-cpu first (it keeps every notebook's outputs)")
    if todo and not args.only_executed:
        execute_missing(list(todo), executed, args.jobs)
        if still := [nb for nb in todo if staleness(nb, executed)]:
            sys.exit(f"make site: no current executed copy after executing: {still}")
        todo = {}
    built = [nb for nb in wanted if nb not in todo]
    if not built:
        sys.exit("make site: no notebook has a current executed copy (run make test-cpu)")
    partial = len(built) < len(lessons())
    metas = stage(built, executed, partial)
    shutil.rmtree(args.out, ignore_errors=True)
    doctrees = ["-d", str(STAGE.parent / "site-doctrees")]  # Sphinx's cache, not published with the pages
    sphinx = [sys.executable, "-m", "sphinx", "-b", "html", "-q", *doctrees, "-c", str(CONF_DIR), str(STAGE)]
    if subprocess.run([*sphinx, str(args.out)]).returncode:
        sys.exit("make site: sphinx-build failed")
    (args.out / "site-info.json").write_text(json.dumps({
        "notebooks": [nb.relative_to(ROOT).as_posix() for nb in built], "partial": partial,
        "profile": PROFILE, **git_info(),
        "runs": {nb.relative_to(ROOT).as_posix(): meta for nb, meta in metas.items()}}, indent=1) + "\n")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"make site: {len(built)} notebooks, {args.out}/index.html, {size / 1e6:.1f} MB, "
          f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
