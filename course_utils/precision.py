"""Precision and device arguments: the few places where real hardware, not the recipe, decides.

Notebooks follow ``profile.gpu_recipe`` so that a CPU rehearsal takes the GPU's branches. Where a
call needs to know the hardware it actually runs on (``use_cpu`` for a Trainer, the free memory of
a GPU) it goes through a function here, each with a unit test, and nowhere else.
"""

from __future__ import annotations

import torch

# Bits of stored mantissa: one unit in the last place (ulp) of x is 2**(floor(log2|x|) - bits).
_MANTISSA_BITS = {torch.float32: 23, torch.float16: 10, torch.bfloat16: 7}


def trainer_precision(profile) -> dict:
    """Return ``fp16``/``bf16``/``use_cpu`` for ``TrainingArguments``/``SFTConfig`` from a profile.

    Mixed precision follows the recipe (fp16 on a T4 and its rehearsal, bf16 on an A100 and its);
    ``use_cpu`` follows the hardware. accelerate itself runs fp16 *without* autocast and loss scaling
    on a CPU; in a rehearsal ``load_model`` turns both on (``rehearsal.enable_cpu_mixed_precision``),
    so the T4 rehearsal trains under fp16 autocast with a GradScaler, as the T4 does.
    :func:`check_amp_ready` checks the scaler's precondition (trainable parameters in fp32).
    """
    return {"fp16": profile.dtype == torch.float16, "bf16": profile.dtype == torch.bfloat16,
            "use_cpu": profile.device == "cpu"}


