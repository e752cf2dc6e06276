"""Memory ledger: what every loaded model and training run would hold at real scale, and where.

A rehearsal profile (``t4-rehearsal``, ...) runs a GPU notebook on the CPU with tiny models, so the
tiny models' memory says nothing about the GPU. The ledger keeps the bill the *real* models would
run up: every model loaded through ``course_utils.load_model`` is entered at the footprint of its
real-scale config (built on the meta device by ``memory.estimate_footprint``), on the device it would
occupy, and leaves when the model object is garbage-collected. A cell that would push the GPU (or
the host RAM, for CPU-side copies) past the profile's budget fails in the rehearsal with what it
would need, where, and what to change, instead of failing on a learner's Colab T4 after a 16 GB
download. On a real GPU nothing is enforced (the GPU itself is the judge) and ``report()`` prints
the prediction beside ``torch.cuda.max_memory_allocated`` so the first real run checks it.
In the cpu profile the ledger is off: every call below is a cheap no-op.

How a notebook uses it::

    from course_utils import ledger

    model = load_model(profile.model_id("chat"), quantization="nf4", dtype=profile.dtype)  # entered
    model = prepare_model_for_kbit_training(model)  # fp32 up-casts: seen by the next ledger call
    model = get_peft_model(model, lora_config)
    ledger.training(model, batch_size=CFG.batch_size, seq_len=CFG.max_len,
                    gradient_checkpointing=True, optim="paged_adamw_8bit")  # raises if it won't fit
    trainer.train()
    ledger.report()  # the bill; on a GPU beside the measured peak
    del model, trainer; free_memory()  # the entries leave with the objects

- ``ledger.track_model(model, model_id, quantization, dtype, device)``: what ``load_model`` calls.
  ``device`` is ``"gpu"`` or ``"host"`` (a CPU-side copy, e.g. for merging); a model loaded with
  ``device_map="cpu"`` counts as host RAM.
- ``ledger.training(model, batch_size, seq_len, gradient_checkpointing, optim, trainable_params=None)``:
  enter a training run's trainable weights, gradients, optimizer state, activations, logits, less
  what those three never hold at the same time (``memory.step_peak_bytes``), the 16-bit copies that
  the profile's fp16/bf16 autocast makes of fp32 weights (``memory.autocast_copy_bytes``: 1.05 GB for
  an fp32 Llama-3.1-8B head, none when ``models.keep_head_in_compute_dtype`` keeps it in 16 bits), and
  the CUDA context; call it before ``trainer.train()`` (again before another run: it replaces the last).
  ``seq_len`` is the longest sequence the run can meet: the recipe's cap (``max_length`` of the trainer,
  ``profile.max_seq_len``), never a length measured on the data, which a rehearsal measures with its
  stand-in tokenizer on the shipped sample and which real data on the real tokenizer can exceed.
  For a model that is not a peft model, pass the real-scale ``trainable_params``.
- ``ledger.enter(name, nbytes, device, owner=None)``: anything else (a dequantized copy, ...);
  leaves with ``owner`` or by ``ledger.leave(entry)``.
- ``ledger.plan_load(model_id, quantization, dtype)`` and ``ledger.plan_training(model_id, quantization,
  dtype, r, target_modules, batch_size, seq_len, ...)``: before loading a model, check its weights or its
  whole LoRA training bill; these two raise on a real GPU too (see there).
- ``ledger.prediction(model)``: the real-scale bytes entered for a model and its training run.
- ``ledger.current()`` is the ledger of the active profile; ``Ledger(profile)`` makes a fresh one.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field

import torch

from ..memory import (
    CUDA_CONTEXT_BYTES,
    autocast_copy_bytes,
    estimate_footprint,
    fmt_bytes,
    fp32_matmul_weights,
    layer_pattern,
    lora_param_count,
    lora_training_parts,
    meta_model,
    quantizable_linears,
    real_meta,
    training_bill_parts,
)
from .profiles import TINY_PREFIX, Profile, get_profile

GB = 1e9  # budgets are in GB (10^9 bytes), as the profiles state them
DEVICES = ("gpu", "host")


class MemoryBudgetError(RuntimeError):
    """A rehearsal cell whose real-scale memory would not fit the profile's GPU or host RAM."""


@dataclass
class Entry:
    """One line of the ledger: a name, bytes by part, and the device those bytes occupy."""

    name: str
    device: str
    parts: dict[str, float]
    kind: str = "other"
    info: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> float:
        return float(sum(self.parts.values()))


# ----------------------------------------------------------------------------- real-scale configs

