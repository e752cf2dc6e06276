"""Data sources: a classroom directory, then the Hub, then the small samples the course ships.

Every loader in the course goes through ``load_records`` so the order is the same everywhere and
a learner always sees which source was used and how many rows came from it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

SAMPLE_DIR = Path(__file__).parent / "sample_data"


def data_dir() -> Path | None:
    """Return the classroom data directory named by ``COURSE_DATA_DIR``, if it is set."""
    value = os.environ.get("COURSE_DATA_DIR")
    return Path(value).expanduser() if value else None


def hub_allowed(profile) -> bool:
    """Use the Hub for data only on a real GPU, and never when ``HF_HUB_OFFLINE=1``.

    A rehearsal follows the GPU recipe on the CPU without network, so it reads the shipped samples;
    this is one of the few places where real hardware, not the recipe, decides.
    """
    return profile.has_gpu and os.environ.get("HF_HUB_OFFLINE") != "1"


def read_jsonl(path: Path) -> list[dict]:
    """Read one JSON object per line, naming the line of a bad record."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{i} is not valid JSON: {err}") from err
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    """Write records as JSON lines (UTF-8, Chinese kept readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def read_records(path: Path) -> list[dict]:
    """Read a .jsonl file or a .json file holding a list of records."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path} should hold a JSON list of records, not {type(data).__name__}")
    return data


def load_records(name: str, local_file: str, sample: Callable[[], list[dict]] | str,
                 hub: Callable[[], list[dict]] | None = None, use_hub: bool = False,
                 limit: int | None = None, hub_name: str = "Hugging Face Hub") -> tuple[list[dict], str]:
    """Load records from the first source that has them and say which one it was.

    Order: ``COURSE_DATA_DIR/local_file``; the Hub (``hub()``) when ``use_hub``; else the course's
    own sample (a file name in ``sample_data/`` or a function that generates the rows).
    ``hub_name`` names the online source when it is not the Hub (a raw GitHub file, say).
    Returns ``(rows, source)``.

    Taught in lesson 10, section «3 · The task: triples from Chinese sentences».
    """
    root = data_dir()
    if root is not None and (root / local_file).exists():
        rows, source = read_records(root / local_file), f"COURSE_DATA_DIR ({root / local_file})"
    elif hub is not None and use_hub:
        rows, source = hub(), hub_name
    elif callable(sample):
        rows, source = sample(), "course generator (offline sample)"
    else:
        rows, source = read_records(SAMPLE_DIR / sample), f"course sample ({sample})"
    rows = rows[:limit] if limit is not None else rows
    print(f"{name}: {len(rows)} rows from {source}")
    return rows, source


def clamp_split(n_train: int, n_eval: int, available: int) -> tuple[int, int]:
    """Shrink a train/held-out request to ``available`` rows, keeping the held-out share, and say so.

    A profile asks for counts; a data set (after dropping over-long records) may hold fewer.

    Taught in lesson 07, section «3 · Instruction data, through the chat template».
    """
    if n_train + n_eval <= available:
        return n_train, n_eval
    if available < 2:
        raise ValueError(f"need at least 2 rows to split into train and held-out, have {available}")
    new_eval = min(available - 1, max(1, round(available * n_eval / (n_train + n_eval))))
    print(f"data set holds {available:,} usable rows, fewer than {n_train:,} + {n_eval:,}: "
          f"using {available - new_eval:,} for training and {new_eval:,} held out")
    return available - new_eval, new_eval


def split_train_eval(rows: list, n_eval: int, seed: int = 0) -> tuple[list, list]:
    """Shuffle with a fixed seed and hold out ``n_eval`` rows (at least one left for training).

    Taught in lesson 07, section «3 · Instruction data, through the chat template».
    """
    if not 0 < n_eval < len(rows):
        raise ValueError(f"n_eval must be between 1 and {len(rows) - 1}, got {n_eval}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]