def check_amp_ready(model, profile) -> int:
    """Raise if fp16 training would fail on a GPU: trainable parameters must be fp32 there.

    With ``fp16=True`` the GradScaler refuses fp16 gradients ("Attempting to unscale FP16
    gradients"); peft keeps adapter weights in fp32 by default, a hand-made adapter must too.
    Returns the number of trainable parameters checked.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise RuntimeError("no trainable parameters: did the adapter get attached?")
    if profile.dtype == torch.float16:
        bad = [n for n, p in trainable if p.dtype != torch.float32]
        if bad:
            raise RuntimeError(
                f"{len(bad)} trainable tensors are not fp32 (first: {bad[0]}); fp16 mixed precision on a "
                "GPU will fail with 'Attempting to unscale FP16 gradients'. Keep trainable weights in "
                "fp32 (peft does by default; for your own module call .float() on its parameters).")
    return sum(p.numel() for _, p in trainable)


def ulp(x: torch.Tensor | float, dtype: torch.dtype) -> float:
    """Return one unit in the last place of ``dtype`` at the magnitude of ``x`` (its max |value|)."""
    mag = float(x.detach().abs().max()) if isinstance(x, torch.Tensor) else abs(float(x))
    mag = max(mag, torch.finfo(dtype).tiny)
    exponent = torch.floor(torch.log2(torch.tensor(mag, dtype=torch.float64))).item()
    return float(2.0 ** (exponent - _MANTISSA_BITS[dtype]))


def assert_close_in(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, ulps: float = 4.0,
                    what: str = "tensors") -> float:
    """Compare two tensors in fp32 with a tolerance of ``ulps`` units in the last place of ``dtype``.

    Half-precision results differ by rounding: a bf16 ulp near 16 is 0.125, so an ``atol=1e-2``
    that passes in fp32 fails on an A100 for correct code. Returns the largest absolute difference.
    """
    a, e = actual.detach().float().cpu(), expected.detach().float().cpu()
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(e.shape)}")
    tol = ulps * ulp(e, dtype)
    diff = float((a - e).abs().max()) if a.numel() else 0.0
    if not diff <= tol:
        raise AssertionError(f"{what}: max |diff| {diff:.3g} exceeds {ulps:g} ulp of {dtype} "
                             f"at |x| ≈ {float(e.abs().max()):.3g} ({tol:.3g})")
    return diff


def torch_device(profile) -> str:
    """Return the torch device a profile's tensors go to: ``cuda:0`` on a GPU, ``cpu`` otherwise.

    Taught in lesson 11, section «5 · The reference: one process, the whole global batch».
    """
    return "cuda:0" if profile.device == "cuda" else "cpu"


def free_gpu_bytes_or_budget(profile) -> int | None:
    """Return the free memory of the GPU the recipe targets: measured on a GPU, the budget in a rehearsal.

    None in the cpu profile (there is no GPU to fill; host RAM is reported elsewhere).
    """
    if profile.device == "cuda":
        return int(torch.cuda.mem_get_info()[0])
    if profile.gpu_recipe:
        return int(profile.gpu_memory_gb * 1e9)
    return None


def keep_cpu_4bit_differentiable() -> bool:
    """Turn off bitsandbytes' packed bf16 path for 4-bit layers on CPUs with AVX512-BF16; return
    whether that path was available.

    On such CPUs (recent Intel Xeons), bitsandbytes 0.50 repacks a ``Linear4bit`` weight the first
    time the layer runs in eval mode without gradients (an evaluation, a ``generate``) and from then
    on multiplies through its fused ``gemv_4bit`` kernel, which has no autograd formula: in a later
    training step no gradient flows back through the frozen 4-bit layer, so the LoRA adapters below
    it silently stop learning (QLoRA's training loss then barely falls), and the kernel computes in
    bf16 even for fp32 inputs. ``tests/test_precision.py`` shows the dropped gradient on a CPU that
    has the path.
    GPUs are not affected. Setting the layers' flag off before they are built keeps the portable
    dequantize-and-matmul path, which is what every other CPU runs.
    """
    try:
        import bitsandbytes.nn.modules as bnb_modules
    except ImportError:
        return False
    available = bool(getattr(bnb_modules, "_course_had_avx512bf16", None) or bnb_modules.has_avx512bf16())
    bnb_modules._course_had_avx512bf16 = available
    bnb_modules.has_avx512bf16 = lambda: False  # read by Linear4bit.__init__ only
    return available


FP16_MAX = float(torch.finfo(torch.float16).max)  # 65504: anything larger is inf in fp16


def check_finite(values: dict, dtype: torch.dtype, model_id: str = "this model",
                 remedy: str = "") -> dict[str, float]:
    """Raise ``FloatingPointError`` saying what to do if a value is inf or NaN; else return each max |value|.

    ``values`` maps a name ("first logits", "first loss", "training losses") to a tensor, a number or
    a list of numbers. A model trained in bf16 (Qwen2.5, Phi-4-mini) can carry activations beyond fp16's
    largest number, 65504; in fp16 they turn into inf, and the logits and the loss into inf or NaN from
    the first step on. ``remedy`` is the notebook's own advice, put before the general one.
    """
    found, bad = {}, []
    for name, value in values.items():
        t = torch.as_tensor(value).detach().float().cpu()
        finite = torch.isfinite(t)
        found[name] = float(t[finite].abs().max()) if finite.any() else float("nan")
        if not finite.all():
            bad.append(f"{name}: {int((~finite).sum())} of {t.numel()} values are inf or NaN")
    if bad:
        if dtype == torch.float16:
            general = (f"fp16 ends at {FP16_MAX:g}, and a model trained in bf16 can exceed it. Load the "
                       "weights in fp32 and keep fp16 autocast where they fit (the t4 recipe does so for the "
                       "roles in profile.fp32_weight_roles), or use a GPU with bf16 (compute capability >= 8:"
                       " L4, A100).")
        else:
            general = ("Lower the learning rate, and check that every example has tokens that carry loss (a "
                       "loss over zero tokens is NaN).")
        where = f"{model_id} in {str(dtype).removeprefix('torch.')}: "
        raise FloatingPointError(where + "; ".join(bad) + ". " + (remedy + " " if remedy else "") + general)
    return found
