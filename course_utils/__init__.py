"""course_utils: the small helper package the notebooks of the LoRA/QLoRA course share.

Importing it does nothing but import: no seeding, no style changes, no network. Lesson-specific
helpers live in their own modules (``course_utils.gsm8k``, ``course_utils.evaluation``, ...).
"""

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
from .models import (
    answer_batch,
    chat,
    load_config,
    load_model,
    load_tokenizer,
    nf4_checkpoint,
    quantization_config,
    resolve_model,
)
from .notebook import seed_everything, setup_notebook
from .profiles import PROFILES, Profile, environment_report, get_profile

__all__ = [
    "PROFILES", "Profile", "answer_batch", "chat", "dtype_summary", "environment_report",
    "estimate_footprint", "fmt_bytes", "free_memory", "get_profile", "gpu_memory", "load_config",
    "load_model", "load_tokenizer", "lora_param_count", "measure_peak", "memory_now", "meta_model",
    "model_footprint", "nf4_checkpoint", "print_dtype_summary", "quantizable_linears", "quantization_config",
    "resolve_model", "seed_everything", "setup_notebook", "training_memory_bill",
]
__version__ = "0.1.0"
