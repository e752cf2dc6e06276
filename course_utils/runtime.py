"""Runtime model: one function predicts each notebook's wall time on a GPU profile, with its assumptions.

predicted minutes = download (model bytes / bandwidth)
                  + training (FLOPs per token x tokens / achievable throughput)
                  + generation (generated tokens x weight bytes read per decoding step / memory bandwidth)

Throughputs are for stock PyTorch + bitsandbytes (no fused or Unsloth kernels): a stated fraction of
each GPU's datasheet peak, and lower still for int8/NF4 matmuls, which dequantize on the fly. They are
predictions, printed as such, until a real GPU run measures them. ``WORKLOADS`` is the one table of
what each notebook does (models downloaded, sequences trained, tokens generated); the notebook
header tables and the instructor guide are generated from it by ``tools/runtime_table.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import PROFILES, Profile

DOWNLOAD_MB_S = 60.0  # Hub -> Colab download, MB/s (an assumption: Colab's usual range is 30-150)
HOST_OVERHEAD_MIN = 1.0  # kernel start, imports, pip install of the course (minutes)

GPU_SPECS = {  # datasheet dense 16-bit tensor TFLOPS and memory bandwidth GB/s
    "t4": {"peak_tflops": 65.0, "bandwidth_gbs": 320.0},
    "l4": {"peak_tflops": 121.0, "bandwidth_gbs": 300.0},
    "a100": {"peak_tflops": 312.0, "bandwidth_gbs": 1555.0},
}
MFU = {None: 0.30, "int8": 0.10, "nf4": 0.15}
"""Achieved share of peak FLOPs in training with stock PyTorch: ~30% for 16-bit matmuls at these small
batches; bitsandbytes' int8 (LLM.int8 outlier split) and NF4 (dequantize, then matmul) reach less."""
DECODE_EFFICIENCY = {None: 0.5, "int8": 0.15, "nf4": 0.3}
"""Share of memory bandwidth a greedy ``generate`` reaches per decoding step (batched prompts read the
weights once per step); int8 generation in bitsandbytes is known to be slow."""

MODEL_PARAMS_B = {"chat": 8.03, "chinese_chat": 1.54, "fused_qkv": 3.84, "embedding": 0.023}
DOWNLOAD_GB = {"chat": 16.1, "chinese_chat": 3.1, "fused_qkv": 7.7, "embedding": 0.09}


@dataclass(frozen=True)
class Workload:
    """What one notebook does on a GPU profile (a function of the profile's knobs)."""

    roles: tuple  # models downloaded
    quant: str | None  # format of the trained / generating model
    train_role: str | None = None
    train_tokens_per_seq: int = 0  # mean tokens of a training sequence (from the data set)
    train_epochs_of_profile_steps: float = 1.0  # runs of max_steps x batch x accum (07 resumes: 1.5)
    gen_role: str | None = None
    gen_sequences: str = "n_eval"  # "n_eval" or a number
    gen_passes: int = 0  # generation passes over gen_sequences (before / after training, ...)
    source: str = ""
    # extra LoRA runs of `profile.compare_steps` steps, one per base format (07: None = 16-bit, int8, nf4),
    # each scoring `n_eval` held-out sequences before and after; a 16-bit base whose weights alone exceed
    # the GPU is skipped, as the notebook's ledger skips it
    compare: tuple = ()
    compare_batch: int = 2
    compare_tokens_per_seq: int = 0


WORKLOADS = {
    "00_setup_check": Workload(("chat",), "nf4", gen_role="chat", gen_sequences="3", gen_passes=1,
                               source="three loads (fp16 skipped on a T4), one short chat each"),
    "01_finetuning_taxonomy": Workload(("chat",), "nf4", gen_role="chat", gen_sequences="3", gen_passes=1,
                                       source="counts on the loaded model, a short chat"),
    "02_icl_and_rag": Workload(("chat", "embedding"), "nf4", gen_role="chat", gen_sequences="48",
                               gen_passes=3, source="zero-shot, few-shot and RAG, 8 test items per label"),
    "03_8bit_loading": Workload(("chat",), "int8", gen_role="chat", gen_sequences="3", gen_passes=1,
                                source="int8 load, outlier statistics, a short chat"),
    "04_lora_math": Workload(("chat",), "nf4", source="LoRA math on one layer, no generation"),
    "05_nf4_quantization": Workload(("chat",), "nf4", gen_role="chat", gen_sequences="3", gen_passes=1,
                                    source="NF4 load, three layers from the checkpoint"),
    "06_lora_gsm8k": Workload(("chat",), "int8", "chat", 250, 1.0, "chat", "n_eval", 2,
                              source="GSM8K question + answer ≈ 250 tokens; accuracy before and after"),
    "07_qlora_llama": Workload(("chat",), "nf4", "chat", 400, 1.5, "chat", "3", 2,
                               source="guanaco chats ≈ 400 tokens; interrupted at half and resumed; then "
                                      "16-bit/int8/NF4 arms on chats <= 256 tokens (≈ 150)",
                               compare=(None, "int8", "nf4"), compare_tokens_per_seq=150),
    "08_persona_sft_zhenhuan": Workload(("chinese_chat",), None, "chinese_chat", 300, 1.0, "chinese_chat",
                                        "n_eval", 2, source="huanhuan.json exchanges ≈ 300 tokens"),
    "09_custom_lora_chatglm": Workload(("fused_qkv",), None, "fused_qkv", 64, 1.0, "fused_qkv", "62", 2,
                                       source="3 epochs of short sentences, 62 held out (12 + 50 written)"),
}


