"""course_utils: the small helper package the notebooks of the LoRA/QLoRA course share.

Importing it does nothing but import: no seeding, no style changes, no network. Two layers:

- the modules here are the helpers the lessons teach and call (memory, models, plots, stats,
  evaluation, data, and one module per lesson subject such as ``gsm8k`` or ``persona``);
- ``course_utils.machinery`` is what runs one notebook on every profile (profiles, loading a
  profile's weights, the memory ledger, rehearsals, runtime predictions, downloads, Colab setup).
  A learner can ignore it. The names below are re-exported so a notebook imports them from here.
"""

from .machinery import ledger
from .machinery.loading import load_config, load_model, load_tokenizer, nf4_checkpoint_id, resolve_model
from .machinery.notebook import seed_everything, setup_notebook
from .machinery.profiles import PROFILES, Profile, environment_report, get_profile
from .memory import (
    dtype_summary,
    estimate_footprint,
    fmt_bytes,
    free_memory,
    gpu_memory,
    lora_param_count,
    measure_peak,
    memory_now,
    meta_model,
    model_footprint,
    print_dtype_summary,
    quantizable_linears,
    training_memory_bill,
)
from .models import answer_batch, chat, quantization_config

__all__ = [
    "PROFILES", "Profile", "answer_batch", "chat", "dtype_summary", "environment_report",
    "estimate_footprint", "fmt_bytes", "free_memory", "get_profile", "gpu_memory", "ledger", "load_config",
    "load_model", "load_tokenizer", "lora_param_count", "measure_peak", "memory_now", "meta_model",
    "model_footprint", "nf4_checkpoint_id", "print_dtype_summary", "quantizable_linears",
    "quantization_config", "resolve_model", "seed_everything", "setup_notebook", "training_memory_bill",
]
__version__ = "0.1.0"
