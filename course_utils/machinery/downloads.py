"""What each notebook downloads on a GPU profile, so a learner sees the bill before paying it.

On Colab every notebook starts on a fresh VM and downloads its models again. ``from_pretrained``
reads only what it loads: config.json, generation_config.json, the tokenizer files, and the
safetensors shards listed in model.safetensors.index.json. It never fetches a repository's
``original/`` folder (Meta's consolidated .pth, another 16 GB for Llama-3.1-8B) or GGUF copies;
``tools/stage_cache.py`` skips the same files with ``IGNORE``.

The models' sizes and copies are in ``course_utils.registry``; which roles each notebook downloads,
in ``runtime.WORKLOADS`` (the runtime model predicts the same downloads).
"""

from __future__ import annotations

from ..memory import checkpoint_gb
from ..registry import fmt_gb, nf4_source
from .runtime import WORKLOADS

GPU_TARGETS = ("t4", "l4", "a100")


def download_roles(notebook: str, target: str) -> tuple:
    """The roles whose weights a notebook downloads on ``target``: ``runtime.WORKLOADS``' roles, where
    "chat_nf4" (the lessons that load the chat model only in NF4) is its pre-quantized copy."""
    return WORKLOADS[notebook].roles_on(target)


NOTEBOOK_ROLES = {nb: tuple(dict.fromkeys("chat" if r == "chat_nf4" else r for t in GPU_TARGETS
                                           for r in download_roles(nb, t))) for nb in WORKLOADS}
"""notebook -> the profile roles whose weights it loads (configs of other models are a few KB)."""
NF4_ONLY = {nb: targets for nb in WORKLOADS
            if (targets := tuple(t for t in GPU_TARGETS if "chat_nf4" in download_roles(nb, t)))}
"""notebook -> the GPU recipes on which it loads the chat model only in NF4, and downloads its
pre-quantized copy (``registry.MODELS``' ``nf4``). The other lessons quantize the weights themselves
(int8 vs NF4 vs FP4, code books, merges) or load them in 16 bits, and need the full weights."""


def download_plan(notebook: str, profile) -> list[tuple[str, float | None]]:
    """Return (Hub id, GB) for each checkpoint a notebook downloads under ``profile``.

    Models that come from the course's wheels (cpu profile) or are built locally (rehearsals) are
    not downloads: they are left out. The sizes are the registry's (``memory.checkpoint_gb``).
    """
    plan = []
    for role in download_roles(notebook, profile.target):
        model_id = profile.model_id("chat" if role == "chat_nf4" else role)
        if model_id.startswith("course:"):
            continue
        if role == "chat_nf4":
            model_id = nf4_source(model_id)
        plan.append((model_id, checkpoint_gb(model_id)))
    return plan


def describe_plan(notebook: str, profile) -> str:
    """One line saying what the notebook will download, printed before any download starts."""
    plan = download_plan(notebook, profile)
    if not plan:
        return f"downloads: none ({profile.name} profile: models come with the course's packages)"
    parts = [f"{mid} ({fmt_gb(gb)} GB)" if gb is not None else f"{mid} (size unknown)" for mid, gb in plan]
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