def real_scale_model(model, model_id: str):
    """Return a meta-device module tree of the real-scale model behind ``model``.

    A rehearsal's ``course:tiny:<id>`` models stand for ``<id>``; any other loaded model already is
    real scale, so its own config is used.
    """
    if model_id.startswith(TINY_PREFIX):
        return real_meta(model_id.removeprefix(TINY_PREFIX))
    return meta_model(model.config)


def _upcast_bytes(model, real, quantization: str, dtype: torch.dtype) -> float:
    """Extra bytes of the unquantized weights that are fp32 now (``prepare_model_for_kbit_training``
    casts them from ``dtype``; ``models.keep_head_in_compute_dtype`` casts the head back), at real scale.

    Matched by name with the layer index taken out, so each real weight is billed in the dtype its
    counterpart has in ``model`` (a rehearsal's tiny copy).
    """
    fp32 = {layer_pattern(n) for n, p in _base(model).named_parameters() if p.dtype == torch.float32}
    quantized = {id(m.weight) for m in quantizable_linears(real).values()} if quantization else set()
    extra = 4 - torch.tensor([], dtype=dtype).element_size()
    return float(sum(p.numel() * extra for n, p in real.named_parameters()
                     if id(p) not in quantized and layer_pattern(n) in fp32))


def _base(model):
    """The transformers model under a peft wrapper (the object whose entry holds its weights)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# ----------------------------------------------------------------------------- the ledger

class Ledger:
    """Entries per device; enforces the profile's budgets when the profile is a rehearsal."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.active = profile.gpu_recipe
        self.enforce = profile.rehearsal
        self.entries: dict[int, Entry] = {}
        self.peak = {d: 0.0 for d in DEVICES}
        self._models: dict[int, int] = {}  # id(base model) -> entry key
        self._training: dict[int, int] = {}  # id(base model) -> training entry key
        self._next = 0
        self.loads: dict[str, int] = {}  # real model id -> load_model calls (the runtime model counts them)

    def budget(self, device: str) -> float:
        """The profile's budget in bytes for ``device`` ("gpu" or "host")."""
        return (self.profile.gpu_memory_gb if device == "gpu" else self.profile.host_ram_gb) * GB

    def total(self, device: str) -> float:
        """Bytes the current entries hold on ``device``, at real scale."""
        return sum(e.nbytes for e in self.entries.values() if e.device == device)

    def _check(self, entry: Entry, replacing: int | None = None, force: bool = False) -> None:
        held = [e for k, e in self.entries.items() if e.device == entry.device and k != replacing]
        need = sum(e.nbytes for e in held) + entry.nbytes
        if not (self.enforce or force) or need <= self.budget(entry.device):
            return
        where = "GPU memory" if entry.device == "gpu" else "host RAM"
        lines = [f"{self.profile.name}: {entry.name} would need {fmt_bytes(entry.nbytes)} of {where} at "
                 f"real scale, {fmt_bytes(need)} in all, over the {self.profile.target} budget of "
                 f"{self.budget(entry.device) / GB:g} GB."]
        lines += [f"  {fmt_bytes(e.nbytes):>11}  {e.name}" for e in held]
        lines += [f"  {fmt_bytes(entry.nbytes):>11}  {entry.name} (new): "
                  + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in entry.parts.items() if v)]
        lines.append("What to change: " + _advice(entry))
        raise MemoryBudgetError("\n".join(lines))

    def enter(self, name: str, parts: dict[str, float] | float, device: str = "gpu", owner=None,
              kind: str = "other", info: dict | None = None, replacing: int | None = None) -> int | None:
        """Add an entry (bytes by part); it leaves when ``owner`` is garbage-collected. Returns its key."""
        if not self.active:
            return None
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
        parts = parts if isinstance(parts, dict) else {"bytes": float(parts)}
        entry = Entry(name, device, {k: float(v) for k, v in parts.items()}, kind, info or {})
        self._check(entry, replacing)
        if replacing is not None:
            self.entries.pop(replacing, None)
        key, self._next = self._next, self._next + 1
        self.entries[key] = entry
        self.peak[device] = max(self.peak[device], self.total(device))
        if owner is not None:
            weakref.finalize(owner, self.leave, key)
        return key

    def leave(self, key: int | None) -> None:
        """Remove an entry (called by the garbage collector for entries with an owner)."""
        self.entries.pop(key, None)

    # --------------------------------------------------------------------- models

    def track_model(self, model, model_id: str, quantization: str | None, dtype: torch.dtype,
                    device: str = "gpu", double_quant: bool = True) -> int | None:
        """Enter a loaded model at its real-scale footprint; it leaves when ``model`` is collected."""
        if not self.active:
            return None
        info = {"model_id": model_id, "quantization": quantization, "double_quant": double_quant}
        entry = self._model_parts(model, info, dtype)
        key = self.enter(_model_name(model_id, quantization, dtype), entry, device, owner=model,
                         kind="model", info={**info, "dtype": dtype})
        self._models[id(model)] = key
        weakref.finalize(model, self._models.pop, id(model), None)
        return key

    def _model_parts(self, model, info: dict, dtype: torch.dtype) -> dict[str, float]:
        real = real_scale_model(model, info["model_id"])
        est = estimate_footprint(real, info["quantization"], dtype, info["double_quant"])
        parts = {"weights": est["weights"], "quant_constants": est["quant_constants"]}
        if info["quantization"] and dtype != torch.float32:
            parts["fp32_upcasts"] = _upcast_bytes(model, real, info["quantization"], dtype)
        return parts

    def refresh(self, model) -> None:
        """Re-read a model's state: ``prepare_model_for_kbit_training`` up-casts to fp32 after loading."""
        key = self._models.get(id(_base(model)))
        if key is None or key not in self.entries:
            return
        old = self.entries[key]
        parts = self._model_parts(_base(model), old.info, old.info["dtype"])
        if parts != old.parts:
            new_key = self.enter(old.name, parts, old.device, kind="model", info=old.info, replacing=key)
            self.entries[key] = self.entries.pop(new_key)  # keep the key the finalizer knows

    # --------------------------------------------------------------------- training

    def training(self, model, batch_size: int, seq_len: int, gradient_checkpointing: bool,
                 optim: str = "adamw_torch", trainable_params: int | None = None) -> int | None:
        """Enter a training run of ``model``: trainable weights, grads, optimizer, activations, logits,
        autocast's weight copies.

        ``seq_len``: the longest sequence the run can meet (its cap; see the module docstring). Call
        before ``trainer.train()``; a second call for the same model replaces the first.
        """
        if not self.active:
            return None
        base = _base(model)
        self.refresh(model)
        key = self._models.get(id(base))
        if key is None:
            raise ValueError("the ledger has no entry for this model: load it with course_utils.load_model")
        info = self.entries[key].info
        real = real_scale_model(base, info["model_id"])
        if trainable_params is None:
            trainable_params = _real_trainable(model, real, info["model_id"])
        peft_configs = getattr(model, "peft_config", None) or {}
        dropout = any(getattr(c, "lora_dropout", 0) for c in peft_configs.values()) or not peft_configs
        parts = training_bill_parts(real.config, trainable_params, batch_size, seq_len,
                                     gradient_checkpointing, optim, info["dtype"], dropout)
        # the Trainer's mixed precision follows the profile (precision.trainer_precision): 16-bit autocast
        fp32_frozen = fp32_matmul_weights(model)
        if info["quantization"]:  # at real scale these are int8/4-bit, whatever a stand-in holds
            fp32_frozen -= {layer_pattern(n) for n in quantizable_linears(real)}
        parts["autocast_copies"] = autocast_copy_bytes(real, fp32_frozen, self.profile.dtype,
                                                       trainable_params, gradient_checkpointing)
        parts["cuda_context"] = CUDA_CONTEXT_BYTES
        name = (f"training {info['model_id'].removeprefix(TINY_PREFIX)}: batch {batch_size} x {seq_len} "
                f"tokens, checkpointing {'on' if gradient_checkpointing else 'off'}, {optim}")
        run_info = {"batch_size": batch_size, "seq_len": seq_len, "optim": optim,
                    "gradient_checkpointing": gradient_checkpointing}
        tkey = self.enter(name, parts, "gpu", owner=base, kind="training", info=run_info,
                          replacing=self._training.get(id(base)))
        self._training[id(base)] = tkey
        return tkey

    def plan_load(self, model_id: str, quantization: str | None, dtype: torch.dtype,
                  device: str = "gpu") -> float | None:
        """Check a model's real-scale weights *before* loading it; return the bytes (None when off).

        Unlike the other entries this check raises ``MemoryBudgetError`` on a real GPU as well as in
        its rehearsal: a model that does not fit would otherwise be loaded first (``device_map="auto"``
        quietly puts what does not fit on the CPU) and fail or crawl later. Enters nothing.
        """
        if not self.active:
            return None
        real = real_meta(model_id.removeprefix(TINY_PREFIX))
        est = estimate_footprint(real, quantization, dtype)
        parts = {"weights": est["weights"], "quant_constants": est["quant_constants"]}
        return self._plan(_model_name(model_id, quantization, dtype), parts, device, "model")

    def plan_training(self, model_id: str, quantization: str | None, dtype: torch.dtype, r: int,
                      target_modules, batch_size: int, seq_len: int, gradient_checkpointing: bool,
                      optim: str = "adamw_torch", lora_dropout: bool = True) -> float | None:
        """Check a LoRA training run *before* its model is loaded; return its real-scale bill in bytes.

        The bill is ``lora_training_parts`` (weights as training holds them, adapter state, activations,
        logits, CUDA context), checked beside what the ledger holds now, on a real GPU too (see
        ``plan_load``). Enters nothing; None in the cpu profile.
        """
        if not self.active:
            return None
        real_id = model_id.removeprefix(TINY_PREFIX)
        parts = lora_training_parts(real_meta(real_id), quantization, dtype, r, target_modules, batch_size,
                                    seq_len, gradient_checkpointing, optim, lora_dropout)
        base = quantization or str(dtype).removeprefix("torch.")
        name = (f"LoRA training of {real_id} ({base} base): batch {batch_size} x {seq_len} tokens, "
                f"checkpointing {'on' if gradient_checkpointing else 'off'}, {optim}")
        return self._plan(name, parts, "gpu", "plan")

    def _plan(self, name: str, parts: dict[str, float], device: str, kind: str) -> float:
        entry = Entry(name, device, parts, kind=kind)
        self._check(entry, force=True)
        return entry.nbytes

    def prediction(self, model) -> float | None:
        """Real-scale bytes entered for ``model`` and its training run, without the CUDA context.

        The number to set beside ``torch.cuda.max_memory_allocated`` (which does not count the
        context either). None when the ledger is off or holds no entry for the model.
        """
        base = _base(model)
        key = self._models.get(id(base))
        if not self.active or key not in self.entries:
            return None
        total = self.entries[key].nbytes
        run = self.entries.get(self._training.get(id(base)))
        if run is not None:
            total += run.nbytes - run.parts.get("cuda_context", 0.0)
        return total

    # --------------------------------------------------------------------- report

    def report(self) -> dict[str, float]:
        """Print the entries and totals per device (beside CUDA's measured peak on a GPU); return totals."""
        totals = {d: self.total(d) for d in DEVICES}
        if not self.active:
            print(f"memory ledger: off in the {self.profile.name} profile")
            return totals
        print(f"memory ledger ({self.profile.name}, real-scale prediction):")
        for e in self.entries.values():
            print(f"  {e.device:<5}{fmt_bytes(e.nbytes):>11}  {e.name}")
        for d in DEVICES:
            print(f"  {d} now {fmt_bytes(totals[d])}, peak {fmt_bytes(self.peak[d])} of the "
                  f"{self.budget(d) / GB:g} GB budget")
        if torch.cuda.is_available():
            measured = torch.cuda.max_memory_allocated()
            print(f"  measured: torch.cuda.max_memory_allocated {fmt_bytes(measured)} vs predicted peak "
                  f"{fmt_bytes(self.peak['gpu'] - CUDA_CONTEXT_BYTES)} (both without the CUDA context)")
            reserved = torch.cuda.max_memory_reserved()  # what the caching allocator took from the card
            extra = fmt_bytes(reserved - measured)
            print(f"  reserved by the allocator: peak {fmt_bytes(reserved)} ({extra} "
                  f"cached or fragmented beyond the allocated peak; expandable_segments: "
                  f"{'expandable_segments:True' in os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')})")
        return totals

    def save_peak(self, path) -> None:
        """Write this ledger's peaks (bytes per device) and profile to ``path`` as JSON.

        ``make test`` calls it in every rehearsal kernel after the notebook's last cell (see the
        repository's conftest.py); ``tools/runtime_table.py`` turns the peaks into the notebook headers'
        "peak memory" cells and checks that they still agree.
        """
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps({"profile": self.profile.name, "target": self.profile.target,
                                          **{d: self.peak[d] for d in DEVICES}, "loads": self.loads}) + "\n")


