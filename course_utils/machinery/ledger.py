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

The jobs are split: ``budget`` keeps the entries (enter, leave with their owner, check); the estimators
are the lesson layer's (``memory.lora_training_bill`` and its parts); ``ledger_report`` prints the ledger
and saves its peaks. This module turns a loaded model and its run into entries.

How a notebook uses it::

    from course_utils import ledger

    model = load_model(profile.model_id("chat"), quantization="nf4", dtype=profile.dtype)  # entered
    model = prepare_model_for_kbit_training(model)  # fp32 up-casts: seen by the next ledger call
    model = get_peft_model(model, lora_config)
    ledger.enter_training_run(model, batch_size=CFG.batch_size, seq_len=CFG.max_len,
                              gradient_checkpointing=True, optim="paged_adamw_8bit")  # raises if it won't fit
    trainer.train()
    ledger.report()  # the bill; on a GPU beside the measured peak
    del model, trainer; free_memory()  # the entries leave with the objects

- ``ledger.enter_training_run(model, batch_size, seq_len, gradient_checkpointing, optim,
  trainable_params=None)``: enter what a training run adds to the model's weights
  (``memory.training_run_parts`` of its ``memory.TrainingRun``): trainable weights, gradients, optimizer
  state, activations, logits, less what those three never hold at the same time, the 16-bit copies that the
  profile's fp16/bf16 autocast makes of fp32 weights (1.05 GB for an fp32 Llama-3.1-8B head, none when
  ``models.keep_head_in_compute_dtype`` keeps it in 16 bits), and the CUDA context. With the model's
  entry this is ``memory.lora_training_bill``, the calculator's bill. Call it before ``trainer.train()``
  (again before another run: it replaces the last). ``seq_len`` is the longest sequence the run can meet:
  the recipe's cap (``max_length`` of the trainer, ``profile.max_seq_len``), never a length measured on
  the data, which a rehearsal measures with its stand-in tokenizer on the shipped sample and which real
  data on the real tokenizer can exceed. For a model that is not a peft model, pass the real-scale
  ``trainable_params``.
- ``ledger.plan_load(model_id, quantization, dtype)`` and ``ledger.plan_training(model_id, quantization, r,
  target_modules, **run_fields)``: before loading a model, check its weights or its whole LoRA training
  bill; these two raise on a real GPU too (see there).
- ``ledger.prediction(model)``: the real-scale bytes entered for a model and its training run.
- ``ledger.real_scale_meta_tree(model, model_id)``: the meta-device module tree the ledger bills.
- ``ledger.current()`` is the ledger of the active profile; ``Ledger(profile)`` makes a fresh one.
"""

from __future__ import annotations

import weakref

import torch

from ..memory import (
    TrainingRun,
    estimate_footprint,
    fp32_matmul_weights,
    layer_pattern,
    lora_param_count,
    lora_training_bill,
    meta_model,
    quantizable_linears,
    real_meta,
    training_run_parts,
)
from . import ledger_report
from .budget import DEVICES, Budget, Entry, MemoryBudgetError
from .profiles import TINY_PREFIX, Profile, get_profile

__all__ = ["DEVICES", "Entry", "Ledger", "MemoryBudgetError", "current", "enter_training_run", "plan_load",
           "plan_training", "prediction", "real_scale_meta_tree", "report", "save_peak", "track_loaded"]


def real_scale_meta_tree(model, model_id: str):
    """Return the meta-device module tree (shapes, no storage) of the real-scale model behind ``model``.

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


