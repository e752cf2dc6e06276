"""Runtime model: one function predicts each notebook's wall time on a GPU profile, with its assumptions.

predicted minutes = download (model bytes / bandwidth)
                  + loading (checkpoint bytes read per load x loads / disk or page-cache bandwidth,
                             + 16-bit bytes quantized per load / quantization rate, for int8/NF4 loads)
                  + training (FLOPs per token x tokens / achievable throughput)
                  + scoring (held-out forward passes: 2 FLOPs per parameter per token / throughput)
                  + generation (decoding steps x weight bytes read per step / memory bandwidth; a batch
                                runs to its token budget: one long answer keeps every row decoding)

Throughputs are for stock PyTorch + bitsandbytes (no fused or Unsloth kernels): a stated fraction of
each GPU's datasheet peak, and lower still for int8/NF4 matmuls, which dequantize on the fly. They are
predictions, printed as such, until a real GPU run measures them. ``WORKLOADS`` is the one table of
what each notebook does (models downloaded, sequences trained, tokens generated); the notebook
header tables and the instructor guide are generated from it by ``tools/runtime_table.py``. Its load
counts are checked against the loads the T4 and A100 rehearsals make (``make test``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..memory import checkpoint_gb, param_count
from ..registry import nf4_source
from .profiles import PROFILES, Profile

DOWNLOAD_MB_S = 60.0  # Hub -> Colab download, MB/s (an assumption: Colab's usual range is 30-150)
LOAD_GB_S = 0.3  # a load that reads the checkpoint from the VM's disk, GB/s (assumed)
CACHED_LOAD_GB_S = 2.0  # a load from the page cache, where the checkpoint fits the host RAM (an assumption)
# quantizing in a load reads the 16-bit weights and writes the codes (int8: 1/2, NF4: 1/4 of the bytes)
# and constants; bitsandbytes' per-tensor kernels reach this share of the memory bandwidth (assumed;
# gpu-check times it)
QUANTIZE_EFFICIENCY = 0.10
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

@dataclass(frozen=True)
class Workload:
    """What one notebook does on a GPU profile (a function of the profile's knobs)."""

    # roles whose models it downloads (a dict: per target, "default" for the rest); "chat_nf4" is the chat
    # model's pre-quantized NF4 copy (the NF4-only lessons). downloads.download_plan reads them too.
    roles: tuple | dict
    quant: str | None  # format of the trained / generating model
    train_role: str | None = None
    train_tokens_per_seq: int = 0  # mean tokens of a training sequence (from the data set)
    train_epochs_of_profile_steps: float = 1.0  # runs of max_steps x batch x accum
    gen_role: str | None = None
    gen_sequences: str = "n_eval"  # "n_eval" or a number
    gen_passes: int = 0  # generation passes over gen_sequences (before / after training, ...)
    gen_batch: int = 16  # prompts generated together (one weight read per decoding step for the batch)
    # the token budget every batch runs to: the profile's max_new_tokens, or (06, which sizes it from the
    # longest reference answer) the notebook's cap on it, in tokens
    gen_tokens: int | None = None
    loads: int | dict = 1  # loads of roles[0] from disk (a dict: per target, "default" for the rest)
    score_sequences: str = "0"  # sequences scored by one forward pass: "n_eval", "heldout" or a number
    score_tokens_per_seq: int = 0
    score_passes: int = 0  # scoring passes (before / after training, ...)
    processes: int | dict = 1  # processes that each load the model (10: one per GPU; a dict as for loads)
    train_sequences: int = 0  # sequences trained in all, when a notebook's runs ignore the profile's steps
    source: str = ""
    # extra LoRA runs of `profile.compare_steps` steps, one per base format (08: None = 16-bit, int8, nf4),
    # each scoring `n_eval` held-out sequences before and after; a 16-bit base whose weights alone exceed
    # the GPU is skipped, as the notebook's ledger skips it
    compare: tuple = ()
    compare_role: str | None = None  # the role the arms train (default: train_role)
    compare_batch: int = 2
    compare_tokens_per_seq: int = 0
    compare_heldout: int = 32  # held-out sequences each arm scores (at most the profile's n_eval)

    def n_loads(self, target: str) -> int:
        """Loads of the main model on ``target`` ("t4", "l4", "a100")."""
        return _per_target(self.loads, target)

    def n_processes(self, target: str) -> int:
        """Processes that each load the model on ``target`` (one per GPU of the machine)."""
        return _per_target(self.processes, target)

    def roles_on(self, target: str) -> tuple:
        """Roles whose checkpoints the notebook downloads on ``target``."""
        return self.roles if isinstance(self.roles, tuple) else _per_target(self.roles, target)


def _per_target(value, target: str):
    return value if isinstance(value, int) else value.get(target, value["default"])


WORKLOADS = {
    "00_setup_check": Workload(("chat",), "nf4", gen_role="chat", gen_sequences="3", gen_passes=1,
                               loads={"t4": 2, "default": 3},
                               source="three loads (fp16 skipped on a T4), one short chat each"),
    "01_finetuning_taxonomy": Workload(("chat_nf4",), "nf4", gen_role="chat_nf4", gen_sequences="3",
                                       gen_passes=1, source="the pre-quantized NF4 checkpoint: counts on the "
                                       "loaded model, a short chat"),
    "02_icl_and_rag": Workload({"t4": ("chat_nf4", "embedding"), "default": ("chat", "embedding")}, "nf4",
                               gen_role="chat", gen_sequences="48",
                               gen_passes=3, source="zero-shot, few-shot and RAG, 8 test items per label"),
    "03_8bit_loading": Workload(("chat",), "int8", gen_role="chat", gen_sequences="3", gen_passes=1,
                                loads={"t4": 1, "default": 2}, score_sequences="24", score_tokens_per_seq=40,
                                score_passes=2, source="16-bit and int8 loads, each with a short chat and "
                                "24 held-out texts of 40 tokens scored (outlier statistics); the int8 load "
                                "alone on a T4, where the 16-bit reference does not fit"),
    "04_lora_math": Workload({"t4": ("chat_nf4",), "default": ("chat",)}, "nf4", "chat", 24,
                             train_sequences=2 * 8 * 4,
                             source="LoRA math on one layer (NF4 on a T4, 16-bit elsewhere); "
                                    "two LoRA runs (q, v and all linear, in the top 4 layers) of "
                                    "compare_steps (8 on every GPU) steps x 4 texts of <= 24 tokens; "
                                    "no generation"),
    "05_nf4_quantization": Workload(("chat", "chinese_chat"), "nf4", gen_role="chat", gen_sequences="3",
                                    gen_passes=1, source="NF4 load, three layers from the checkpoint; then "
                                    "Qwen2.5-1.5B in six formats, each scoring 24 held-out texts of "
                                    "40 tokens (seconds: left out, as are its five extra loads)"),
    "06_lora_gsm8k": Workload(("chat",), "int8", "chat", 250, 1.0, "chat", "n_eval", 2, 32, 384,
                              loads=3,
                              score_sequences="heldout", score_tokens_per_seq=250, score_passes=2,
                              source="GSM8K question + answer ≈ 250 tokens; answer NLL on ≥ 48 held-out "
                              "problems and accuracy by generation, before and after; reload"),
    "07_qlora_llama": Workload(("chat",), "nf4", "chat", 400, 1.0, "chat", "3", 2,
                               loads=3, score_sequences="n_eval",
                               score_tokens_per_seq=400, score_passes=2,
                               source="guanaco chats ≈ 400 tokens; interrupted at half and resumed "
                               "(max_steps in all); held-out loss before and after; NF4 and FP4 reloads"),
    "08_qlora_cost_and_merge": Workload(("chat", "small_chat"), "nf4", "small_chat", 256, 2.0,
                                        gen_role="chat", gen_sequences="1", gen_passes=1,
                                        loads={"t4": 2, "default": 8},
                                        source="SmolLM2-135M trained twice (LoRA, full) on 256-token "
                                        "GSM8K blocks; 16-bit/int8/NF4 arms on guanaco chats <= 256 tokens "
                                        "(≈ 150), each loaded and merged into the 16-bit weights where they "
                                        "fit (not on a T4); the NF4 arm merged into its dequantized base and "
                                        "reloaded (not on a T4)",
                                        compare=(None, "int8", "nf4"), compare_role="chat",
                                        compare_tokens_per_seq=150),
    "09_persona_sft_zhenhuan": Workload(("chinese_chat",), None, "chinese_chat", 300, 1.0, "chinese_chat",
                                        "n_eval", 3, loads=2, score_sequences="n_eval",
                                        score_tokens_per_seq=300, score_passes=2,
                                        source="huanhuan.json exchanges ≈ 300 tokens; "
                                        "answers before, after, and without the name"),
    "10_custom_lora_chatglm": Workload(("fused_qkv",), None, "fused_qkv", 64, 1.0, "fused_qkv", "40", 2,
                                       loads=4, source="3 epochs of short sentences, 40 held out (12 + 28 "
                                       "written); two NF4 loads"),
    "11_scale_out": Workload(("chinese_chat",), None, "chinese_chat", 32, 0.75, loads=3,
                             processes={"t4": 2, "default": 8},
                             source="one process, then DDP and FSDP on every GPU (Kaggle's 2 x T4, an "
                             "8-GPU node): rows of 32 tokens, ¾ of the steps; each launch loads the model "
                             "in every process"),
}


def role_model_id(role: str, target: str) -> str:
    """The Hub id behind a workload's role on ``target`` ("chat_nf4": the chat model's NF4 copy).

    The profile's own model, whatever a ``COURSE_<ROLE>_MODEL`` override says: the predictions are of
    the course's models, whose sizes the registry knows.
    """
    models = PROFILES[target].models
    return nf4_source(models["chat"]) if role == "chat_nf4" else models[role]


def main_model_id(notebook: str, profile: Profile) -> str:
    """The Hub id of the model a notebook loads ``n_loads`` times on ``profile`` (its first role)."""
    return role_model_id(WORKLOADS[notebook].roles_on(profile.target)[0], profile.target)


def load_seconds(checkpoint_gb: float, loads: int, host_ram_gb: float, quantized_gb: float = 0.0,
                 target: str = "t4") -> float:
    """Seconds to load a checkpoint ``loads`` times, just after downloading it.

    Where the checkpoint fits the host RAM, the download leaves it in the page cache and every load
    reads memory; a Colab T4's 12.7 GB does not hold a 16 GB checkpoint, so there each load reads the disk.
    A load in int8 or NF4 also quantizes ``quantized_gb`` of 16-bit weights on the GPU.
    """
    read = checkpoint_gb / (CACHED_LOAD_GB_S if checkpoint_gb < host_ram_gb else LOAD_GB_S)
    return loads * (read + quantize_seconds(quantized_gb * 1e9, target))


def quantize_seconds(bytes16: float, target: str) -> float:
    """Predicted seconds for bitsandbytes to quantize ``bytes16`` bytes of 16-bit weights on ``target``."""
    return bytes16 * 1.5 / (GPU_SPECS[target]["bandwidth_gbs"] * 1e9 * QUANTIZE_EFFICIENCY)


def train_seconds(params: float, tokens: float, quant: str | None, target: str) -> float:
    """Predicted seconds to train ``tokens`` tokens of LoRA (checkpointing) on ``params`` base parameters."""
    return 8 * params * tokens / (GPU_SPECS[target]["peak_tflops"] * 1e12 * MFU[quant])


def decode_step_seconds(params: float, quant: str | None, target: str) -> float:
    """Predicted seconds of one batched decoding step (one read of the weights) of ``params`` parameters."""
    bytes_per_param = {None: 2, "int8": 1, "nf4": 0.5}[quant]
    return params * bytes_per_param / (GPU_SPECS[target]["bandwidth_gbs"] * 1e9 * DECODE_EFFICIENCY[quant])


def predict_runtime(notebook: str, profile: Profile) -> dict[str, float]:
    """Return predicted minutes (download, loading, training, scoring, generation, overhead, total)."""
    w, gpu = WORKLOADS[notebook], GPU_SPECS[profile.target]
    roles = w.roles_on(profile.target)
    # sizes and parameter counts: the registry's, computed from the shipped configs
    gb = {r: checkpoint_gb(role_model_id(r, profile.target)) for r in roles}

    def n_params(role: str) -> int:
        return param_count(role_model_id(role, profile.target))

    download = sum(gb.values()) * 1e3 / DOWNLOAD_MB_S / 60
    loads = [w.n_loads(profile.target) * w.n_processes(profile.target)] + [1] * (len(roles) - 1)
    # the main model loads in the notebook's format; a pre-quantized checkpoint ("chat_nf4") is not quantized
    quantized = [2 * n_params(r) / 1e9 if (w.quant and k == 0 and r != "chat_nf4") else 0.0
                 for k, r in enumerate(roles)]
    loading = sum(load_seconds(gb[r], n, profile.host_ram_gb, q, profile.target)
                  for r, n, q in zip(roles, loads, quantized)) / 60
    train = 0.0
    if w.train_role:
        sequences = w.train_sequences or (profile.max_steps * profile.batch_size * profile.grad_accum
                                          * w.train_epochs_of_profile_steps)
        tokens = sequences * w.train_tokens_per_seq
        # LoRA, checkpointing: 2+2 fwd, 4 bwd
        train = train_seconds(n_params(w.train_role), tokens, w.quant, profile.target) / 60
    score = 0.0
    if w.score_passes:
        n = {"n_eval": profile.n_eval, "heldout": max(48, profile.n_eval)}.get(w.score_sequences)
        n = int(w.score_sequences) if n is None else n
        flops = 2 * n_params(roles[0]) * n * w.score_tokens_per_seq * w.score_passes
        score = flops / (gpu["peak_tflops"] * 1e12 * MFU[w.quant]) / 60
    for quant in w.compare:
        params = n_params(w.compare_role or w.train_role)
        if quant is None and params * 2 > profile.gpu_memory_gb * 1e9:
            continue
        tokens = profile.compare_steps * w.compare_batch * profile.grad_accum * w.compare_tokens_per_seq
        scored = 2 * min(w.compare_heldout, profile.n_eval) * w.compare_tokens_per_seq  # before and after
        rate = gpu["peak_tflops"] * 1e12 * MFU[quant] * 60
        train += 8 * tokens * params / rate
        score += 2 * scored * params / rate
    gen = 0.0
    if w.gen_role:
        n = profile.n_eval if w.gen_sequences == "n_eval" else int(w.gen_sequences)
        batches = -(-n // w.gen_batch)
        step_s = decode_step_seconds(n_params(w.gen_role), w.quant, profile.target)
        budget = w.gen_tokens or profile.max_new_tokens
        gen = w.gen_passes * batches * budget * step_s / 60
    total = download + loading + train + score + gen + HOST_OVERHEAD_MIN
    return {"download": download, "loading": loading, "training": train, "scoring": score,
            "generation": gen, "overhead": HOST_OVERHEAD_MIN, "total": total}


def assumptions() -> str:
    """The stated assumptions behind every predicted runtime, as one paragraph."""
    gpus = "; ".join(f"{g.upper()} {s['peak_tflops']:g} TFLOPS, {s['bandwidth_gbs']:g} GB/s"
                     for g, s in GPU_SPECS.items())
    decode = "/".join(f"{DECODE_EFFICIENCY[q]:.0%}" for q in (None, "nf4", "int8"))
    return (
        f"*Predictions* of `course_utils.machinery.runtime.predict_runtime`, not measurements: download at "
        f"{DOWNLOAD_MB_S:g} MB/s; a load reads the checkpoint at {CACHED_LOAD_GB_S:g} GB/s from the page "
        f"cache where the download left it (it fits the host RAM), at {LOAD_GB_S:g} GB/s from disk where "
        f"it does not (a 16 GB checkpoint on a free T4's 12.7 GB), and an int8/NF4 load quantizes "
        f"at {QUANTIZE_EFFICIENCY:.0%} of memory bandwidth; training 8 FLOPs per parameter per "
        f"token (LoRA with gradient checkpointing) at {MFU[None]:.0%} of peak (16-bit), "
        f"{MFU['nf4']:.0%} (NF4), {MFU['int8']:.0%} (int8) with stock PyTorch/bitsandbytes, held-out "
        f"scoring 2 FLOPs per parameter per token at the same rates; generation bandwidth-bound at "
        f"{decode} (16-bit/NF4/int8) of memory bandwidth, every batch running to its token budget; "
        f"{HOST_OVERHEAD_MIN:g} min start-up. "
        f"Datasheets: {gpus}.")


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
            cells.append(f"≈ {p['total']:.0f} min ({p['download']:.0f} download, {p['loading']:.0f} loading, "
                         f"{p['training']:.0f} training, {p['scoring']:.0f} scoring, "
                         f"{p['generation']:.0f} generation)")
        rows.append(f"| {nb[:2]} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n\n" + assumptions()