def _model_name(model_id: str, quantization: str | None, dtype: torch.dtype) -> str:
    real = model_id.removeprefix(TINY_PREFIX)
    return f"{real} ({quantization or str(dtype).removeprefix('torch.')})"


def _real_trainable(model, real, model_id: str) -> int:
    """Count the real-scale trainable parameters of a peft LoRA model from its config."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        if not model_id.startswith(TINY_PREFIX):
            return sum(p.numel() for p in model.parameters() if p.requires_grad)
        raise ValueError("not a peft model: pass trainable_params= (the real-scale count) to training()")
    cfg = next(iter(peft_config.values()))
    targets = cfg.target_modules
    if isinstance(targets, str):  # "all-linear" or a regex: count every linear it would match
        targets = {name.split(".")[-1] for name, m in real.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not real.get_output_embeddings()}
    return lora_param_count(real, targets, cfg.r)


def _advice(entry: Entry) -> str:
    if entry.kind == "plan":
        return ("free the models you no longer need, load the base in fewer bits (int8, or NF4 as QLoRA "
                "does), lower the batch size or the sequence length, or use a GPU with more memory.")
    if entry.kind == "training":
        return ("lower the batch size (raise gradient accumulation to keep the effective batch) or the "
                "sequence length, turn gradient checkpointing on, or use an 8-bit/paged optimizer.")
    if entry.device == "host":
        return ("do not keep a CPU-side copy of the whole model: work on one layer, or merge in the "
                "compute dtype on the GPU.")
    return ("free the models you no longer need first (`del model; free_memory()`), load in a smaller "
            "format (nf4 instead of int8 or 16-bit), or compare one layer instead of a second model.")


# ----------------------------------------------------------------------------- the active ledger

_LEDGERS: dict[str, Ledger] = {}


def current(profile: Profile | None = None) -> Ledger:
    """The ledger of ``profile`` (default: the active profile, as ``get_profile()`` picks it)."""
    profile = profile or get_profile()
    if profile.name not in _LEDGERS or _LEDGERS[profile.name].profile != profile:
        _LEDGERS[profile.name] = Ledger(profile)
    return _LEDGERS[profile.name]


def track_model(model, model_id: str, quantization: str | None, dtype: torch.dtype,
                device: str = "gpu", double_quant: bool = True) -> int | None:
    """Enter a model in the active ledger (``load_model`` calls this)."""
    return current().track_model(model, model_id, quantization, dtype, device, double_quant)


def track_loaded(model, model_id: str, quantization_config, dtype: torch.dtype, device_map) -> int | None:
    """Enter a model ``load_model`` just loaded: format from its BitsAndBytesConfig, device from the map."""
    ledger = current()
    if not ledger.active:
        return None
    real_id = model_id.removeprefix(TINY_PREFIX)
    ledger.loads[real_id] = ledger.loads.get(real_id, 0) + 1
    kind, double_quant = None, True
    if quantization_config is not None:
        if quantization_config.load_in_8bit:
            kind = "int8"
        elif quantization_config.load_in_4bit:
            kind = quantization_config.bnb_4bit_quant_type
            double_quant = quantization_config.bnb_4bit_use_double_quant
    on_cpu = device_map == "cpu" or (isinstance(device_map, dict) and set(device_map.values()) <= {"cpu"})
    return ledger.track_model(model, model_id, kind, dtype, "host" if on_cpu else "gpu", double_quant)


def training(model, batch_size: int, seq_len: int, gradient_checkpointing: bool,
             optim: str = "adamw_torch", trainable_params: int | None = None) -> int | None:
    """Enter a training run in the active ledger; see ``Ledger.training``."""
    return current().training(model, batch_size, seq_len, gradient_checkpointing, optim,
                              trainable_params)


def enter(name: str, nbytes: float, device: str = "gpu", owner=None) -> int | None:
    """Enter anything else in the active ledger; it leaves with ``owner`` (or ``leave(key)``)."""
    return current().enter(name, nbytes, device, owner)


def leave(key: int | None) -> None:
    """Remove an entry from the active ledger."""
    current().leave(key)


def plan_load(model_id: str, quantization: str | None, dtype: torch.dtype,
              device: str = "gpu") -> float | None:
    """Check a model's weights before loading it, in the active ledger; see ``Ledger.plan_load``."""
    return current().plan_load(model_id, quantization, dtype, device)


def plan_training(model_id: str, quantization: str | None, dtype: torch.dtype, r: int, target_modules,
                  batch_size: int, seq_len: int, gradient_checkpointing: bool, optim: str = "adamw_torch",
                  lora_dropout: bool = True) -> float | None:
    """Check a LoRA training run before loading its model (active ledger); see ``Ledger.plan_training``."""
    return current().plan_training(model_id, quantization, dtype, r, target_modules, batch_size, seq_len,
                                   gradient_checkpointing, optim, lora_dropout)


def prediction(model) -> float | None:
    """Real-scale bytes the active ledger holds for ``model`` and its run; see ``Ledger.prediction``."""
    return current().prediction(model)


def report() -> dict[str, float]:
    """Print the active ledger; see ``Ledger.report``."""
    return current().report()
