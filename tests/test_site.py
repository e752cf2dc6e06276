"""The course website (`make site`, tools/build_site.py): what it is built from, and the built site in Chromium.

The first tests need no site: a notebook's executed copy is kept only when every cell passed, and is
used only while its code cells and course_utils are the ones that ran. The last one opens the built
site (COURSE_SITE_DIR, or build/site) in headless Chromium, served over HTTP on this machine: the landing
page, its syllabus links, a lesson page whose plots load, and no error output on any page. `make test`
builds the site from its own cpu run (`make test-site`) and sets COURSE_SITE_DIR, so there a missing
site fails instead of skipping.
"""

import copy
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import build_site  # noqa: E402

NOTEBOOK = ROOT / "notebooks" / "00_setup_check.ipynb"
PLOT_LESSON = "05_nf4_quantization"  # draws several matplotlib figures
# Debian's Chromium (apt-get install chromium chromium-driver; .ci/run does), or the Chrome of a CI image.
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")


def _nbval_run(nb, tmp_path, outcomes, notebook=NOTEBOOK):
    """Feed capture_cell what nbval hands it for each code cell: (item, report) with the given outcomes."""
    parent = SimpleNamespace(nodeid=f"fake-nbval-run/{notebook.name}", nb=nb, fspath=str(notebook))
    code = [c for c in nb.cells if c.cell_type == "code"]
    for num, (_cell, outcome) in enumerate(zip(code, outcomes, strict=True)):
        outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"cell {num}\n")]
        item = SimpleNamespace(parent=parent, cell_num=num, test_outputs=outputs)
        report = SimpleNamespace(passed=outcome == "passed", skipped=outcome == "skipped", failed=outcome == "failed")
        build_site.capture_cell(item, report, str(tmp_path))
    return tmp_path / notebook.name


def test_a_passing_run_is_kept_with_its_outputs_and_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    n = sum(c.cell_type == "code" for c in nb.cells)
    path = _nbval_run(nb, tmp_path, ["passed"] * (n - 1) + ["skipped"])
    kept = nbformat.read(str(path), as_version=4)
    code = [c for c in kept.cells if c.cell_type == "code"]
    assert [c.outputs[0].text for c in code] == [f"cell {i}\n" for i in range(n)]
    assert [c.execution_count for c in code] == [*range(1, n), None]  # the skipped cell did not run
    meta = kept.metadata[build_site.META]
    assert meta["profile"] == "cpu" and re.fullmatch(r"[0-9a-f]{40}", meta["commit"]), meta
    assert meta["executed_by"].startswith("make test")
    assert build_site.staleness(NOTEBOOK, tmp_path) is None


def test_a_failing_cell_keeps_no_copy_and_removes_the_older_one(tmp_path):
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    n = sum(c.cell_type == "code" for c in nb.cells)
    path = _nbval_run(nb, tmp_path, ["passed"] * n)
    assert path.exists()
    _nbval_run(nb, tmp_path, ["passed"] * (n - 2) + ["failed", "passed"])
    assert not path.exists(), "a failed run left a page to be built from an older run"
    assert build_site.staleness(NOTEBOOK, tmp_path) == "no executed copy"


