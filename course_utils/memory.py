"""Memory: what a model weighs, measured and estimated, and what a block of code peaked at.

Estimates are computed from a model's config on PyTorch's ``meta`` device: the module tree is
built with shapes but no storage, so the footprint of an 8B model costs nothing to compute and
nobody has to download 16 GB to learn that it will not fit.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import resource
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

GiB, MB = 1024**3, 1e6
_CONFIG_DIR = Path(__file__).parent / "sample_data" / "configs"

# Bytes per weight of a quantized nn.Linear, and of the constants that come with it.
_BYTES_PER_WEIGHT = {"int8": 1.0, "nf4": 0.5, "fp4": 0.5}


def fmt_bytes(n: float | None) -> str:
    """Format a byte count for people: 538.1 MB, 14.96 GiB."""
    if n is None:
        return "n/a"
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MB:.1f} MB"


# ----------------------------------------------------------------------------- measured sizes

def _logical_numel(p: torch.Tensor) -> int:
    """Number of weights a parameter represents (a packed 4-bit tensor holds two per byte)."""
    qs = getattr(p, "quant_state", None)
    return int(torch.Size(qs.shape).numel()) if qs is not None else p.numel()


def quant_state_bytes(model: nn.Module) -> int:
    """Bytes of quantization constants that ``get_memory_footprint`` does not count.

    bitsandbytes keeps them beside the parameters: per-row scales (``SCB``) for int8, per-block
    absmax values (and, with double quantization, their own 8-bit code and scales) for 4-bit.
    """
    total = 0
    for module in model.modules():
        w = getattr(module, "weight", None)
        qs = getattr(w, "quant_state", None)
        if qs is not None:
            total += qs.absmax.numel() * qs.absmax.element_size() + qs.code.numel() * 4
            if qs.nested:
                total += qs.state2.absmax.numel() * 4 + qs.state2.code.numel() * 4
        scb = getattr(w, "SCB", None)  # int8: on the weight after loading, on .state after a forward
        if scb is None and getattr(module, "state", None) is not None:
            scb = getattr(module.state, "SCB", None)
        if scb is not None:
            total += scb.numel() * scb.element_size()
    return total


def model_footprint(model: nn.Module) -> dict[str, int]:
    """Return measured bytes: parameters+buffers (as transformers counts them), constants, total."""
    weights = model.get_memory_footprint() if hasattr(model, "get_memory_footprint") else sum(
        t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    consts = quant_state_bytes(model)
    return {"weights": weights, "quant_constants": consts, "total": weights + consts}


def dtype_summary(model: nn.Module) -> list[dict]:
    """Group parameters by storage dtype: tensors, weights represented, bytes. One row per dtype.

    Printing the dtype of every parameter gives hundreds of lines; the groups are what matter.

    Taught in lesson 03, section «4 · Full precision: load, summarise, answer, time».
    """
    groups: dict[str, dict] = defaultdict(lambda: {"tensors": 0, "params": 0, "bytes": 0})
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:  # tied weights are one tensor
            continue
        seen.add(id(p))
        kind = str(p.dtype).replace("torch.", "")
        if getattr(p, "quant_state", None) is not None:
            kind += f" (packed {p.quant_state.quant_type})"
        g = groups[kind]
        g["tensors"] += 1
        g["params"] += _logical_numel(p)
        g["bytes"] += p.numel() * p.element_size()
    total = sum(g["params"] for g in groups.values())
    return [{"dtype": k, **g, "share": g["params"] / total} for k, g in
            sorted(groups.items(), key=lambda kv: -kv[1]["bytes"])]


def print_dtype_summary(model: nn.Module) -> None:
    """Print ``dtype_summary`` as a small table."""
    print(f"{'dtype':<22}{'tensors':>8}{'params':>14}{'share':>8}{'bytes':>12}")
    for row in dtype_summary(model):
        print(f"{row['dtype']:<22}{row['tensors']:>8}{row['params']:>14,}{row['share']:>8.1%}"
              f"{fmt_bytes(row['bytes']):>12}")


# ----------------------------------------------------------------------------- live memory

def gpu_memory() -> dict[str, int] | None:
    """Return CUDA memory in bytes (allocated, reserved, peak, free, total), or None without CUDA."""
    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return {"allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved(),
            "peak": torch.cuda.max_memory_allocated(), "free": free, "total": total}


def rss_bytes() -> int:
    """Return this process's resident memory now (Linux /proc; elsewhere the lifetime peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def system_memory() -> dict[str, int]:
    """Return total and available RAM in bytes, and this process's RSS."""
    info = {"total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "available": 0}
    try:
        with open("/proc/meminfo") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        info["available"] = fields.get("MemAvailable", 0)
    except OSError:
        pass
    info["rss"] = rss_bytes()
    return info


def memory_now() -> dict[str, int]:
    """One reading to compare before/after: GPU allocated+reserved on CUDA, else process RSS."""
    gpu = gpu_memory()
    if gpu:
        return {"allocated": gpu["allocated"], "reserved": gpu["reserved"]}
    return {"rss": rss_bytes()}


def free_memory() -> None:
    """Collect garbage and hand cached memory back; call after ``del model``.

    On a GPU, PyTorch's caching allocator keeps freed blocks until ``empty_cache``. On Linux CPUs,
    glibc's malloc keeps freed heap pages in the process the same way, so the resident set size
    stays high and a later ``measure_peak`` would reuse them and look smaller than it is;
    ``malloc_trim(0)`` hands them back to the operating system.
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    _malloc_trim()


def _malloc_trim() -> None:
    """Ask glibc to return free heap memory to the OS (no-op elsewhere: macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling for its dynamic mmap threshold (64-bit)


def _mmap_large_blocks(threshold_bytes: int = 128 * 1024) -> None:
    """Make glibc serve every block over 128 KiB with its own mmap, so freeing it lowers the RSS.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which
    tensors of up to 32 MiB come from the heap and stay resident when freed: the RSS then counts
    dead tensors, and a training step measured +1.04 GB where its live tensors peaked at +0.76 GB.
    Fixing the threshold (``mallopt(M_MMAP_THRESHOLD)``) makes the RSS follow the live bytes, as
    ``torch.cuda.max_memory_allocated`` does on a GPU. No-op outside glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, threshold_bytes)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Result of ``measure_peak``: peak bytes above the start of the block, and where measured.

    ``delta`` is the peak of live tensor bytes above the start (CUDA's allocator statistics on a
    GPU, the profiler's record of every CPU allocation and free on a CPU): what the estimators
    predict. On a CPU, ``rss_delta`` is what the operating system saw (the process's resident set),
    which also counts the allocator's own caching and freed pages not yet handed back.
    """

    def __init__(self, source: str):
        self.source, self.start, self.peak, self.seconds = source, 0, 0, 0.0
        self.rss_start = self.rss_peak = 0

    @property
    def delta(self) -> int:
        return self.peak - self.start

    @property
    def rss_delta(self) -> int:
        return self.rss_peak - self.rss_start

    def __repr__(self) -> str:
        rss = f", process RSS +{fmt_bytes(self.rss_delta)}" if self.rss_peak else ""
        return (f"PeakMemory({self.source}: +{fmt_bytes(self.delta)} over the block{rss}, "
                f"{self.seconds:.1f}s)")


def peak_live_bytes(events) -> int:
    """Peak of the running sum of allocation sizes (frees are negative), starting from zero.

    ``events`` are ``(time, nbytes)`` pairs in any order; a free of a tensor allocated before the
    block lowers the sum, so the peak is taken over the block's own net allocations.
    """
    live = peak = 0
    for _, nbytes in sorted(events):
        live += nbytes
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def measure_peak(interval_s: float = 0.005):
    """Measure the peak memory of a block: live tensor bytes above the start of the block.

    On a GPU this is the caching allocator's peak statistic. A CPU has no such statistic, so the
    PyTorch profiler records every tensor allocation and free of the block
    (``profile_memory=True``) and the peak of their running sum is taken: the same quantity, so the
    estimators can be checked on a laptop. The process's resident set size is sampled beside it
    (``rss_delta``), because that is what the operating system counts against the machine's RAM;
    it is noisier (glibc keeps freed pages, the page cache comes and goes), which is why it is not
    the number the course compares with its predictions.

    Taught in lesson 07, section «7 · Training settings, and what each one buys».
    """
    result = PeakMemory("cuda allocated" if torch.cuda.is_available() else "CPU tensors")
    t0 = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result.start = torch.cuda.memory_allocated()
        try:
            yield result
        finally:
            torch.cuda.synchronize()
            result.peak = torch.cuda.max_memory_allocated()
            result.seconds = time.perf_counter() - t0
        return
    from torch.profiler import ProfilerActivity, profile

    _mmap_large_blocks()
    free_memory()
    result.rss_start = result.rss_peak = rss_bytes()
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            result.rss_peak = max(result.rss_peak, rss_bytes())
            stop.wait(interval_s)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    prof.start()
    try:
        yield result
    finally:
        prof.stop()
        stop.set()
        thread.join()
        result.rss_peak = max(result.rss_peak, rss_bytes())
        events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and str(e.device_type()) == "DeviceType.CPU"]
        result.peak = peak_live_bytes(events)
        result.seconds = time.perf_counter() - t0
        # Back to the threshold glibc's own adjustment settles at in a long-running process: with
        # every block over 128 KiB mmapped, later training steps ran ~30% slower (page faults).
        _mmap_large_blocks(MMAP_THRESHOLD_MAX)


# ----------------------------------------------------------------------------- estimates

def shipped_config(model_id: str):
    """Return the config the course ships for a Hub id (``sample_data/configs``), or None.

    The course ships the config.json of each GPU-profile model (a few KB) so estimates for
    Llama-3.1-8B work offline and on machines that will never download the weights.
    ``course_utils.load_config`` tries this first.
    """
    from transformers import AutoConfig

    from .registry import original_of  # an ungated mirror uses its original's config

    shipped = _CONFIG_DIR / (original_of(model_id).replace("/", "__") + ".json")
    if not shipped.exists():
        return None
    data = json.loads(shipped.read_text())
    model_type = data.pop("model_type")
    return AutoConfig.for_model(model_type, **data)


def meta_model(config) -> nn.Module:
    """Build a model's module tree on the meta device: shapes without storage, instantly."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@lru_cache(maxsize=8)
def real_meta(real_id: str):
    """The real model's module tree on the meta device (cached: an 8B tree takes ~2 s to build)."""
    config = shipped_config(real_id)
    if config is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(real_id)
    return meta_model(config)


@lru_cache(maxsize=32)
def _checkpoint_footprint(model_id: str, nf4: bool) -> dict[str, float] | None:
    """The estimator's bytes and parameters of a course model's checkpoint (None: no config ships)."""
    if shipped_config(model_id) is None:
        return None
    if nf4:  # NF4 weights + absmax constants + the 16-bit embeddings, norms and head
        return estimate_footprint(real_meta(model_id), "nf4", torch.float16, double_quant=True)
    return estimate_footprint(real_meta(model_id), None, torch.bfloat16)


def checkpoint_gb(model_id: str) -> float | None:
    """GB (1e9 bytes) of the weights ``from_pretrained`` downloads for one of the course's models.

    Computed from its shipped config: 16-bit weights, or for a pre-quantized copy what the course's NF4
    load stores. The row's typed ``gb`` where no config ships; None for a model the course does not know.
    """
    from .registry import model

    row = model(model_id)
    if row is not None and row.gb is not None:
        return row.gb
    footprint = _checkpoint_footprint(row.hub_id, model_id == row.nf4) if row else None
    return footprint["total"] / 1e9 if footprint else None


def param_count(model_id: str) -> int:
    """The parameters of one of the course's models (a pre-quantized copy: its source's), from its config."""
    from .registry import original_of

    footprint = _checkpoint_footprint(original_of(model_id), False)
    if footprint is None:
        raise ValueError(f"no config of {model_id} ships with the course (sample_data/configs)")
    return int(footprint["params"])


def quantizable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Return the nn.Linear layers bitsandbytes would replace: all but the output embedding."""
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m is not out_emb}


def estimate_footprint(config_or_model, quantization: str | None = None,
                       dtype: torch.dtype = torch.float32, double_quant: bool = True,
                       blocksize: int = 64) -> dict[str, float]:
    """Estimate bytes of a model's weights, quantization constants and total, from its config.

    Quantized linears cost 1 byte (int8) or 0.5 byte (4-bit) per weight; everything else stays
    in ``dtype``. Constants: int8 keeps one fp32 scale per output row; 4-bit keeps one absmax per
    block of 64 weights, fp32 (4 bytes) or, double-quantized, 1 byte plus fp32 per 256 blocks
    (and the small code books: 16 fp32 levels per layer, 256 more for the 8-bit second level).
    """
    model = config_or_model if isinstance(config_or_model, nn.Module) else meta_model(config_or_model)
    linears = quantizable_linears(model) if quantization else {}
    quantized_ids = {id(m.weight) for m in linears.values()}
    elem = torch.tensor([], dtype=dtype).element_size()
    weights = consts = 0.0
    seen: set[int] = set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in quantized_ids:
            weights += p.numel() * _BYTES_PER_WEIGHT[quantization]
            if quantization == "int8":
                consts += p.shape[0] * 4
            else:  # absmax per block, plus the 16-value code book (and DQ's 256-value one)
                blocks = p.numel() / blocksize
                consts += (blocks + blocks / 256 * 4 + 256 * 4) if double_quant else blocks * 4
                consts += 16 * 4
        else:
            weights += p.numel() * elem
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    return {"weights": weights, "quant_constants": consts, "total": weights + consts,
            "params": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())}


def lora_param_count(config_or_model, target_modules, r: int) -> int:
    """Count LoRA parameters: r * (d_in + d_out) for every linear whose name ends in a target.

    Taught in lesson 04, section «7 · Self-checks against peft».
    """
    model = config_or_model if isinstance(config_or_model, nn.Module) else meta_model(config_or_model)
    targets = tuple(target_modules)
    return sum(r * (m.in_features + m.out_features) for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.split(".")[-1] in targets)


# ----------------------------------------------------------------------------- a training run

GPU_BUDGET_GB = {"t4": 14.0, "l4": 21.0, "a100": 38.0}
"""What a run may hold on each course GPU (GB = 1e9 bytes): the card's memory less headroom for the
allocator's cache. The GPU profiles and their rehearsals' memory ledger enforce the same numbers."""

CUDA_CONTEXT_BYTES = 0.8e9
"""GPU memory the CUDA context and the kernels it loads take outside PyTorch's allocator, so outside
``torch.cuda.max_memory_allocated``: nvidia-smi showed 781 MB for a minimal PyTorch program in
pytorch/pytorch#34323 (CUDA's lazy module loading, default since 11.7, lowers it). Not measured
here (no GPU); check it on the first real run: ``torch.cuda.device_memory_used()`` minus
``torch.cuda.memory_reserved()``."""

OPTIMIZER_BYTES_PER_PARAM = {
    "adamw_torch": 8, "adamw_torch_fused": 8, "adamw": 8, "paged_adamw_32bit": 8,
    "adamw_bnb_8bit": 2, "adamw_8bit": 2, "paged_adamw_8bit": 2, "sgd": 0,
}
"""Optimizer state per trainable parameter: AdamW keeps two moments, fp32 (8 bytes) or 8-bit (2 bytes;
bitsandbytes' per-block scales add < 1%). Paged variants hold the same bytes in CUDA unified memory,
which can spill to host RAM under pressure, but not before the GPU is full: counted on the GPU."""


@dataclass(frozen=True)
class TrainingRun:
    """One training run, as every memory bill below reads it.

    ``config`` is the model's config at the scale the bill is for; ``trainable_params`` the weights that
    train (``TrainingRun.lora`` counts a LoRA adapter's). ``dtype`` is the dtype of the frozen weights and
    of the activations; ``autocast_dtype`` the 16-bit dtype mixed precision computes in, when it differs
    (fp32 weights under the Trainer's fp16/bf16 autocast; None: ``dtype``). ``seq_len`` is the longest
    sequence the run can meet: the recipe's cap, never a length measured on a sample.

    Taught in lesson 11, section «7 · Sharding: each process holds 1/N of the model».
    """

    config: object
    trainable_params: int
    batch_size: int = 1
    seq_len: int = 512
    gradient_checkpointing: bool = True
    optim: str = "adamw_torch"
    dtype: torch.dtype = torch.float32
    lora_dropout: bool = True
    autocast_dtype: torch.dtype | None = None

    def __post_init__(self):
        if self.optim not in OPTIMIZER_BYTES_PER_PARAM:
            known = ", ".join(OPTIMIZER_BYTES_PER_PARAM)
            raise ValueError(f"unknown optimizer {self.optim!r}; known: {known}")

    @classmethod
    def lora(cls, config_or_model, r: int, target_modules, **fields) -> TrainingRun:
        """The run of a LoRA adapter of rank ``r`` on ``target_modules``; ``fields`` are the other fields."""
        model = config_or_model if isinstance(config_or_model, nn.Module) else meta_model(config_or_model)
        return cls(model.config, lora_param_count(model, target_modules, r), **fields)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.autocast_dtype or self.dtype

    def describe(self) -> str:
        return (f"batch {self.batch_size} x {self.seq_len} tokens, checkpointing "
                f"{'on' if self.gradient_checkpointing else 'off'}, {self.optim}")


def _elem(dtype: torch.dtype) -> int:
    return torch.tensor([], dtype=dtype).element_size()


def activation_bytes(run: TrainingRun) -> float:
    """Estimate the activations a LoRA training step keeps for backward, in bytes.

    Per token and decoder layer the saved tensors are a multiple of the hidden size h, the MLP width
    i and the key/value width kv (SDPA attention keeps no seq x seq matrix). The multiples in
    ``_ACT_BYTES`` were counted with ``torch.autograd.graph.saved_tensors_hooks`` on Llama-style
    models with LoRA on every linear layer, varying h, i and kv one at a time: they are not half as
    large in 16-bit as in fp32, because transformers' RMSNorm keeps fp32 copies of its input (a no-op
    in fp32), and LoRA dropout saves one dropped-out copy of the input per adapted layer. LoRA on fewer
    layers saves less, so for those this is an upper bound. With gradient checkpointing each layer
    keeps only its input, and backward recomputes one layer at a time: the full set for one layer.
    """
    kept, recomputed = _activation_parts(run)
    return kept + recomputed


def _activation_parts(run: TrainingRun) -> tuple[float, float]:
    """Activations kept through the forward pass, and those of the one layer backward recomputes."""
    config = run.config
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    kv = config.num_key_value_heads * head_dim
    elem = _elem(run.dtype)
    per_h, per_i = _ACT_BYTES[(min(elem, 4), bool(run.lora_dropout))]
    per_layer = per_h * h + per_i * i + 2 * elem * kv  # bytes per token: k and v after RoPE
    tokens = run.batch_size * run.seq_len
    if run.gradient_checkpointing:
        return tokens * config.num_hidden_layers * elem * h, tokens * per_layer
    return tokens * config.num_hidden_layers * per_layer, 0


def step_peak_bytes(run: TrainingRun) -> float:
    """Estimate the peak a training step adds on top of the weights and the optimizer state.

    The parts of ``training_state_bytes`` are never all alive at once. The peak comes at one of two
    moments: at the end of the forward pass (every kept activation plus the logits and the loss's
    tensors), or during backward (the kept activations, the layer being recomputed when
    checkpointing, and the gradients, which are created as the activations they replace are freed:
    counting both in full makes this moment an upper bound). Checked against the profiler's count
    of live CPU tensors in ``tests/test_memory.py``.
    """
    kept, recomputed = _activation_parts(run)
    end_of_forward = kept + logits_bytes(run)
    backward = kept + recomputed + run.trainable_params * 4.0  # fp32 LoRA gradients
    return max(end_of_forward, backward)


_ACT_BYTES = {  # (bytes per element, LoRA dropout) -> saved bytes per token and layer, per h and per i
    (4, True): (66, 20), (4, False): (26, 16),
    (2, True): (62, 14), (2, False): (38, 10),
}


def logits_bytes(run: TrainingRun) -> float:
    """Estimate the bytes of the logits and the loss over them at the step's peak.

    The logits (batch x seq x vocab, compute dtype), their fp32 copy for the loss (when the compute
    dtype is 16-bit), log-softmax's fp32 output saved for backward, and its fp32 gradient. For
    Llama-3's vocabulary of 128k this is the largest single item of a short-context run.
    """
    elem = _elem(run.dtype)
    n = run.batch_size * run.seq_len * run.config.vocab_size
    return n * (elem + (4 if elem != 4 else 0) + 4 + 4)


def training_state_bytes(run: TrainingRun) -> dict[str, float]:
    """Return the bytes a training run adds to the model's weights, by part.

    Trainable (LoRA) weights are kept in fp32 by peft whatever the base dtype, and so are their
    gradients; the optimizer state follows ``OPTIMIZER_BYTES_PER_PARAM``.
    """
    n = run.trainable_params
    return {
        "trainable_weights": n * 4.0,
        "gradients": n * 4.0,
        "optimizer": n * float(OPTIMIZER_BYTES_PER_PARAM[run.optim]),
        "activations": activation_bytes(run),
        "logits": logits_bytes(run),
    }


def training_bill_parts(run: TrainingRun) -> dict[str, float]:
    """The parts of ``training_state_bytes`` plus one negative part, so that they add up to the peak.

    Gradients, activations and logits are never all alive at once (``step_peak_bytes``); the part
    ``not_live_at_once`` subtracts what their sum overcounts, and keeps each part visible in a bill.
    """
    parts = training_state_bytes(run)
    overlap = parts["gradients"] + parts["activations"] + parts["logits"]
    parts["not_live_at_once"] = step_peak_bytes(run) - overlap
    return parts


def layer_pattern(name: str) -> str:
    """A module's name with peft's wrappers and the layer index taken out: ``model.layers.*.mlp.up_proj``."""
    parts = [p for p in name.removeprefix("base_model.model.").split(".") if p != "base_layer"]
    return ".".join("*" if p.isdigit() else p for p in parts)


def fp32_matmul_weights(model: nn.Module) -> set[str]:
    """Name patterns (``layer_pattern``) of the frozen fp32 ``nn.Linear`` weights of ``model``.

    Under 16-bit autocast each of them is cast to a 16-bit copy at every matmul it feeds; quantized
    linears (bitsandbytes' int8/4-bit weights are not fp32) and trainable weights (``autocast_copy_bytes``
    counts those from the trainable count) are left out, and so are peft's adapter layers.
    """
    out = set()
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if (isinstance(m, nn.Linear) and w is not None and w.dtype == torch.float32 and not w.requires_grad
                and ".lora_" not in f".{name}"):
            out.add(layer_pattern(name))
    return out


def autocast_copy_bytes(real: nn.Module, fp32_frozen: set[str], run: TrainingRun) -> float:
    """Bytes of the 16-bit weight copies autocast holds at a training step's peak, at ``real``'s scale.

    Under ``torch.autocast`` in fp16/bf16 a matmul with an fp32 weight runs on a 16-bit copy of it.
    A trainable fp32 weight (a LoRA matrix, a fully fine-tuned weight) is cast once per forward and
    kept in autocast's cache until the forward ends; a frozen one is cast at every call, and its copy
    is saved for backward (the gradient of the layer's input is computed with it). After
    ``prepare_model_for_kbit_training`` the output head is such a frozen fp32 weight: Llama-3.1-8B's
    128256 x 4096 head makes a 1.05 GB fp16 copy. With gradient checkpointing a decoder layer's saved
    tensors are dropped and recomputed one layer at a time: the copies inside the layers count for one
    layer, those outside (the head) in full. ``fp32_frozen`` names the frozen fp32 linears
    (``fp32_matmul_weights`` of the model that trains); ``real`` is the module tree the bill is for;
    the copies are in ``run.compute_dtype``. Zero in fp32 (no autocast). Checked against torch's
    allocations in ``tests/test_ledger.py``.
    """
    elem = _elem(run.compute_dtype)
    if elem >= 4:
        return 0.0
    outside = inside = 0.0
    layer_bytes: dict[str, float] = defaultdict(float)
    for name, m in real.named_modules():
        if isinstance(m, nn.Linear) and layer_pattern(name) in fp32_frozen:
            nbytes = m.weight.numel() * elem
            if "*" in layer_pattern(name):
                inside += nbytes
                layer_bytes[name.split(".")[layer_pattern(name).split(".").index("*")]] += nbytes
            else:
                outside += nbytes
    if run.gradient_checkpointing:
        inside = max(layer_bytes.values(), default=0.0)
    return outside + inside + run.trainable_params * elem


def training_run_parts(real: nn.Module, fp32_frozen: set[str], run: TrainingRun) -> dict[str, float]:
    """What a training run adds to the weights, by part: ``training_bill_parts``, autocast's copies of the
    fp32 weights named in ``fp32_frozen`` and the CUDA context. The memory ledger enters this for a run."""
    return {**training_bill_parts(run), "autocast_copies": autocast_copy_bytes(real, fp32_frozen, run),
            "cuda_context": CUDA_CONTEXT_BYTES}


def lora_training_bill(real: nn.Module, run: TrainingRun, quantization: str | None = None,
                       kbit_upcast: bool = True, head_upcast: bool = False) -> dict[str, float]:
    """The LoRA training bill by part: what training ``run`` on the base ``real`` holds on the GPU.

    ``real`` is the model's module tree (on the meta device), its base in ``quantization`` (None:
    unquantized ``run.dtype``). The weights are counted as training holds them: with ``kbit_upcast`` the
    unquantized parts of a quantized base (norms, embeddings, head) in fp32, as
    ``prepare_model_for_kbit_training`` leaves them, but an untied head back in the compute dtype
    (``models.keep_head_in_compute_dtype``, as the course does; ``head_upcast=True``: left in fp32);
    then ``training_run_parts``: the adapter's weights, gradients and optimizer state, activations and
    logits, the 16-bit copies autocast makes of fp32 weights (an fp32 head's copy is 1.05 GB for
    Llama-3.1-8B) and the CUDA context. The calculator shows this bill and the memory ledger enters the
    same parts (the weights when a model is loaded, the rest when its run starts).

    Taught in lesson 01, section «Experiment: a rank sweep, what does r buy?».
    """
    kept = torch.float32 if quantization and kbit_upcast else run.dtype
    weights = estimate_footprint(real, quantization, kept)
    head = real.get_output_embeddings()
    fp32_frozen = set()  # the frozen fp32 linears autocast copies
    if quantization and kbit_upcast and head is not None:
        if head_upcast or head.weight is real.get_input_embeddings().weight:  # a tied head stays fp32
            fp32_frozen = {name for name, m in real.named_modules() if m is head}
        else:  # models.keep_head_in_compute_dtype: the head back in the compute dtype
            weights["weights"] -= head.weight.numel() * (4 - _elem(run.dtype))
    elif not quantization and kept == torch.float32:  # an fp32 base: every linear, under 16-bit autocast
        fp32_frozen = {layer_pattern(name) for name, m in real.named_modules() if isinstance(m, nn.Linear)}
    return {"weights": weights["weights"], "quant_constants": weights["quant_constants"],
            **training_run_parts(real, fp32_frozen, run)}


HELD_PARTS = ("weights", "quant_constants", "trainable_weights", "gradients", "optimizer")
"""The parts of ``lora_training_bill`` a run holds at rest, whatever its batch: a partial bill on purpose."""
HELD_LEAVES_OUT = "activations, logits, autocast's 16-bit weight copies and the CUDA context"
"""What a bill of the ``HELD_PARTS`` leaves out: the parts that depend on batch, length and the device."""


def left_out_of_held(bill: dict[str, float]) -> str:
    """The parts of ``bill`` that ``HELD_PARTS`` leaves out, with their bytes (a partial bill's caption).

    Taught in lesson 01, section «6 · The memory bill of training Llama-3.1-8B».
    """
    return ", ".join(f"{k.replace('_', ' ')} {fmt_bytes(v)}" for k, v in bill.items() if k not in HELD_PARTS)


_LORA_BASES = {"lora": None, "lora-int8": "int8", "qlora": "nf4"}  # method -> the frozen base's quantization
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # all linears


def training_memory_bill(config, method: str, r: int = 16,
                         target_modules=LLAMA_TARGETS,
                         weight_dtype: torch.dtype = torch.bfloat16) -> dict[str, float]:
    """A partial training bill (weights, gradients, optimizer state) for full/lora/lora-int8/qlora, in bytes.

    It leaves out on purpose what depends on batch, length and checkpointing: activations, logits, autocast's
    weight copies and the CUDA context (``lora_training_bill`` has them). Full fine-tuning: 16-bit weights and
    grads plus fp32 master weights and two fp32 Adam moments (16 bytes per parameter, mixed precision). LoRA
    on a frozen ``weight_dtype``, int8 or NF4 base: the ``HELD_PARTS`` of ``lora_training_bill`` with AdamW (a
    quantized base's norms and embeddings in fp32, as training holds them; fp32 adapter weights, grads and
    two moments).
    """
    model = meta_model(config)
    if method == "full":
        n_params = estimate_footprint(model)["params"]
        base = n_params * _elem(weight_dtype)
        states = n_params * (_elem(weight_dtype) + 4 + 8)  # grads (bf16) + fp32 master + 2 fp32 moments
        return {"method": method, "trainable_params": n_params, "weights": base,
                "grads_and_optimizer": states, "total": base + states}
    if method not in _LORA_BASES:
        raise ValueError(f"unknown method {method!r}; use 'full', {', '.join(map(repr, _LORA_BASES))}")
    run = TrainingRun.lora(model, r, target_modules, dtype=weight_dtype)
    bill = lora_training_bill(model, run, _LORA_BASES[method])
    base = bill["weights"] + bill["quant_constants"]
    states = bill["trainable_weights"] + bill["gradients"] + bill["optimizer"]
    return {"method": method, "trainable_params": run.trainable_params, "weights": base,
            "grads_and_optimizer": states, "total": base + states}
