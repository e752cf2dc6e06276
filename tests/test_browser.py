"""Smoke test as a learner sees the course: `make lab` itself, then a notebook in headless Chromium.

JupyterLab is started by the README's first command, `make lab` (with the virtualenv these tests
run in, which `make test` has just set up), as root where the tests run as root (CI does) and as a
regular user where one can be used. Every Jupyter directory (config, data, runtime, workspaces,
settings) and HOME are fresh ones under a temporary directory, so a learner's own workspaces,
settings and running labs neither change the result nor are changed by it.
"""

import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
MAKE = shutil.which("make")
NOTEBOOK = "00_setup_check.ipynb"
OTHER_NOTEBOOK = "05_nf4_quantization.ipynb"  # left open first, as a learner's earlier session would
REGULAR_USER = "nobody"
IS_ROOT = os.geteuid() == 0

needs_make = pytest.mark.skipif(not MAKE, reason="make is absent: the tests start JupyterLab through `make lab`")


def browser_verdict(env, is_root: bool, has_apt: bool, chromium: str | None, driver: str | None,
                    has_selenium: bool) -> tuple[str, str] | None:
    """Decide what a browser test does where it cannot open a browser: None (it can), or (action, reason).

    The action is "fail" in CI (``CI=true``, as root with apt-get, where ``.ci/run`` installs Chromium:
    a missing browser there is a broken install, and a skip would let CI go green without the browser
    ever opening the course), "skip" elsewhere.
    """
    missing = [name for name, ok in (("Chromium", chromium), ("chromedriver", driver), ("selenium", has_selenium))
               if not ok]
    if not missing:
        return None
    reason = (f"{' and '.join(missing)} absent (apt-get install chromium chromium-driver and "
              "pip install -r requirements-dev.txt; .ci/run does)")
    in_ci = str(env.get("CI", "")).lower() == "true" and is_root and has_apt
    return ("fail", f"in CI the browser test must run: {reason}") if in_ci else ("skip", reason)


@pytest.fixture
def browser():
    """Fail (in CI) or skip (elsewhere) a test that needs Chromium, before anything is started."""
    verdict = browser_verdict(os.environ, IS_ROOT, bool(shutil.which("apt-get")), CHROMIUM, DRIVER,
                              importlib.util.find_spec("selenium") is not None)
    if verdict:
        action, reason = verdict
        (pytest.fail if action == "fail" else pytest.skip)(reason)


@pytest.mark.parametrize("env,is_root,has_apt,expected", [
    ({"CI": "true"}, True, True, "fail"),  # CI as .ci/run sets it up: a missing browser is a failure
    ({"CI": "True"}, True, True, "fail"),
    ({}, True, True, "skip"),  # a root shell that is not CI
    ({"CI": "true"}, False, True, "skip"),  # CI=true but no root: .ci/run could not install Chromium
    ({"CI": "true"}, True, False, "skip"),  # no apt-get
    ({"CI": "false"}, True, True, "skip"),
])
def test_a_missing_browser_fails_only_in_ci(env, is_root, has_apt, expected):
    action, reason = browser_verdict(env, is_root, has_apt, None, "/usr/bin/chromedriver", True)
    assert action == expected and "Chromium absent" in reason
    assert browser_verdict(env, is_root, has_apt, "/usr/bin/chromium", "/usr/bin/chromedriver", True) is None
    action, reason = browser_verdict(env, is_root, has_apt, "/usr/bin/chromium", "/usr/bin/chromedriver", False)
    assert action == expected and "selenium absent" in reason


def _title(notebook: str) -> str:
    """Return a notebook's title: the first line of its first cell, without the '# '."""
    return json.loads((ROOT / "notebooks" / notebook).read_text())["cells"][0]["source"][0].lstrip("# ").strip()


