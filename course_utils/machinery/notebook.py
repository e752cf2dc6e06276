"""The one call every notebook's setup cell makes."""

from __future__ import annotations

import logging
import random
import re
import warnings

import numpy as np
import torch

from ..precision import keep_cpu_4bit_differentiable
from .profiles import Profile, environment_report, get_profile

# Messages that say nothing a learner can act on; everything else stays visible.
_NOISE = (
    "MatMul8bitLt: inputs will be cast",  # int8 on CPU computes in fp16: expected, said in 03
    "To copy construct from a tensor",
)

# transformers 5.23 renamed gradient checkpointing to "activation checkpointing" and warns on the old
# names. trl 1.x and peft still call them, and the course supports transformers >= 5.0, so they stay.
_RENAMED = r"`(is_)?gradient_checkpointing\w*` is deprecated"


class _DropNoise(logging.Filter):
    """Drop log records carrying a known-noise message (bitsandbytes logs, it does not warn)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(message in record.getMessage() for message in _NOISE)


# bitsandbytes reports the fp16 cast through `logging`, once per int8 matmul: thousands of lines.
_NOISY_LOGGERS = ("bitsandbytes.autograd._functions",)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a notebook's numbers repeat run after run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_notebook(seed: int = 0, profile: str | None = None) -> Profile:
    """Seed, silence known noise, print the environment report and return the profile."""
    for message in _NOISE:
        warnings.filterwarnings("ignore", message=re.escape(message))
    warnings.filterwarnings("ignore", message=_RENAMED, category=FutureWarning)
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    seed_everything(seed)
    keep_cpu_4bit_differentiable()  # before any 4-bit layer is built: see its docstring
    _show_figures_inline()
    prof = get_profile(profile)
    environment_report(prof)
    return prof


def _show_figures_inline() -> None:
    """Let a cell that returns a matplotlib Figure (course_utils.plots) display it as a PNG.

    The plot helpers build Figures without pyplot, and IPython only knows how to show a Figure once
    pyplot's inline backend registered a formatter; without this, a returned Figure prints as text.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
        from matplotlib.figure import Figure
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: print_figure(fig, "png"))