def test_a_copy_is_stale_when_a_code_cell_changed_but_not_when_only_prose_did(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    monkeypatch.setattr(build_site, "NOTEBOOKS", tmp_path / "notebooks")
    notebook = tmp_path / "notebooks" / NOTEBOOK.name  # the committed notebook, edited after the run
    notebook.parent.mkdir()
    shutil.copy(NOTEBOOK, notebook)
    nb = nbformat.read(str(notebook), as_version=4)
    executed = tmp_path / "executed"
    _nbval_run(nb, executed, ["passed"] * sum(c.cell_type == "code" for c in nb.cells), notebook)
    assert build_site.staleness(notebook, executed) is None
    prose = copy.deepcopy(nb)
    next(c for c in prose.cells if c.cell_type == "markdown").source = "# edited prose"
    nbformat.write(prose, str(notebook))
    assert build_site.staleness(notebook, executed) is None  # the page takes its prose from the notebook
    edited = copy.deepcopy(nb)
    [c for c in edited.cells if c.cell_type == "code"][-1].source += "\nx = 1"
    nbformat.write(edited, str(notebook))
    assert build_site.staleness(notebook, executed) == "its code cells differ from the notebook's"
    nbformat.write(nb, str(notebook))
    monkeypatch.setattr(build_site, "course_utils_sha256", lambda: "0" * 64)
    assert build_site.staleness(notebook, executed) == "course_utils changed since it ran"


def test_make_site_executes_a_notebook_and_a_failing_cell_fails_it(tmp_path, monkeypatch):
    """The path for a notebook without a current copy: nbclient in the notebook's folder, cpu profile."""
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setattr(build_site, "NOTEBOOKS", tmp_path / "notebooks")
    notebook = tmp_path / "notebooks" / "99_tiny.ipynb"
    notebook.parent.mkdir()
    code = "import os\nprint(os.environ['COURSE_PROFILE'], os.getcwd())"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), str(notebook))
    build_site.execute(str(notebook), str(tmp_path / "executed"))
    kept = nbformat.read(str(tmp_path / "executed" / notebook.name), as_version=4)
    assert kept.cells[0].outputs[0].text == f"cpu {notebook.parent}\n"
    assert kept.metadata[build_site.META]["executed_by"].startswith("make site")
    assert build_site.staleness(notebook, tmp_path / "executed") is None
    broken = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("assert 1 + 1 == 3, 'wrong'")])
    nbformat.write(broken, str(notebook))
    with pytest.raises(CellExecutionError, match="wrong"):
        build_site.execute(str(notebook), str(tmp_path / "executed"))
    assert build_site.staleness(notebook, tmp_path / "executed") == "its code cells differ from the notebook's"


def test_widget_views_become_a_note_and_progress_bars_go():
    bar = {"output_type": "display_data", "metadata": {},
           "data": {build_site.WIDGET: {"model_id": "a"}, "text/plain": "Loading weights:   0%|   | 0/272"}}
    widget = {"output_type": "execute_result", "metadata": {}, "execution_count": 3,
              "data": {build_site.WIDGET: {"model_id": "b"}, "text/plain": "interactive(children=(Dropdown(..."}}
    text = {"output_type": "stream", "name": "stdout", "text": "loaded in 15.2s\n"}
    shown = build_site.static_outputs([bar, text, widget])
    assert shown[0] == text and len(shown) == 2
    assert shown[1]["data"] == {"text/markdown": build_site.WIDGET_NOTE}


# ---------------------------------------------------------------- the built site in Chromium

def _site() -> Path:
    site = Path(os.environ.get("COURSE_SITE_DIR") or ROOT / "build" / "site")
    if not (site / "site-info.json").exists():
        if os.environ.get("COURSE_SITE_DIR"):
            pytest.fail(f"COURSE_SITE_DIR={site} holds no built site (make site)")
        pytest.skip("no built site: run make site (make test builds it)")
    return site


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--no-first-run", "--window-size=1280,900"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def _title(notebook: str) -> str:
    """A notebook's title as a page shows it: its first line, without the '# ' and the Markdown marks."""
    line = json.loads((ROOT / notebook).read_text())["cells"][0]["source"][0]
    return re.sub(r"[`*]", "", line.lstrip("# ")).strip()


@pytest.fixture
def served():
    """Yield (site dir, base URL) with the site served by a local HTTP server, as GitHub Pages serves it."""
    site = _site()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# The images of a page's cell outputs: how many, and which have not loaded (naturalWidth 0).
_IMAGES_JS = """
const imgs = [...document.querySelectorAll('.cell_output img')];
return {n: imgs.length, complete: imgs.every(i => i.complete),
        broken: imgs.filter(i => i.complete && i.naturalWidth === 0).map(i => i.getAttribute('src'))};
"""