class Ledger(Budget):
    """A ``Budget`` whose entries are loaded models and their training runs, billed at real scale."""

    def __init__(self, profile: Profile):
        super().__init__(profile)
        self._models: dict[int, int] = {}  # id(base model) -> entry key
        self._training: dict[int, int] = {}  # id(base model) -> training entry key
        self.loads: dict[str, int] = {}  # real model id -> load_model calls (the runtime model counts them)

    # --------------------------------------------------------------------- models

    def track_model(self, model, model_id: str, quantization: str | None, dtype: torch.dtype,
                    device: str = "gpu", double_quant: bool = True) -> int | None:
        """Enter a loaded model at its real-scale footprint; it leaves when ``model`` is collected."""
        if not self.active:
            return None
        info = {"model_id": model_id, "quantization": quantization, "double_quant": double_quant,
                "dtype": dtype}
        entry = Entry(_model_name(model_id, quantization, dtype), device, self._model_parts(model, info),
                      "model", info)
        key = self.enter(entry, owner=model)
        self._models[id(model)] = key
        weakref.finalize(model, self._models.pop, id(model), None)
        return key

    def _model_parts(self, model, info: dict) -> dict[str, float]:
        real = real_scale_meta_tree(model, info["model_id"])
        est = estimate_footprint(real, info["quantization"], info["dtype"], info["double_quant"])
        parts = {"weights": est["weights"], "quant_constants": est["quant_constants"]}
        if info["quantization"] and info["dtype"] != torch.float32:
            parts["fp32_upcasts"] = _upcast_bytes(model, real, info["quantization"], info["dtype"])
        return parts

    def refresh(self, model) -> None:
        """Re-read a model's state: ``prepare_model_for_kbit_training`` up-casts to fp32 after loading."""
        key = self._models.get(id(_base(model)))
        if key not in self.entries:
            return
        old = self.entries[key]
        parts = self._model_parts(_base(model), old.info)
        if parts != old.parts:
            self.enter(Entry(old.name, old.device, parts, old.kind, old.info), replacing=key)

    # --------------------------------------------------------------------- training

    def enter_training_run(self, model, batch_size: int, seq_len: int, gradient_checkpointing: bool,
                           optim: str = "adamw_torch", trainable_params: int | None = None) -> int | None:
        """Enter what a training run of ``model`` adds to its weights (``memory.training_run_parts``).

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
        real = real_scale_meta_tree(base, info["model_id"])
        if trainable_params is None:
            trainable_params = _real_trainable(model, real, info["model_id"])
        peft_configs = getattr(model, "peft_config", None) or {}
        dropout = any(getattr(c, "lora_dropout", 0) for c in peft_configs.values()) or not peft_configs
        # the Trainer's mixed precision follows the profile (precision.trainer_precision): 16-bit autocast
        run = TrainingRun(real.config, trainable_params, batch_size, seq_len, gradient_checkpointing, optim,
                          info["dtype"], dropout, autocast_dtype=self.profile.dtype)
        fp32_frozen = fp32_matmul_weights(model)
        if info["quantization"]:  # at real scale these are int8/4-bit, whatever a stand-in holds
            fp32_frozen -= {layer_pattern(n) for n in quantizable_linears(real)}
        name = f"training {info['model_id'].removeprefix(TINY_PREFIX)}: {run.describe()}"
        run_info = {"batch_size": batch_size, "seq_len": seq_len, "optim": optim,
                    "gradient_checkpointing": gradient_checkpointing}
        entry = Entry(name, "gpu", training_run_parts(real, fp32_frozen, run), "training", run_info)
        tkey = self.enter(entry, owner=base, replacing=self._training.get(id(base)))
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
        return self._plan(Entry(_model_name(model_id, quantization, dtype), device, parts, "model"))

    def plan_training(self, model_id: str, quantization: str | None, r: int, target_modules,
                      **run_fields) -> float | None:
        """Check a LoRA training run *before* its model is loaded; return its real-scale bill in bytes.

        The bill is ``memory.lora_training_bill`` of the ``memory.TrainingRun`` that ``run_fields`` describe
        (dtype, batch_size, seq_len, gradient_checkpointing, optim, lora_dropout), checked beside what the
        ledger holds now, on a real GPU too (see ``plan_load``). Enters nothing; None in the cpu profile.
        """
        if not self.active:
            return None
        real_id = model_id.removeprefix(TINY_PREFIX)
        real = real_meta(real_id)
        run = TrainingRun.lora(real, r, target_modules, **run_fields)
        base = quantization or str(run.dtype).removeprefix("torch.")
        name = f"LoRA training of {real_id} ({base} base): {run.describe()}"
        return self._plan(Entry(name, "gpu", lora_training_bill(real, run, quantization), "plan"))

    def _plan(self, entry: Entry) -> float:
        self.check(entry, force=True)
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


def _model_name(model_id: str, quantization: str | None, dtype: torch.dtype) -> str:
    real = model_id.removeprefix(TINY_PREFIX)
    return f"{real} ({quantization or str(dtype).removeprefix('torch.')})"


def _real_trainable(model, real, model_id: str) -> int:
    """Count the real-scale trainable parameters of a peft LoRA model from its config."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config:
        if not model_id.startswith(TINY_PREFIX):
            return sum(p.numel() for p in model.parameters() if p.requires_grad)
        raise ValueError("not a peft model: pass trainable_params= (the real-scale count) to "
                         "enter_training_run()")
    cfg = next(iter(peft_config.values()))
    targets = cfg.target_modules
    if isinstance(targets, str):  # "all-linear" or a regex: count every linear it would match
        targets = {name.split(".")[-1] for name, m in real.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not real.get_output_embeddings()}
    return lora_param_count(real, targets, cfg.r)


# ----------------------------------------------------------------------------- the active ledger

_LEDGERS: dict[str, Ledger] = {}


def current(profile: Profile | None = None) -> Ledger:
    """The ledger of ``profile`` (default: the active profile, as ``get_profile()`` picks it)."""
    profile = profile or get_profile()
    if profile.name not in _LEDGERS or _LEDGERS[profile.name].profile != profile:
        _LEDGERS[profile.name] = Ledger(profile)
    return _LEDGERS[profile.name]


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


def enter_training_run(model, batch_size: int, seq_len: int, gradient_checkpointing: bool,
                       optim: str = "adamw_torch", trainable_params: int | None = None) -> int | None:
    """Enter a training run in the active ledger; see ``Ledger.enter_training_run``."""
    return current().enter_training_run(model, batch_size, seq_len, gradient_checkpointing, optim,
                                        trainable_params)


def plan_load(model_id: str, quantization: str | None, dtype: torch.dtype,
              device: str = "gpu") -> float | None:
    """Check a model's weights before loading it, in the active ledger; see ``Ledger.plan_load``."""
    return current().plan_load(model_id, quantization, dtype, device)


def plan_training(model_id: str, quantization: str | None, r: int, target_modules,
                  **run_fields) -> float | None:
    """Check a LoRA training run before loading its model (active ledger); see ``Ledger.plan_training``."""
    return current().plan_training(model_id, quantization, r, target_modules, **run_fields)


def prediction(model) -> float | None:
    """Real-scale bytes the active ledger holds for ``model`` and its run; see ``Ledger.prediction``."""
    return current().prediction(model)


def report() -> dict[str, float]:
    """Print the active ledger; see ``ledger_report.report``."""
    return ledger_report.report(current())


def save_peak(path) -> None:
    """Write the active ledger's peaks to ``path``; see ``ledger_report.save_peak``."""
    ledger_report.save_peak(current(), path)
