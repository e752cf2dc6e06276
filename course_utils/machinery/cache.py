"""Where the course keeps what it builds (converted and tiny models), written safely by parallel workers.

A leaf module: it imports nothing of ``course_utils``, so both ``models`` and ``rehearsal`` can use it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def course_cache_dir() -> Path:
    """Return where the course keeps converted models: ``COURSE_CACHE_DIR`` or ~/.cache/lora-course."""
    return Path(os.environ.get("COURSE_CACHE_DIR", Path.home() / ".cache" / "lora-course"))


def publish_dir(tmp: Path, dest: Path) -> None:
    """Rename a finished ``tmp`` directory to ``dest``; if another process got there first, drop ours."""
    try:
        tmp.rename(dest)
    except OSError:
        if not dest.is_dir() or not any(dest.iterdir()):
            raise
        shutil.rmtree(tmp)
