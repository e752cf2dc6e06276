"""Shared fixtures: the course model is loaded once per test session (it takes about a second), and a
loader for the scripts in tools/ (they are programs, not a package)."""

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def _load_tool(name: str):
    """Import ``tools/<name>.py`` as a fresh module (not entered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool("gpu_check")``: a fresh import of a script in tools/."""
    return _load_tool


@pytest.fixture(scope="session")
def chat_id():
    from course_utils import get_profile

    return get_profile("cpu").model_id("chat")


@pytest.fixture(scope="session")
def tokenizer(chat_id):
    from course_utils import load_tokenizer

    return load_tokenizer(chat_id)
