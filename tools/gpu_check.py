"""`make gpu-check`: measure what the course predicts for a GPU, on the GPU in hand, with no download.

For each GPU profile (t4, l4, a100) and each notebook's main workloads the real architecture is built
from the config.json the course ships (``course_utils/sample_data/configs``) with random weights,
directly on the GPU, quantized the way ``BitsAndBytesConfig`` does it (every nn.Linear but the head
becomes a bitsandbytes ``Linear8bitLt`` or NF4 ``Linear4bit`` with double quantization), and a few
steps are run:

* load: the weights in int8 / NF4 / 16-bit: memory, and for int8 / NF4 the seconds bitsandbytes takes to
  quantize them (reading a checkpoint is not timed: there is none);
* train: the notebook's LoRA step at the profile's batch x cap length, gradient checkpointing,
  the notebook's optimizer, autocast in the profile's dtype and an fp16 GradScaler (as the Trainer);
* generate: greedy decoding at the notebook's batch, seconds per token.

Beside each measured row stand the memory ledger's prediction (``course_utils.machinery.ledger`` /
``memory.estimate_footprint``, without the CUDA context, as ``max_memory_allocated``) and the runtime
model's (``course_utils.machinery.runtime``), and their ratio. Then the CUDA-only code paths run once each on
tiny rehearsal-sized models (int8 and NF4 matmuls against the CPU's, the paged 8-bit optimizer's save
and restore, fp16 GradScaler steps, SDPA against eager attention). Rows that would not fit the GPU in
hand are skipped with the reason. Dependencies: torch, transformers, peft, accelerate, bitsandbytes.

Without CUDA the same code runs on the CPU with tiny copies of the same architectures (2 layers,
rehearsal widths, small vocabulary, short sequences): it checks its own plumbing, and its numbers are
the CPU process's (peak live CPU tensors by ``memory.measure_peak``), not a GPU's.

    python tools/gpu_check.py --out gpu_check.json           # all profiles that fit
    python tools/gpu_check.py --profiles t4                  # the T4 rows only
    python tools/gpu_check.py --write gpu_check.json         # measured figures into the guide and headers

``--write`` puts a "Measured on <GPU>, <date>" table into docs/INSTRUCTOR_GUIDE.md and into the header
of each notebook it measured (between ``<!-- gpu-check:start -->`` and ``<!-- gpu-check:end -->``),
replacing an earlier measurement; the CPU mode's plumbing figures are refused there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from course_utils import memory  # noqa: E402
from course_utils.machinery import runtime  # noqa: E402
from course_utils.machinery.profiles import PROFILES  # noqa: E402
from course_utils.memory import TrainingRun, lora_training_bill  # noqa: E402

GUIDE = ROOT / "docs" / "INSTRUCTOR_GUIDE.md"
NOTEBOOKS = ROOT / "notebooks"
START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"
GPU_PROFILES = ("t4", "l4", "a100")
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ROLE_PARAMS = {"chat": "chat", "chinese_chat": "chinese_chat"}
TRAIN_STEPS, GEN_TOKENS, PROMPT_TOKENS = 3, 8, 32
QUANTIZE_SECONDS = [0.0]  # seconds bitsandbytes spent quantizing, summed over the layers of the last build

# notebook -> (role, base format, LoRA r, targets, optimizer), as the notebooks' CFG cells set them
TRAIN_ROWS = {
    "06_lora_gsm8k": ("chat", "int8", 16, ("q_proj", "v_proj"), "adamw_torch"),
    "07_qlora_llama": ("chat", "nf4", 16, ALL_LINEAR, "paged_adamw_8bit"),
    "09_persona_sft_zhenhuan": ("chinese_chat", None, 8, ALL_LINEAR, "adamw_torch"),
}
LOAD_ROWS = {"03_8bit_loading": ("chat", "int8"), "05_nf4_quantization": ("chat", "nf4"),
             "00_setup_check": ("chat", None)}
GEN_ROWS = {"06_lora_gsm8k": "chat", "07_qlora_llama": "chat"}


# ----------------------------------------------------------------------------- building the models

def real_config(role: str, tiny: bool):
    """The shipped config of a role's GPU model; with ``tiny`` the rehearsal's 2-layer copy of it."""
    from course_utils.machinery.rehearsal import shrink_config

    config = memory.shipped_config(PROFILES["t4"].models[role])
    if tiny:
        config = shrink_config(config)
        config.vocab_size = 512
    return config


def _linear(child: nn.Linear, quant: str, dtype: torch.dtype, device: str) -> nn.Module:
    """A bitsandbytes layer with random weights made on ``device`` (what BitsAndBytesConfig builds)."""
    import bitsandbytes as bnb

    w = torch.empty(child.out_features, child.in_features, device=device, dtype=dtype).normal_(0, 0.02)
    bias = child.bias is not None
    if quant == "int8":
        layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=bias, has_fp16_weights=False,
                                    threshold=6.0, device="meta")
        layer.weight = bnb.nn.Int8Params(w.cpu() if device == "cpu" else w, requires_grad=False,
                                         has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=bias, compute_dtype=dtype,
                                  quant_type="nf4", compress_statistics=True, quant_storage=torch.uint8,
                                  device="meta")
        layer.weight = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True,
                                         quant_storage=torch.uint8)
    if bias:
        layer.bias = nn.Parameter(torch.zeros(child.out_features, device=device, dtype=dtype),
                                  requires_grad=False)
    _sync()
    t0 = time.perf_counter()
    layer = layer.to(device)  # quantizes the weight, as a load does
    _sync()
    QUANTIZE_SECONDS[0] += time.perf_counter() - t0
    del w
    return layer


def build_model(config, quant: str | None, dtype: torch.dtype, device: str):
    """The architecture of ``config`` with random weights on ``device``, one layer materialized at a time.

    The tree is made on the meta device; each linear is then created on the device and (for int8/NF4)
    quantized at once, so an 8B model never holds its 16-bit weights in full (a T4 could not).
    """
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and child is not head and quant:
                setattr(parent, name, _linear(child, quant, dtype, device))
            elif "rotary" in name:
                with torch.device(device):
                    setattr(parent, name, type(child)(config=model.config))
    for mod_name, module in model.named_modules():
        for name, p in list(module.named_parameters(recurse=False)):
            if p.is_meta:
                new = torch.empty(p.shape, device=device, dtype=dtype)
                new.fill_(1.0) if "norm" in mod_name or p.dim() == 1 else new.normal_(0, 0.02)
                setattr(module, name, nn.Parameter(new, requires_grad=False))
        for name, b in list(module.named_buffers(recurse=False)):
            if b.is_meta:
                module.register_buffer(name, torch.zeros(b.shape, device=device, dtype=b.dtype))
    if getattr(model.config, "tie_word_embeddings", False):
        model.get_output_embeddings().weight = model.get_input_embeddings().weight
    elif head.weight.is_meta:
        new = torch.empty(head.weight.shape, device=device, dtype=dtype).normal_(0, 0.02)
        head.weight = nn.Parameter(new, requires_grad=False)
    model.requires_grad_(False)
    return model.eval()


# ----------------------------------------------------------------------------- measuring

def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Measure:
    """Peak bytes above zero (CUDA: max_memory_allocated/reserved; CPU: the profiler's live tensors)."""

    def __init__(self, device: str):
        self.device, self.allocated, self.reserved, self.seconds = device, 0.0, None, 0.0

    def __enter__(self):
        if self.device == "cuda":
            _sync()
            torch.cuda.reset_peak_memory_stats()
            self.t0 = time.perf_counter()
        else:
            self._cm = memory.measure_peak()
            self._res = self._cm.__enter__()
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        _sync()
        self.seconds = time.perf_counter() - self.t0
        if self.device == "cuda":
            self.allocated = float(torch.cuda.max_memory_allocated())
            self.reserved = float(torch.cuda.max_memory_reserved())
        else:
            self._cm.__exit__(*exc)
            self.allocated = float(self._res.peak)  # live CPU tensors of the block
        return False


def free():
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_steps(model, quant, dtype, r, targets, optim, batch, seq, device):
    """LoRA steps as the Trainer runs them: kbit prep, checkpointing, autocast, fp16 GradScaler."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quant:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05,
                                             target_modules=list(targets), task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if optim == "paged_adamw_8bit":
        import bitsandbytes as bnb

        opt = bnb.optim.PagedAdamW8bit(params, lr=1e-4)
    else:
        opt = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)
    times = []
    for _ in range(TRAIN_STEPS):
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=dtype):
            loss = model(input_ids=ids, labels=ids).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        _sync()
        times.append(time.perf_counter() - t0)
    return model, min(times[1:]), float(loss)


def generate_tokens(model, batch, device):
    ids = torch.randint(0, model.config.vocab_size, (batch, PROMPT_TOKENS), device=device)
    kw = dict(max_new_tokens=GEN_TOKENS, min_new_tokens=GEN_TOKENS, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids[:, :4], max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=0)
        _sync()
        t0 = time.perf_counter()
        out = model.generate(ids, **kw)
        _sync()
    return (time.perf_counter() - t0) / (out.shape[1] - PROMPT_TOKENS)


# ----------------------------------------------------------------------------- the rows

def plan(profiles, tiny: bool) -> list[dict]:
    """Every row to run: profile, notebook, kind, model and the settings the prediction is made for."""
    rows = []
    for name in profiles:
        prof = PROFILES[name]
        seq = 32 if tiny else prof.max_seq_len
        for nb, (role, quant) in LOAD_ROWS.items():
            rows.append(dict(profile=name, notebook=nb, kind="load", role=role, quant=quant))
        for nb, (role, quant, r, targets, optim) in TRAIN_ROWS.items():
            rows.append(dict(profile=name, notebook=nb, kind="train", role=role, quant=quant, r=r,
                             targets=list(targets), optim=optim, batch=prof.batch_size, seq=seq))
        for nb, role in GEN_ROWS.items():
            w = runtime.WORKLOADS[nb]
            rows.append(dict(profile=name, notebook=nb, kind="generate", role=role, quant=w.quant,
                             batch=w.gen_batch))
    return rows


def predict(row: dict, config) -> dict:
    """The ledger's bytes (no CUDA context) and the runtime model's seconds for one row."""
    prof = PROFILES[row["profile"]]
    real = memory.meta_model(config)
    est = memory.estimate_footprint(real, row["quant"], prof.dtype)
    params = est["params"]
    if row["kind"] == "load":  # seconds: quantizing the 16-bit weights (the runtime model's share of a load)
        sec = runtime.quantize_seconds(2 * params, prof.target) if row["quant"] else None
        return {"bytes": est["total"], "seconds": sec, "unit": "s quantize" if sec else "",
                "recipe_bytes": est["total"]}
    if row["kind"] == "train":
        run = TrainingRun.lora(real, row["r"], row["targets"], batch_size=row["batch"], seq_len=row["seq"],
                               gradient_checkpointing=True, optim=row["optim"], dtype=prof.dtype)
        parts = lora_training_bill(real, run, row["quant"])
        nbytes = sum(parts.values()) - parts["cuda_context"]
        sec = runtime.train_seconds(params, row["batch"] * row["seq"], row["quant"], prof.target)
        return {"bytes": nbytes, "seconds": sec, "unit": "s/step", "recipe_bytes": nbytes}
    return {"bytes": est["total"], "seconds": runtime.decode_step_seconds(params, row["quant"], prof.target),
            "unit": "s/token", "recipe_bytes": est["total"]}


def run_row(row: dict, device: str, tiny: bool, capacity: float) -> dict:
    prof = PROFILES[row["profile"]]
    config = real_config(row["role"], tiny)
    row = {**row, "model": PROFILES["t4"].models[row["role"]] + (" (tiny)" if tiny else ""),
           "dtype": prof.dtype_name, **{f"pred_{k}": v for k, v in predict(row, config).items()}}
    if not tiny and row["pred_recipe_bytes"] + memory.CUDA_CONTEXT_BYTES > prof.gpu_memory_gb * 1e9:
        return {**row, "status": "skipped", "reason": f"not in the {prof.name} recipe: the ledger predicts "
                f"{memory.fmt_bytes(row['pred_bytes'])}, over its {prof.gpu_memory_gb:g} GB budget"}
    if row["pred_bytes"] * 1.15 > capacity:
        return {**row, "status": "skipped", "reason": f"does not fit this GPU: predicted "
                f"{memory.fmt_bytes(row['pred_bytes'])} (+15%) of {memory.fmt_bytes(capacity)} free"}
    free()
    seconds = None
    try:
        with Measure(device) as m:
            QUANTIZE_SECONDS[0] = 0.0
            model = build_model(config, row["quant"], prof.dtype, device)
            if row["kind"] == "load" and row["quant"]:
                seconds = QUANTIZE_SECONDS[0]
            elif row["kind"] == "train":
                model, seconds, loss = train_steps(model, row["quant"], prof.dtype, row["r"], row["targets"],
                                                   row["optim"], row["batch"], row["seq"], device)
                row["loss"] = loss
            elif row["kind"] == "generate":
                seconds = generate_tokens(model, row["batch"], device)
        del model
    except torch.OutOfMemoryError as exc:
        free()
        return {**row, "status": "oom", "reason": str(exc).splitlines()[0][:200]}
    free()
    out = {**row, "status": "ok", "allocated": m.allocated, "reserved": m.reserved, "seconds": seconds,
           "mem_ratio": m.allocated / row["pred_bytes"]}
    out["time_ratio"] = seconds / row["pred_seconds"] if seconds and row["pred_seconds"] else None
    out["fits"] = (m.allocated + memory.CUDA_CONTEXT_BYTES <= prof.gpu_memory_gb * 1e9) if not tiny else None
    return out


# ----------------------------------------------------------------------------- CUDA-only paths

def kernel_checks(device: str) -> list[dict]:
    """The CUDA-only code paths once each, on tiny models; on a CPU the same code against itself."""
    import bitsandbytes as bnb

    checks = []

    def check(name, fn):
        t0 = time.perf_counter()
        try:
            ok, detail = fn()
            checks.append({"check": name, "ok": bool(ok), "detail": detail,
                           "seconds": time.perf_counter() - t0})
        except Exception as exc:  # a failing kernel is the finding: report it, run the other checks
            checks.append({"check": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300],
                           "seconds": time.perf_counter() - t0})

    def matmul(quant):
        def fn():
            torch.manual_seed(0)
            ref = nn.Linear(256, 128, bias=False)
            x = torch.randn(4, 256, dtype=torch.float16)
            outs = []
            for dev in ("cpu", device):
                layer = _linear(ref, quant, torch.float16, "cpu")
                layer.weight = type(layer.weight)(ref.weight.data.half().clone(), requires_grad=False,
                                                  **({"has_fp16_weights": False} if quant == "int8" else
                                                     {"quant_type": "nf4", "compress_statistics": True}))
                layer = layer.to(dev)
                outs.append(layer(x.to(dev)).float().cpu())
            exact = (x.float() @ ref.weight.data.t())
            err = (outs[0] - outs[1]).abs().max().item() / exact.abs().max().item()
            qerr = (outs[1] - exact).abs().max().item() / exact.abs().max().item()
            return err < 0.02 and qerr < 0.2, f"{device} vs CPU rel. max diff {err:.4f}; vs fp32 {qerr:.3f}"
        return fn

    def paged():
        torch.manual_seed(0)
        model = nn.Linear(64, 64).to(device)
        opt = bnb.optim.PagedAdamW8bit(model.parameters(), lr=1e-2)
        x = torch.randn(8, 64, device=device)

        def step(m, o):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()

        for _ in range(3):
            step(model, opt)
        saved_m = {k: v.clone() for k, v in model.state_dict().items()}
        saved_o = opt.state_dict()
        twin = nn.Linear(64, 64).to(device)
        twin.load_state_dict(saved_m)
        opt2 = bnb.optim.PagedAdamW8bit(twin.parameters(), lr=1e-2)
        opt2.load_state_dict(saved_o)
        step(model, opt)
        step(twin, opt2)
        diff = max((a - b).abs().max().item() for a, b in zip(model.parameters(), twin.parameters()))
        return diff < 1e-6, f"after save/restore the next step differs by {diff:.2e}"

    def scaler():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 1)).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sc = torch.amp.GradScaler(device, init_scale=2.0 ** 16)
        x, y = torch.randn(64, 32, device=device), torch.randn(64, 1, device=device)
        losses = []
        for _ in range(20):
            with torch.autocast(device, dtype=torch.float16):
                loss = (model(x).float() - y).pow(2).mean()
            sc.scale(loss).backward()
            sc.step(opt)
            sc.update()
            opt.zero_grad()
            losses.append(loss.item())
        ok = math.isfinite(sc.get_scale()) and losses[-1] < losses[0]
        return ok, f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, scale {sc.get_scale():g}"

    def sdpa():
        from transformers import AutoModelForCausalLM

        config = real_config("chat", tiny=True)
        torch.manual_seed(0)
        dtype = torch.float16 if device == "cuda" else torch.float32
        a = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").to(device, dtype).eval()
        b = AutoModelForCausalLM.from_config(config, attn_implementation="eager").to(device, dtype).eval()
        b.load_state_dict(a.state_dict())
        ids = torch.randint(0, config.vocab_size, (2, 64), device=device)
        with torch.no_grad():
            la, lb = a(ids).logits.float(), b(ids).logits.float()
        err = (la - lb).abs().max().item() / lb.abs().max().item()
        return err < 0.01, f"SDPA vs eager logits, rel. max diff {err:.2e} ({dtype})"

    check("bitsandbytes int8 matmul", matmul("int8"))
    check("bitsandbytes NF4 matmul", matmul("nf4"))
    check("paged 8-bit AdamW save/restore", paged)
    check("fp16 GradScaler steps", scaler)
    check("SDPA attention", sdpa)
    return checks


# ----------------------------------------------------------------------------- output

def _gb(x):
    return "-" if x is None else f"{x / 1e9:.2f}" if x >= 1e8 else f"{x / 1e6:.1f}M"


def _s(x):
    return "-" if x is None else f"{x:.3g}"


def table(result: dict) -> str:
    head = ("| profile | notebook | row | predicted GB | measured alloc GB | reserved GB | mem ratio | "
            "predicted s | measured s | time ratio | fits |")
    lines = [head, "|---" * 11 + "|"]
    for r in result["rows"]:
        shape = {"train": f" b{r.get('batch')}x{r.get('seq')}", "generate": f" b{r.get('batch')}"}
        what = f"{r['kind']} {r['quant'] or r['dtype']}" + shape.get(r["kind"], "")
        if r["status"] != "ok":
            lines.append(f"| {r['profile']} | {r['notebook'][:2]} | {what} | {_gb(r['pred_bytes'])} | "
                         f"{r['status']}: {r['reason']} | | | | | | |")
            continue
        unit = f" {r['pred_unit']}" if r["pred_unit"] else ""
        lines.append(f"| {r['profile']} | {r['notebook'][:2]} | {what} | {_gb(r['pred_bytes'])} | "
                     f"{_gb(r['allocated'])} | {_gb(r['reserved'])} | {r['mem_ratio']:.2f} | "
                     f"{_s(r['pred_seconds'])}{unit} | {_s(r['seconds'])} | {_s(r['time_ratio'])} | "
                     f"{'-' if r['fits'] is None else 'yes' if r['fits'] else 'no'} |")
    lines += ["", "| CUDA-only path | ok | detail |", "|---|---|---|"]
    lines += [f"| {c['check']} | {'yes' if c['ok'] else 'NO'} | {c['detail']} |" for c in result["checks"]]
    return "\n".join(lines)


def run(profiles, out: Path | None, tiny: bool | None = None) -> dict:
    cuda = torch.cuda.is_available()
    tiny = (not cuda) if tiny is None else tiny
    device = "cuda" if cuda else "cpu"
    if cuda:
        free_bytes, total = torch.cuda.mem_get_info()
        gpu = torch.cuda.get_device_name(0)
    else:
        free_bytes = memory.system_memory()["available"]
        gpu = None
    t0 = time.perf_counter()
    rows = []
    for row in plan(profiles, tiny):
        rows.append(run_row(row, device, tiny, free_bytes))
        r = rows[-1]
        print(f"  {r['profile']:<5}{r['notebook'][:2]} {r['kind']:<9}{str(r['quant'] or r['dtype']):<9}"
              f"{r['status']}", flush=True)
    result = {"gpu": gpu, "device": device, "tiny": tiny, "date": dt.date.today().isoformat(),
              "torch": torch.__version__, "rows": rows, "checks": kernel_checks(device)}
    result["seconds"] = time.perf_counter() - t0
    print(table(result))
    print(f"\n{'GPU ' + gpu if gpu else 'CPU (tiny configs: plumbing check, not GPU figures)'}: "
          f"{result['seconds']:.1f} s")
    if out:
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    return result


def guide_block(result: dict) -> str:
    """The guide's generated block: measured figures with their machine and date."""
    where = result["gpu"] or "CPU (tiny configs; not GPU figures)"
    return (f"Measured on {where}, {result['date']} (`make gpu-check`, torch {result['torch']}); these "
            f"figures replace the ledger's and the runtime model's predictions for the rows below.\n\n"
            f"{table(result)}")


def with_block(text: str, body: str) -> str:
    """Replace the text between the gpu-check markers by ``body`` (appending the markers if missing)."""
    from tools.runtime_table import with_block as with_marked_block

    return with_marked_block(text, body, START, END)


def _measured(result: dict, allow_cpu: bool) -> dict:
    if result["tiny"] and not allow_cpu:
        raise SystemExit("this JSON comes from the CPU mode (tiny configs): its figures are not a GPU's, "
                         "so they go into no header or guide. Run `make gpu-check` on a CUDA machine.")
    return result


def write_guide(result_path: Path, guide: Path = GUIDE, allow_cpu: bool = False) -> None:
    result = _measured(json.loads(Path(result_path).read_text()), allow_cpu)
    guide.write_text(with_block(guide.read_text(), guide_block(result)))
    print(f"wrote the measured figures of {result_path} into {guide}")


def header_block(result: dict, notebook: str) -> str | None:
    """A notebook header's measured rows (None when gpu-check measured nothing of it)."""
    rows = [r for r in result["rows"] if r["notebook"] == notebook and r["status"] == "ok"]
    if not rows:
        return None
    where = result["gpu"] or "CPU (tiny configs; not GPU figures)"
    lines = [f"*Measured on {where}, {result['date']}* (`make gpu-check`, random weights of the real "
             f"architecture): these rows replace the predictions above.", "",
             "| profile | workload | predicted GB | measured GB (allocated) | predicted s | measured s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        shape = {"train": f" b{r.get('batch')}x{r.get('seq')}", "generate": f" b{r.get('batch')}"}
        what = f"{r['kind']} {r['quant'] or r['dtype']}" + shape.get(r["kind"], "")
        unit = f" {r['pred_unit']}" if r["pred_unit"] else ""
        lines.append(f"| {r['profile']} | {what} | {_gb(r['pred_bytes'])} | {_gb(r['allocated'])} | "
                     f"{_s(r['pred_seconds'])}{unit} | {_s(r['seconds'])} |")
    return "\n".join(lines)


def write_headers(result_path: Path, notebooks: Path = NOTEBOOKS, allow_cpu: bool = False) -> list[str]:
    """Write each measured notebook's rows into its header (first markdown cell); returns their names."""
    result = _measured(json.loads(Path(result_path).read_text()), allow_cpu)
    written = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        body = header_block(result, path.stem)
        if body is None:
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        text = with_block("".join(nb["cells"][0]["source"]), body)
        nb["cells"][0]["source"] = text.splitlines(keepends=True)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path.name)
    print(f"wrote the measured rows of {result_path} into {', '.join(written) or 'no notebook'}")
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", nargs="+", default=list(GPU_PROFILES), choices=GPU_PROFILES)
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    ap.add_argument("--write", type=Path, default=None, metavar="JSON",
                    help="write the measured figures of a gpu-check JSON into the guide and the headers")
    args = ap.parse_args(argv)
    if args.write:
        write_guide(args.write)
        write_headers(args.write)
        return 0
    result = run(args.profiles, args.out)
    failed = [c["check"] for c in result["checks"] if not c["ok"]]
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
