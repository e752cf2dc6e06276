"""What each notebook downloads on a GPU profile, so a learner sees the bill before paying it.

On Colab every notebook starts on a fresh VM and downloads its models again. ``from_pretrained``
reads only what it loads: config.json, generation_config.json, the tokenizer files, and the
safetensors shards listed in model.safetensors.index.json. It never fetches a repository's
``original/`` folder (Meta's consolidated .pth, another 16 GB for Llama-3.1-8B) or GGUF copies;
``tools/stage_cache.py`` skips the same files with ``IGNORE``.

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

NOTEBOOK_ROLES = {
    # notebook -> the profile roles whose weights it loads (configs of other models are a few KB)
    "00_setup_check": ("chat",),
    "01_finetuning_taxonomy": ("chat", "small_chat"),  # small_chat: full fine-tuning vs LoRA
    "02_icl_and_rag": ("chat", "embedding"),
    "03_8bit_loading": ("chat",),
    "04_lora_math": ("chat",),
    "05_nf4_quantization": ("chat",),
    "06_lora_gsm8k": ("chat",),
    "07_qlora_llama": ("chat",),
    "08_persona_sft_zhenhuan": ("chinese_chat",),
    "09_custom_lora_chatglm": ("fused_qkv",),
    "10_scale_out": ("chinese_chat",),  # Qwen2.5-1.5B: one full copy per T4 under DDP
}

NF4_ONLY = {
    # notebook -> the GPU recipes on which it loads the chat model only in NF4: there it downloads the
    # pre-quantized checkpoint (NF4_CHECKPOINTS). 02 and 04 load 16-bit weights where they fit.
    "01_finetuning_taxonomy": ("t4", "l4", "a100"),
    "02_icl_and_rag": ("t4",),
    "04_lora_math": ("t4",),
}
"""The other lessons quantize the weights themselves (int8 vs NF4 vs FP4, code books, merges) or
load them in 16 bits, and need the full weights."""


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


def download_plan(notebook: str, profile) -> list[tuple[str, float | None]]:
    """Return (Hub id, GB) for each checkpoint a notebook downloads under ``profile``.

    Models that come from the course's wheels (cpu profile) or are built locally (rehearsals) are
    not downloads: they are left out.
    """
    plan = []
    for role in NOTEBOOK_ROLES[notebook]:
        model_id = profile.model_id(role)
        if model_id.startswith("course:"):
            continue
        if role == "chat" and profile.target in NF4_ONLY.get(notebook, ()):
            model_id = nf4_source(model_id)
        plan.append((model_id, CHECKPOINT_GB.get(model_id)))
    return plan


def describe_plan(notebook: str, profile) -> str:
    """One line saying what the notebook will download, printed before any download starts."""
    plan = download_plan(notebook, profile)
    if not plan:
        return f"downloads: none ({profile.name} profile: models come with the course's packages)"
    parts = [f"{mid} ({gb:g} GB)" if gb is not None else f"{mid} (size unknown)" for mid, gb in plan]
    total = sum(gb or 0 for _, gb in plan)
    return (f"downloads: {', '.join(parts)} = {total:.1f} GB of safetensors, config and tokenizer files "
            "(once per VM; nothing from original/)")


def quantization_differences(checkpoint: dict, wanted: dict) -> list[str]:
    """Compare a pre-quantized checkpoint's ``quantization_config`` with the course's, field by field.

    Only the fields that decide the stored bytes are compared: 4-bit at all, quant type (NF4 vs FP4),
    double quantization, storage type, and which modules were left unquantized. The compute dtype is
    not one of them: it is a loading choice that ``load_model`` sets to the profile's.
    """
    fields = ("load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_quant_storage",
              "llm_int8_skip_modules")
    defaults = {"bnb_4bit_quant_storage": "uint8"}
    diffs = []
    for name in fields:
        have, want = checkpoint.get(name, defaults.get(name)), wanted.get(name, defaults.get(name))
        if str(have).removeprefix("torch.") != str(want).removeprefix("torch."):
            diffs.append(f"{name}: checkpoint {have!r}, course {want!r}")
    return diffs
