import time

import pytest
import torch
from torch import nn

from course_utils import (
    dtype_summary,
    estimate_footprint,
    fmt_bytes,
    load_config,
    load_model,
    lora_param_count,
    measure_peak,
    meta_model,
    model_footprint,
    quantizable_linears,
    training_memory_bill,
)


@pytest.mark.parametrize("quant", [None, "int8", "nf4"])
def test_estimate_matches_measured_within_2_percent(chat_id, quant):
    """The meta-device estimate of the course model agrees with the loaded model."""
    model = load_model(chat_id, quantization=quant)
    measured = model_footprint(model)
    est = estimate_footprint(load_config(chat_id), quant)
    assert abs(est["weights"] / measured["weights"] - 1) < 0.02
    if quant:
        assert abs(est["quant_constants"] - measured["quant_constants"]) <= 0.05 * measured["quant_constants"]
    else:
        assert measured["quant_constants"] == 0


def test_measured_footprints_order(chat_id):
    sizes = {q: model_footprint(load_model(chat_id, quantization=q))["weights"] for q in (None, "int8", "nf4")}
    assert sizes[None] > sizes["int8"] > sizes["nf4"]


def test_llama_8b_from_shipped_config():
    cfg = load_config("meta-llama/Llama-3.1-8B-Instruct")
    est = estimate_footprint(cfg, None, torch.bfloat16)
    assert 8.0e9 < est["params"] < 8.1e9  # 8.03 B parameters
    assert abs(est["weights"] - 2 * est["params"]) < 1e6
    dq = estimate_footprint(cfg, "nf4", torch.bfloat16, double_quant=True)["quant_constants"]
    no_dq = estimate_footprint(cfg, "nf4", torch.bfloat16, double_quant=False)["quant_constants"]
    linears = quantizable_linears(meta_model(cfg))
    n = sum(m.weight.numel() for m in linears.values())
    # bits per quantized weight for the constants: 32/64 = 0.5 without, 8/64 + 32/(64*256) with DQ
    assert no_dq * 8 / n == pytest.approx(0.5, rel=1e-3)
    assert dq * 8 / n == pytest.approx(8 / 64 + 32 / (64 * 256), rel=1e-2)


def test_dtype_summary_groups_and_counts_logical_params(chat_id):
    fp32 = dtype_summary(load_model(chat_id))
    assert [r["dtype"] for r in fp32] == ["float32"]
    nf4 = dtype_summary(load_model(chat_id, quantization="nf4"))
    assert {r["dtype"] for r in nf4} == {"float32", "uint8 (packed nf4)"}
    assert sum(r["params"] for r in nf4) == fp32[0]["params"]


def test_lora_count_formula():
    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(10, 20))
    model.add_module("v_proj", nn.Linear(10, 5))
    model.add_module("mlp", nn.Linear(10, 10))
    assert lora_param_count(model, ["q_proj", "v_proj"], r=4) == 4 * (10 + 20) + 4 * (10 + 5)


def test_training_bill_orders_methods():
    cfg = load_config("meta-llama/Llama-3.1-8B-Instruct")
    bills = {m: training_memory_bill(cfg, m) for m in ("full", "lora", "qlora")}
    assert bills["full"]["total"] > bills["lora"]["total"] > bills["qlora"]["total"]
    assert bills["full"]["trainable_params"] / bills["lora"]["trainable_params"] > 100


def test_measure_peak_sees_an_allocation():
    from course_utils.memory import free_memory

    # Start clean: garbage from earlier tests collected (and its pages returned) inside the block
    # would lower RSS as much as the allocation raises it.
    free_memory()
    with measure_peak() as peak:
        x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB
        x += 1
        time.sleep(0.3)  # the CPU sampler polls every 5 ms; give it time on a loaded machine
        del x
    assert peak.delta > 32 * 1024 * 1024


def test_fmt_bytes():
    assert fmt_bytes(538_060_288) == "538.1 MB"
    assert fmt_bytes(16 * 1024**3) == "16.00 GiB"


def test_free_memory_hands_freed_heap_pages_back():
    """Without malloc_trim, RSS keeps freed small blocks and later peaks would be under-measured."""
    import ctypes
    import gc
    import sys

    import pytest

    from course_utils.memory import free_memory, rss_bytes

    if not sys.platform.startswith("linux"):
        pytest.skip("malloc_trim is glibc's")
    # glibc trims the top of its heap by itself once the free space there exceeds its trim threshold,
    # which it raises as a long-running process frees large blocks (the state of a notebook kernel)
    # unless measure_peak has fixed the thresholds in this process. Pin it high, as in a kernel.
    ctypes.CDLL("libc.so.6").mallopt(-1, 512 * 1024 * 1024)  # -1: M_TRIM_THRESHOLD
    free_memory()  # start from a trimmed heap, whatever earlier tests left behind
    start = rss_bytes()
    blocks = [torch.ones(16 * 1024) for _ in range(2000)]  # 2000 x 64 KB, below glibc's mmap threshold
    grown = rss_bytes() - start
    del blocks
    gc.collect()
    kept = rss_bytes() - start
    free_memory()
    left = rss_bytes() - start
    assert grown > 100e6 and kept > 0.5 * grown  # gc alone leaves the pages in the process
    assert left < 0.2 * grown


@pytest.mark.parametrize("batch_size,seq_len", [(1, 64), (2, 128)])
def test_training_peak_estimate_within_1_percent_of_measured(chat_id, batch_size, seq_len):
    """A steady-state LoRA step of SmolLM2 (fp32, all linear layers, dropout): predicted vs measured.

    The optimizer state is created by a first step and then stays, as in every later step; the
    measured block is the next step (its gradients, activations and logits on top of it), measured as
    the peak of live tensor bytes (the profiler's allocation record, the CPU's analogue of
    ``torch.cuda.max_memory_allocated``).
    """
    from peft import LoraConfig, get_peft_model

    from course_utils.memory import TrainingRun, free_memory, step_peak_bytes, training_state_bytes

    torch.manual_seed(0)
    model = load_model(chat_id)
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    warm = torch.randint(0, model.config.vocab_size, (1, 8))
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len))
    for checkpointing in (False, True):
        if checkpointing:
            model.base_model.model.gradient_checkpointing_enable({"use_reentrant": False})
        optimizer = torch.optim.AdamW(params, lr=1e-4)
        model(input_ids=warm, labels=warm).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run = TrainingRun(model.config, sum(p.numel() for p in params), batch_size, seq_len, checkpointing,
                          "adamw_torch", torch.float32, lora_dropout=True)
        bill = training_state_bytes(run)
        state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                    if t.dim() > 0)
        assert state == bill["optimizer"]  # two fp32 moments per trainable parameter
        free_memory()
        with measure_peak() as peak:
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        predicted = step_peak_bytes(run)
        print(f"{batch_size}x{seq_len} checkpointing {checkpointing}: measured +{fmt_bytes(peak.delta)}, "
              f"predicted +{fmt_bytes(predicted)}")
        # measured: the gradients, activations and logits are never all live at once (the bill's
        # negative part, ``not_live_at_once``, takes that overlap away)
        assert peak.delta < bill["gradients"] + bill["activations"] + bill["logits"]
        # within 1% (135M fp32, all-linear LoRA; measured -0.6%, +0.7%, -0.6%, +0.5% with torch 2.13)
        assert abs(peak.delta / predicted - 1) < 0.01
        del optimizer
