"""setup_notebook silences known noise, and only that."""

import warnings

from course_utils.machinery.notebook import setup_notebook


def _caught(message: str, category=UserWarning) -> list:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup_notebook(seed=0, profile="cpu")
        warnings.warn(message, category, stacklevel=1)
    return caught


def test_renamed_checkpointing_warnings_are_silenced():
    for old in ("gradient_checkpointing", "is_gradient_checkpointing", "gradient_checkpointing_kwargs"):
        message = f"`{old}` is deprecated and will be removed in v6."
        # only this message counts: a fresh interpreter's first setup_notebook also warns on imports
        assert [w for w in _caught(message, FutureWarning) if str(w.message) == message] == [], old


def test_other_warnings_stay_visible():
    caught = _caught("something a learner should read", FutureWarning)
    assert [str(w.message) for w in caught] == ["something a learner should read"]
    assert len(_caught("`load_in_4bit` is deprecated", FutureWarning)) == 1


def test_setup_returns_the_profile_and_seeds(capsys):
    import torch

    profile = setup_notebook(seed=3, profile="cpu")
    first = torch.rand(2)
    setup_notebook(seed=3, profile="cpu")
    assert profile.name == "cpu" and torch.equal(first, torch.rand(2))
    assert "profile" in capsys.readouterr().out
