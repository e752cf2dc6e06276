"""The models the course uses, as facts: ungated copies, pre-quantized copies, download sizes.

A table, not code to read twice: the profiles, the download plans, the runtime model, ``make cache``
and the shipped configs all look a model up here.

Sizes (GB = 1e9 bytes) are the checkpoints' 16-bit safetensors weights. For Llama-3.1-8B the Hub
listing of a 16-bit export of the same weights shows 16.1 GB (huggingface.co/kbang2021/
unsloth-Meta-Llama-3.1-8B-Instruct-bnb-4bit, file unsloth.F16.gguf); the other values were taken
from the repos' file listings when the course was written. tests/test_downloads.py checks each
against the course's estimator on the shipped config (parameters x 2 bytes), so a wrong entry fails.
"""

from __future__ import annotations

UNGATED_MIRRORS = {
    # Meta's repo is gated (licence acceptance + token). Unsloth's copy holds the same weights and
    # is ungated; it is distributed under the same Llama 3.1 Community License, whose terms still apply.
    "meta-llama/Llama-3.1-8B-Instruct": "unsloth/Llama-3.1-8B-Instruct",
}

NF4_CHECKPOINTS = {
    # Pre-quantized with bitsandbytes (NF4, double quantization, uint8 storage, nothing skipped): about
    # a third of the download, for a lesson that only ever loads the model in NF4. Quantizing is
    # deterministic, so these are the bytes the course's own NF4 load of the full weights makes (a test
    # shows it on the tiny copy); models.load_model checks the checkpoint's quantization_config against
    # the course's before it loads the weights (quantization_differences).
    "unsloth/Llama-3.1-8B-Instruct": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
}

CHECKPOINT_GB = {
    "meta-llama/Llama-3.1-8B-Instruct": 16.1,
    "unsloth/Llama-3.1-8B-Instruct": 16.1,
    # NF4 weights + absmax constants + the 16-bit embeddings and head: the course's estimator for NF4
    # with double quantization (tests/test_downloads.py), not read off the Hub listing
    "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit": 5.7,
    "Qwen/Qwen2.5-1.5B-Instruct": 3.1,
    "THUDM/chatglm3-6b": 12.5,
    "microsoft/Phi-4-mini-instruct": 7.7,
    "sentence-transformers/all-MiniLM-L6-v2": 0.09,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 0.27,
}

def nf4_source(model_id: str) -> str:
    """The pre-quantized NF4 checkpoint of ``model_id`` (through its ungated copy), or ``model_id``."""
    real = UNGATED_MIRRORS.get(model_id, model_id)
    return NF4_CHECKPOINTS.get(real, model_id)


def quantized_from(model_id: str) -> str | None:
    """The full-weight model a pre-quantized NF4 checkpoint was made from (None for any other id)."""
    return {nf4: full for full, nf4 in NF4_CHECKPOINTS.items()}.get(model_id)


def original_of(model_id: str) -> str:
    """Return the gated original behind an ungated mirror (the id itself otherwise).

    The course's shipped configs and tokenizer data are filed under the original's name; a mirror
    with identical files uses them too.
    """
    model_id = quantized_from(model_id) or model_id  # a pre-quantized copy: its source's config
    return {mirror: orig for orig, mirror in UNGATED_MIRRORS.items()}.get(model_id, model_id)