def _run_as_user() -> list[str]:
    """Return the command prefix that runs a program as a regular user, or skip saying why there is none."""
    if not IS_ROOT:
        return []
    runuser = shutil.which("runuser")
    if not runuser:
        pytest.skip("the tests run as root and runuser (util-linux) is absent, so no regular user can start the lab")
    try:
        pwd.getpwnam(REGULAR_USER)
    except KeyError:
        pytest.skip(f"the tests run as root and there is no user {REGULAR_USER!r} to start the lab as")
    prefix = [runuser, "-u", REGULAR_USER, "--"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", f"import jupyterlab; open({str(ROOT / 'Makefile')!r}).read()"],
        capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"the tests run as root and user {REGULAR_USER!r} cannot read the repository or run its "
                    f"virtualenv (its Python or the clone lie under /root?): {probe.stderr.strip()[-200:]}")
    return prefix


def _lab_dirs(home: Path, owner: str | None) -> dict[str, str]:
    """Make HOME and every directory Jupyter reads or writes, fresh under `home` and owned by `owner`."""
    names = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
             "JUPYTERLAB_WORKSPACES_DIR": "workspaces", "JUPYTERLAB_SETTINGS_DIR": "settings",
             "IPYTHONDIR": "ipython"}
    for path in (home, *(home / sub for sub in names.values())):
        path.mkdir(exist_ok=True)
        if owner:
            shutil.chown(path, owner)
    return {"HOME": str(home), **{var: str(home / sub) for var, sub in names.items()}}


class Lab:
    """`make lab` running in its own process group, with its output collected line by line."""

    def __init__(self, prefix: list[str], dirs: dict[str, str], port: int, as_root: bool, *variables: str):
        self.as_root = as_root
        venv = Path(sys.prefix)
        # The command a learner types, with the venv this test runs in: -o marks it as set up already,
        # so make goes straight to the lab recipe. NO_BROWSER: the test brings its own browser.
        make = [MAKE, "--no-print-directory", "-C", str(ROOT), "-o", f"{venv}/.installed", "lab",
                f"VENV={venv}", f"PORT={port}", "NO_BROWSER=1", *variables]
        self.dirs = dirs
        # Through `env` so that runuser's own HOME does not replace ours; nothing Jupyter-, make- or
        # token-related leaks in from the shell that runs the tests.
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("JUPYTER", "IPYTHON", "MAKE", "MFLAGS"))}
        self.proc = subprocess.Popen(
            [*prefix, "env", "-i", *(f"{k}={v}" for k, v in {**inherited, **self.dirs}.items()), *make],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_url(self, seconds: float) -> str:
        """Return the URL `make lab` says to open, once JupyterLab answers there."""
        deadline = time.time() + seconds
        url = None
        while time.time() < deadline and self.proc.poll() is None:
            if url is None:
                url = next((m.group(1) for line in self.lines if (m := re.search(r"open (http\S+)", line))), None)
            if url is not None:
                base, token = url.split("/lab?token=")
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)  # noqa: S310 - localhost
                    return url
                except OSError:
                    pass
            time.sleep(0.5)
        raise AssertionError(f"make lab did not serve a URL within {seconds}s (exit code {self.proc.poll()}):\n"
                             f"{self.output()}")

    def stop(self) -> None:
        """Stop make, the launcher and JupyterLab (and its kernels) as Ctrl-C in the terminal would."""
        for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture(params=["root", "regular user"])
def lab(request, tmp_path):
    """Yield (the URL it printed, the port asked for, the Lab) of a `make lab` whose PORT is taken."""
    if request.param == "root":
        if not IS_ROOT:
            pytest.skip("the tests do not run as root (CI does), so `make lab` cannot be started as root")
        prefix, home = [], tmp_path / "home"
    else:
        prefix = _run_as_user()
        # pytest's tmp_path lies under a directory only its owner may enter; this one the user will own.
        home = Path(tempfile.mkdtemp(prefix="lab-home-"))
    dirs = _lab_dirs(home, owner=REGULAR_USER if prefix else None)
    with socket.socket() as taken:  # a lab still running on the port asked for, as after a first `make lab`
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lab = Lab(prefix, dirs, port, as_root=request.param == "root")
        try:
            url = lab.wait_for_url(90)
            yield url, port, lab
        finally:
            lab.stop()
            if home.parent != tmp_path:
                shutil.rmtree(home, ignore_errors=True)


def _chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,900"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