class TestBuiltSite:
    """The built site (make test-site runs these; test-cpu, which runs before the site is built, does not)."""

    def test_no_page_shows_error_output(self, served):
        """Static check of every page: MyST-NB renders an error output as a `traceback` block."""
        site, _ = served
        pages = sorted(site.rglob("*.html"))
        assert len(pages) > 5
        bad = [p.relative_to(site).as_posix() for p in pages
               if re.search(r'class="output traceback|highlight-ipythontb|"ename"', p.read_text())]
        assert bad == []

    def test_every_link_between_pages_resolves(self, served):
        """Every relative link of every page names a file of the site and, with an anchor, an id on that page."""
        site, _ = served
        ids: dict[Path, set[str]] = {}
        broken = []
        for page in sorted(site.rglob("*.html")):
            for href in re.findall(r'<a [^>]*href="([^"]+)"', page.read_text()):
                if re.match(r"^[a-z][a-z0-9+.-]*:|^#$", href):
                    continue
                path, _, anchor = href.partition("#")
                target = (page.parent / path).resolve() if path else page
                if target.is_dir():
                    target = target / "index.html"
                if not target.exists():
                    broken.append(f"{page.relative_to(site)} -> {href}")
                elif anchor and target.suffix == ".html":
                    if target not in ids:
                        ids[target] = set(re.findall(r'\bid="([^"]+)"', target.read_text()))
                    if anchor not in ids[target]:
                        broken.append(f"{page.relative_to(site)} -> {href}")
        assert broken == []

    @pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="Chromium and chromedriver are absent "
                        "(apt-get install chromium chromium-driver; .ci/run does)")
    def test_built_site_in_chromium(self, served, tmp_path):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        site, base = served
        info = json.loads((site / "site-info.json").read_text())
        lessons = [n for n in info["notebooks"] if "/solutions/" not in n]
        if not info["partial"]:
            assert len(info["notebooks"]) == len(build_site.lessons()), info["notebooks"]
        driver = _chrome()
        try:
            driver.get(f"{base}/index.html")
            assert "LoRA" in driver.find_element(By.CSS_SELECTOR, "article h1").text
            text = driver.find_element(By.TAG_NAME, "article").text
            assert "make lab" in text and "make test" in text
            # The syllabus: one row per lesson, a link to each built one, and each link opens that lesson.
            rows = driver.find_elements(By.CSS_SELECTOR, "#syllabus table tbody tr")
            assert len(rows) == len(build_site.lessons()) // 2
            links = {a.get_attribute("href") for row in rows for a in row.find_elements(By.CSS_SELECTOR, "td a")
                     if a.get_attribute("href").startswith(base) and "#" not in a.get_attribute("href")}
            assert len(links) == len(lessons), (links, lessons)
            driver.save_screenshot(str(tmp_path / "landing.png"))
            for href in sorted(links):
                driver.get(href)
                stem = href.rsplit("/", 1)[1].removesuffix(".html")
                h1 = driver.find_element(By.CSS_SELECTOR, "article h1").text.replace("#", "").strip()
                assert h1 == _title(f"notebooks/{stem}.ipynb"), href
                note = driver.find_element(By.CSS_SELECTOR, "article .admonition").text
                run = info["runs"][f"notebooks/{stem}.ipynb"]  # the run its outputs come from
                assert run["profile"] == "cpu" and run["code_sha256"] == build_site.code_sha256(
                    json.loads((ROOT / f"notebooks/{stem}.ipynb").read_text()))
                assert "cpu profile" in note and run["commit"][:10] in note and run["executed_at"][:10] in note, note
                assert "predictions" in note, note
                assert not driver.find_elements(By.CSS_SELECTOR, ".cell_output .traceback"), href
            # A lesson with plots: every image of its outputs loads.
            plot = PLOT_LESSON if f"notebooks/{PLOT_LESSON}.ipynb" in info["notebooks"] else Path(lessons[0]).stem
            driver.get(f"{base}/notebooks/{plot}.html")
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            state = WebDriverWait(driver, 30).until(lambda d: (s := d.execute_script(_IMAGES_JS))["complete"] and s)
            assert state["n"] >= 1 and state["broken"] == [], state
            driver.save_screenshot(str(tmp_path / "lesson.png"))
        finally:
            driver.quit()
