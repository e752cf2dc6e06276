"""Memory calculator: the training bill of a model at real scale, and which GPU it fits.

``memory_bill(...)`` is a pure function (tests call it headless); ``memory_calculator()`` wraps it in
ipywidgets for a notebook. The bill is ``memory.lora_training_bill``, the bill the rehearsals' memory
ledger enters, and it is compared with the same budgets (``memory.GPU_BUDGET_GB``: T4 14 GB,
L4 21 GB, A100 38 GB of GPU memory).
"""

from __future__ import annotations

import torch

from .memory import GPU_BUDGET_GB, LLAMA_TARGETS, TrainingRun, fmt_bytes, lora_training_bill, real_meta

PRECISIONS = {"fp32": (None, torch.float32), "bf16": (None, torch.bfloat16), "fp16": (None, torch.float16),
              "int8": ("int8", torch.float16), "nf4": ("nf4", torch.bfloat16)}
GPUS = ("t4", "l4", "a100")
CALCULATOR_RUN = {"batch_size": 4, "seq_len": 512, "gradient_checkpointing": True,
                  "optim": "paged_adamw_8bit"}
"""The calculator's run when none is given: the fields of ``memory.TrainingRun`` it sets."""


def memory_bill(model_id: str = "meta-llama/Llama-3.1-8B-Instruct", precision: str = "nf4", r: int = 16,
                target_modules=LLAMA_TARGETS, **run_fields) -> dict:
    """Return the real-scale LoRA training bill in bytes by part, its total, and whether it fits each GPU.

    ``precision`` is the frozen base's format (it sets the run's dtype); ``run_fields`` are the other fields
    of ``memory.TrainingRun`` (batch_size, seq_len, gradient_checkpointing, optim, lora_dropout,
    autocast_dtype), over ``CALCULATOR_RUN``. Quantized bases are billed as
    ``prepare_model_for_kbit_training`` leaves them (fp32 norms and embeddings), as the notebooks train them.
    """
    quant, dtype = PRECISIONS[precision]
    real = real_meta(model_id)
    run = TrainingRun.lora(real, r, target_modules, **{"dtype": dtype, **CALCULATOR_RUN, **run_fields})
    parts = lora_training_bill(real, run, quant)
    total = sum(parts.values())
    fits = {gpu: total <= GPU_BUDGET_GB[gpu] * 1e9 for gpu in GPUS}
    return {"parts": parts, "total": total, "trainable_params": run.trainable_params, "fits": fits,
            "run": run}


def format_bill(bill: dict) -> str:
    """The bill as a few lines of text: parts, total, and fit per GPU.

    Taught in lesson 01, section «6 · The memory bill of training Llama-3.1-8B».
    """
    lines = [f"{k:>18}: {fmt_bytes(v)}" for k, v in bill["parts"].items()]
    lines.append(f"{'total':>18}: {fmt_bytes(bill['total'])}  ({bill['trainable_params']:,} trainable)")
    lines.append(" " * 20 + "  ".join(f"{g.upper()} {'fits' if ok else 'does not fit'}"
                                      for g, ok in bill["fits"].items()))
    return "\n".join(lines)


def memory_calculator(model_id: str = "meta-llama/Llama-3.1-8B-Instruct"):
    """Return an ipywidgets widget over ``memory_bill`` (display it in a notebook cell).

    Taught in lesson 01, section «6 · The memory bill of training Llama-3.1-8B».
    """
    import ipywidgets as widgets

    linear_names = sorted({name.split(".")[-1] for name, m in real_meta(model_id).named_modules()
                           if isinstance(m, torch.nn.Linear) and name != "lm_head"})

    def show(precision, r, targets, **run_fields):
        print(format_bill(memory_bill(model_id, precision, r, targets, **run_fields)))

    return widgets.interactive(
        show,
        precision=widgets.Dropdown(options=list(PRECISIONS), value="nf4", description="base"),
        r=widgets.IntSlider(value=16, min=1, max=256, description="rank r"),
        targets=widgets.SelectMultiple(options=linear_names, value=tuple(linear_names),
                                       rows=len(linear_names), description="targets"),
        batch_size=widgets.IntSlider(value=4, min=1, max=32, description="batch"),
        seq_len=widgets.IntSlider(value=512, min=64, max=4096, step=64, description="seq len"),
        gradient_checkpointing=widgets.Checkbox(value=True, description="checkpointing"),
        optim=widgets.Dropdown(options=["adamw_torch", "paged_adamw_32bit", "adamw_8bit", "paged_adamw_8bit"],
                               value="paged_adamw_8bit", description="optimizer"),
    )