# The notebook panel of the tab labelled arguments[0], found through the tab's data-id, and the
# first heading of that panel's first cell: that notebook's own title, whatever else is open.
_PANEL_TITLE_JS = """
const tab = [...document.querySelectorAll('#jp-main-dock-panel .lm-TabBar-tab')]
  .find(t => t.querySelector('.lm-TabBar-tabLabel')?.textContent === arguments[0]);
if (!tab) return null;
const panel = document.getElementById(tab.dataset.id);
const heading = panel && panel.querySelector('.jp-Notebook .jp-Cell .jp-RenderedMarkdown h1');
return {current: tab.classList.contains('lm-mod-current'),
        heading: heading ? heading.textContent.replace(/¶$/, '').trim() : null,
        cells: panel ? panel.querySelectorAll('.jp-Notebook .jp-Cell').length : 0};
"""


def _open_notebook(driver, base: str, token: str, notebook: str) -> dict:
    """Open a notebook by its URL and return its tab's state once its title and a second cell have rendered."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/lab/tree/{notebook}?token={token}")
    return WebDriverWait(driver, 60).until(
        lambda d: (s := d.execute_script(_PANEL_TITLE_JS, notebook)) and s["current"] and s["heading"]
        and s["cells"] >= 2 and s)  # JupyterLab renders only the cells in view, and a few at a time


def _wait_for_workspace(workspaces: Path, notebook: str, seconds: float = 20) -> None:
    """Wait until the lab has saved a workspace (its open tabs) that names `notebook`.

    JupyterLab saves the layout a moment after it changes; a page loaded before that starts from the
    last saved layout, as a learner's browser would after closing the tab too soon.
    """
    deadline = time.time() + seconds
    while not any(notebook in p.read_text() for p in workspaces.iterdir()) and time.time() < deadline:
        time.sleep(0.5)
    assert any(notebook in p.read_text() for p in workspaces.iterdir()), sorted(workspaces.iterdir())


@needs_make
def test_make_lab_renders_the_notebook_it_opened(browser, lab, tmp_path):
    url, port, proc = lab
    base, token = url.split("/lab?token=")
    output = proc.output()
    # What make lab prints: the reason for --allow-root once as root and never otherwise, the port move.
    root_notes = [line for line in output.splitlines() if line.startswith("make lab: running as root")]
    assert len(root_notes) == (1 if proc.as_root else 0), output
    assert f"port {port} is already in use" in output, output
    assert not url.startswith(f"http://127.0.0.1:{port}/"), url

    driver = _chrome()
    try:
        # A learner's earlier notebook left open, then the one the test asks for.
        other = _open_notebook(driver, base, token, OTHER_NOTEBOOK)
        assert other["heading"] == _title(OTHER_NOTEBOOK)
        workspaces = Path(proc.dirs["JUPYTERLAB_WORKSPACES_DIR"])
        _wait_for_workspace(workspaces, OTHER_NOTEBOOK)
        state = _open_notebook(driver, base, token, NOTEBOOK)
        assert state["heading"] == _title(NOTEBOOK), state
        assert driver.execute_script(_PANEL_TITLE_JS, OTHER_NOTEBOOK) is not None, "the earlier tab was closed"
        driver.save_screenshot(str(tmp_path / "jupyterlab.png"))
        # The lab keeps its workspace (the open tabs) in the test's own directory, not the learner's.
        _wait_for_workspace(workspaces, NOTEBOOK)
    finally:
        driver.quit()


@needs_make
def test_make_lab_on_every_interface_keeps_a_token(tmp_path):
    """HOST=0.0.0.0, for a remote machine: the printed URL reaches the lab from outside; no token, no entry."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lab = Lab([], _lab_dirs(tmp_path / "home", owner=None), port, IS_ROOT, "HOST=0.0.0.0")
    try:
        url = lab.wait_for_url(90)  # the printed URL, with this machine's outward address when it has one
        output = lab.output()
        assert "reachable from other machines" in output and f"ssh -N -L {port}:localhost:{port}" in output, output
        base, token = url.split("/lab?token=")
        assert len(token) >= 32, url
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/api/status", timeout=10)  # noqa: S310 - this machine
        assert refused.value.code == 403
        status = json.load(urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=10))  # noqa: S310
        assert "started" in status, status
    finally:
        lab.stop()
