"""The one call every notebook's setup cell makes."""

from __future__ import annotations

import random
import warnings

import numpy as np
import torch

from .profiles import Profile, environment_report, get_profile

# Messages that say nothing a learner can act on; everything else stays visible.
_NOISE = (
    "MatMul8bitLt: inputs will be cast",  # int8 on CPU computes in fp16: expected, said in 03
    "To copy construct from a tensor",
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a notebook's numbers repeat run after run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_notebook(seed: int = 0, profile: str | None = None) -> Profile:
    """Seed, silence known noise, print the environment report and return the profile."""
    for message in _NOISE:
        warnings.filterwarnings("ignore", message=message)
    seed_everything(seed)
    prof = get_profile(profile)
    environment_report(prof)
    return prof