def predict_runtime(notebook: str, profile: Profile) -> dict[str, float]:
    """Return predicted minutes (download, training, generation, overhead, total) on a GPU profile."""
    w, gpu = WORKLOADS[notebook], GPU_SPECS[profile.target]
    download = sum(DOWNLOAD_GB[r] for r in w.roles) * 1e3 / DOWNLOAD_MB_S / 60
    train = 0.0
    if w.train_role:
        tokens = (profile.max_steps * profile.batch_size * profile.grad_accum * w.train_tokens_per_seq
                  * w.train_epochs_of_profile_steps)
        flops = 8 * MODEL_PARAMS_B[w.train_role] * 1e9 * tokens  # LoRA, checkpointing: 2+2 fwd, 4 bwd
        train = flops / (gpu["peak_tflops"] * 1e12 * MFU[w.quant]) / 60
    for quant in w.compare:
        params = MODEL_PARAMS_B[w.train_role] * 1e9
        if quant is None and params * 2 > profile.gpu_memory_gb * 1e9:
            continue
        tokens = profile.compare_steps * w.compare_batch * profile.grad_accum * w.compare_tokens_per_seq
        scored = 2 * profile.n_eval * w.compare_tokens_per_seq  # forward passes only: 2 FLOPs per parameter
        train += (8 * tokens + 2 * scored) * params / (gpu["peak_tflops"] * 1e12 * MFU[quant]) / 60
    gen = 0.0
    if w.gen_role:
        n = profile.n_eval if w.gen_sequences == "n_eval" else int(w.gen_sequences)
        batches = -(-n // 16)  # prompts are generated in batches of 16
        bytes_per_param = {None: 2, "int8": 1, "nf4": 0.5}[w.quant]
        step_s = (MODEL_PARAMS_B[w.gen_role] * 1e9 * bytes_per_param
                  / (gpu["bandwidth_gbs"] * 1e9 * DECODE_EFFICIENCY[w.quant]))
        gen = w.gen_passes * batches * profile.max_new_tokens * step_s / 60
    total = download + train + gen + HOST_OVERHEAD_MIN
    return {"download": download, "training": train, "generation": gen, "overhead": HOST_OVERHEAD_MIN,
            "total": total}


def assumptions() -> str:
    """The stated assumptions behind every predicted runtime, as one paragraph."""
    gpus = "; ".join(f"{g.upper()} {s['peak_tflops']:g} TFLOPS, {s['bandwidth_gbs']:g} GB/s"
                     for g, s in GPU_SPECS.items())
    return (f"*Predictions* of `course_utils.runtime.predict_runtime`, not measurements: download at "
            f"{DOWNLOAD_MB_S:g} MB/s; training 8 FLOPs per parameter per token (LoRA with gradient "
            f"checkpointing) at {MFU[None]:.0%} of peak (16-bit), {MFU['nf4']:.0%} (NF4), {MFU['int8']:.0%} "
            f"(int8) with stock PyTorch/bitsandbytes; generation bandwidth-bound at "
            f"{DECODE_EFFICIENCY[None]:.0%}/{DECODE_EFFICIENCY['nf4']:.0%}/{DECODE_EFFICIENCY['int8']:.0%} "
            f"(16-bit/NF4/int8) of memory bandwidth; {HOST_OVERHEAD_MIN:g} min start-up. Datasheets: {gpus}.")


def runtime_table_markdown(notebook: str | None = None) -> str:
    """Markdown table of predicted minutes per GPU profile, for one notebook or for all."""
    gpus = ("t4", "l4", "a100")
    names = [notebook] if notebook else list(WORKLOADS)
    head = "| notebook | " + " | ".join(f"{g.upper()} (predicted)" for g in gpus) + " |"
    rows = [head, "|---" * (len(gpus) + 1) + "|"]
    for nb in names:
        cells = []
        for g in gpus:
            p = predict_runtime(nb, PROFILES[g])
            cells.append(f"≈ {p['total']:.0f} min ({p['download']:.0f} download, {p['training']:.0f} "
                         f"training, {p['generation']:.0f} generation)")
        rows.append(f"| {nb[:2]} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + assumptions()
