"""Shared fixtures: the course model is loaded once per test session (it takes about a second)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def chat_id():
    from course_utils import get_profile

    return get_profile("cpu").model_id("chat")


@pytest.fixture(scope="session")
def tokenizer(chat_id):
    from course_utils import load_tokenizer

    return load_tokenizer(chat_id)
