"""The memory ledger: real-scale entries, budgets enforced in rehearsals, entries freed with their model."""

import gc

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from course_utils import estimate_footprint, load_config
from course_utils import ledger as ledger_mod
from course_utils.machinery.ledger import Ledger, MemoryBudgetError
from course_utils.machinery.profiles import PROFILES, TINY_PREFIX

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


def stand_in(dtype=torch.float16):
    """A tiny Llama-shaped model object standing for the rehearsal's tiny copy (owner of an entry)."""
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
                      num_hidden_layers=1, vocab_size=128)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


def test_second_int8_8b_model_fails_on_the_t4_rehearsal_and_gc_frees_it():
    book = Ledger(PROFILES["t4-rehearsal"])
    first = stand_in()
    book.track_model(first, TINY_PREFIX + LLAMA, "int8", torch.float16)
    one = estimate_footprint(load_config(LLAMA), "int8", torch.float16)["total"]
    assert book.total("gpu") == pytest.approx(one)
    assert 8e9 < one < 14e9  # one int8 8B fits a T4 (embeddings and head stay fp16) ...
    second = stand_in()
    with pytest.raises(MemoryBudgetError) as err:  # ... two do not
        book.track_model(second, TINY_PREFIX + LLAMA, "int8", torch.float16)
    msg = str(err.value)
    print(msg)
    assert "GPU memory" in msg and "14 GB" in msg and LLAMA in msg and "What to change" in msg
    assert book.total("gpu") == pytest.approx(one)  # the refused entry was not kept
    del first
    gc.collect()
    assert book.total("gpu") == 0  # garbage collection took the first model's entry with it
    book.track_model(second, TINY_PREFIX + LLAMA, "int8", torch.float16)  # now it fits
    assert book.total("gpu") == pytest.approx(one)


def test_host_copy_is_checked_against_host_ram():
    book = Ledger(PROFILES["t4-rehearsal"])
    owner = stand_in(torch.float32)
    with pytest.raises(MemoryBudgetError, match="host RAM"):  # an fp32 8B copy is 32 GB > 11 GB
        book.track_model(owner, TINY_PREFIX + LLAMA, None, torch.float32, device="host")
    assert book.total("host") == 0


def test_kbit_upcasts_and_training_run_enter_the_bill():
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    book = Ledger(PROFILES["t4-rehearsal"])
    model = stand_in()
    book.track_model(model, TINY_PREFIX + LLAMA, "nf4", torch.float16)
    before = book.total("gpu")
    model = prepare_model_for_kbit_training(model)  # casts fp16 parameters to fp32
    model = get_peft_model(model, LoraConfig(r=16, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(MemoryBudgetError, match="checkpointing"):  # batch 4 x 512 without checkpointing
        book.enter_training_run(model, batch_size=4, seq_len=512, gradient_checkpointing=False)
    # embeddings and head (2 x 128256 x 4096) now fp32: 2.1 GB more than in fp16
    assert book.total("gpu") - before == pytest.approx(2 * 128256 * 4096 * 2, rel=1e-3)
    key = book.enter_training_run(model, batch_size=4, seq_len=512, gradient_checkpointing=True,
                        optim="paged_adamw_8bit")
    run = book.entries[key]
    cfg = load_config(LLAMA)
    assert run.parts["trainable_weights"] == 4 * 32 * 16 * (4096 + 4096 + 4096 + 1024)  # r(d_in+d_out)
    assert run.parts["optimizer"] == run.parts["trainable_weights"] / 2  # 8-bit: 2 bytes vs 4
    assert run.parts["logits"] > 4 * 512 * cfg.vocab_size * 4  # the 128k vocabulary costs GBs
    assert book.total("gpu") <= 14e9
    again = book.enter_training_run(model, batch_size=2, seq_len=512, gradient_checkpointing=True)
    assert again == key and len(book.entries) == 2  # a re-run replaces, does not stack
    assert book.entries[key].info["batch_size"] == 2 and book.entries[key].nbytes < run.nbytes


def test_load_model_enters_and_leaves_the_active_ledger(chat_id, monkeypatch):
    from course_utils import load_model

    monkeypatch.setenv("COURSE_PROFILE", "t4-rehearsal")
    book = ledger_mod.current()
    start = book.total("gpu")
    model = load_model(chat_id)  # a real-scale model (the cpu one) stands for itself
    assert book.total("gpu") - start == pytest.approx(estimate_footprint(model.config)["total"])
    del model
    gc.collect()
    assert book.total("gpu") == start


def test_ledger_is_off_in_the_cpu_profile():
    book = Ledger(PROFILES["cpu"])
    assert book.track_model(stand_in(), LLAMA, None, torch.float32) is None
    assert book.total("gpu") == 0


def test_save_peak_writes_the_highest_total_per_device(tmp_path):
    import json

    from course_utils.machinery.budget import Entry
    from course_utils.machinery.ledger_report import save_peak

    ledger = Ledger(PROFILES["t4-rehearsal"])
    first = ledger.enter(Entry("a", "gpu", {"bytes": 5e9}))
    ledger.enter(Entry("b", "host", {"bytes": 2e9}))
    ledger.leave(first)
    ledger.enter(Entry("c", "gpu", {"bytes": 3e9}))
    save_peak(ledger, tmp_path / "peak.json")
    saved = json.loads((tmp_path / "peak.json").read_text())
    assert saved == {"profile": "t4-rehearsal", "target": "t4", "gpu": 5e9, "host": 2e9, "loads": {}}


def test_plans_check_before_loading_on_a_gpu_too():
    """A plan raises where the bill would not fit, in a rehearsal and on the real GPU profile alike."""
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    run = {"dtype": torch.float16, "batch_size": 2, "seq_len": 256, "gradient_checkpointing": True,
           "optim": "paged_adamw_8bit"}
    for name in ("t4-rehearsal", "t4"):
        book = Ledger(PROFILES[name])
        with pytest.raises(MemoryBudgetError, match="fewer bits"):  # 16-bit 8B: 16 GB of weights alone
            book.plan_training(LLAMA, None, 16, targets, **run)
        with pytest.raises(MemoryBudgetError, match="GPU memory"):
            book.plan_load(LLAMA, None, torch.float16)
        nf4 = book.plan_training(LLAMA, "nf4", 16, targets, **run)
        int8 = book.plan_training(LLAMA, "int8", 16, targets, **run)
        assert nf4 < int8 < 14e9 and book.total("gpu") == 0  # plans enter nothing
    assert Ledger(PROFILES["cpu"]).plan_load(LLAMA, None, torch.float32) is None


def test_prediction_is_the_models_entry_plus_its_run_without_the_context():
    from peft import LoraConfig, get_peft_model

    from course_utils.memory import CUDA_CONTEXT_BYTES

    book = Ledger(PROFILES["a100-rehearsal"])
    model = get_peft_model(stand_in(), LoraConfig(r=16, target_modules=["q_proj", "v_proj"]))
    assert book.prediction(model) is None
    book.track_model(model.get_base_model(), TINY_PREFIX + LLAMA, None, torch.bfloat16)
    weights = book.total("gpu")
    assert book.prediction(model) == pytest.approx(weights)
    book.enter_training_run(model, batch_size=2, seq_len=256, gradient_checkpointing=True)
    assert book.prediction(model) == pytest.approx(book.total("gpu") - CUDA_CONTEXT_BYTES)


def _kbit_like(head_dtype, vocab=4000):
    """A small Llama as kbit preparation leaves it (frozen, fp16 linears, fp32 embeddings and norms, the head
    in ``head_dtype``), with fp32 LoRA adapters on q and v."""
    from peft import LoraConfig, get_peft_model

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float16).requires_grad_(False)
    for name, p in model.named_parameters():
        if "norm" in name or "embed_tokens" in name:
            p.data = p.data.float()
    model.lm_head.to(head_dtype)
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])), cfg


def _live_after_forward(model, ids) -> tuple[int, torch.Tensor]:
    """Net bytes of CPU tensors a forward under fp16 autocast leaves alive (graph kept), from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(input_ids=ids, labels=ids)
    events = prof.profiler.kineto_results.events()
    return sum(e.nbytes() for e in events if e.name() == "[memory]" and str(e.device_type()) == "DeviceType.CPU"), out


def test_autocast_copy_of_an_fp32_head_is_billed_as_torch_allocates_it():
    """Under fp16 autocast a frozen fp32 head runs on a 16-bit copy that is saved for backward: measured."""
    from course_utils.memory import TrainingRun, autocast_copy_bytes, fp32_matmul_weights, meta_model

    ids = torch.randint(0, 4000, (1, 7))
    fp32_head, cfg = _kbit_like(torch.float32)
    kept_head, _ = _kbit_like(torch.float16)
    live32, out32 = _live_after_forward(fp32_head, ids)
    live16, out16 = _live_after_forward(kept_head, ids)
    measured = live32 - live16  # the two runs differ only in the head's storage dtype
    assert fp32_matmul_weights(fp32_head) == {"lm_head"} and fp32_matmul_weights(kept_head) == set()
    run = TrainingRun(cfg, 0, gradient_checkpointing=False, dtype=torch.float16)  # no trainable weights
    billed = autocast_copy_bytes(meta_model(cfg), fp32_matmul_weights(fp32_head), run)
    assert billed == 4000 * 128 * 2
    assert measured == pytest.approx(billed, rel=0.02), (measured, billed)
    # the same logits bit for bit: autocast ran the fp32 head in fp16 anyway
    assert torch.equal(out32.logits, out16.logits)
    out32.loss.backward()  # and the copy was what backward needed: gradients reach the adapters
    assert all(p.grad is not None for p in fp32_head.parameters() if p.requires_grad)
    # in fp32 there is no autocast and no copy
    assert autocast_copy_bytes(meta_model(cfg), {"lm_head"}, TrainingRun(cfg, 10, dtype=torch.float32)) == 0


def test_training_bill_follows_the_heads_dtype_at_real_scale():
    """The ledger bills an fp32 head (4 bytes + a 2-byte autocast copy per weight) or a kept 16-bit one (2)."""
    from course_utils.models import keep_head_in_compute_dtype

    head = 128256 * 4096
    bills = {}
    for keep in (False, True):
        for name in ("t4-rehearsal", "a100-rehearsal"):
            book = Ledger(PROFILES[name])
            model, _ = _kbit_like(torch.float32)
            if keep:
                assert keep_head_in_compute_dtype(model.get_base_model(), PROFILES[name].dtype)
                with torch.no_grad():  # outside autocast (generate) the fp32 hidden states meet a 16-bit head
                    assert model.get_base_model().lm_head(torch.randn(1, 3, 128)).dtype == PROFILES[name].dtype
            book.track_model(model.get_base_model(), TINY_PREFIX + LLAMA, "int8", PROFILES[name].dtype)
            if name == "t4-rehearsal" and not keep:  # 06's int8 run at 1 x 512 tokens: over a T4 with an fp32 head
                with pytest.raises(MemoryBudgetError, match="autocast_copies 1054.1 MB"):
                    book.enter_training_run(model, batch_size=1, seq_len=512, gradient_checkpointing=True)
                continue
            book.enter_training_run(model, batch_size=1, seq_len=512, gradient_checkpointing=True)
            model_entry, run = book.entries.values()
            bills[keep, name] = (model_entry.parts["fp32_upcasts"], run.parts["autocast_copies"])
    lora = 2 * 32 * 4 * (4096 + 4096 + 4096 + 1024)  # r=4 on q (4096->4096) and v (4096->1024), 32 layers
    assert bills[False, "a100-rehearsal"][1] == pytest.approx(head * 2 + lora)  # the head's copy (1.05 GB) + LoRA's
    assert bills[True, "a100-rehearsal"][1] == pytest.approx(lora) == bills[True, "t4-rehearsal"][1]
    assert bills[False, "a100-rehearsal"][0] - bills[True, "a100-rehearsal"][0] == pytest.approx(head * 2)
    assert not keep_head_in_compute_dtype(stand_in(), torch.float32)  # nothing to do in fp32


@pytest.mark.parametrize("method", ["qlora", "lora"])
def test_one_lora_bill_ledger_calculator_and_partial_bill_agree(method):
    """One run, three routes to its bill: the ledger (reading the live model's dtypes after kbit preparation),
    the calculator (``memory.lora_training_bill`` from the meta tree) and the partial bill of notebooks 01/07
    (``training_memory_bill``: the held parts only). Llama-3.1-8B, r=16 on all seven projections, bf16
    (A100 rehearsal), batch 1 x 512, checkpointing, AdamW, dropout 0.05."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from course_utils.calculator import LLAMA_TARGETS, memory_bill
    from course_utils.memory import HELD_PARTS, training_memory_bill
    from course_utils.models import keep_head_in_compute_dtype

    book = Ledger(PROFILES["a100-rehearsal"])
    model = stand_in(torch.bfloat16)
    quant = "nf4" if method == "qlora" else None
    book.track_model(model, TINY_PREFIX + LLAMA, quant, torch.bfloat16)
    if quant:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        assert keep_head_in_compute_dtype(model, torch.bfloat16)
    else:
        model.requires_grad_(False)
    model = get_peft_model(model, LoraConfig(r=16, lora_dropout=0.05, target_modules=list(LLAMA_TARGETS)))
    key = book.enter_training_run(model, 1, 512, True, "adamw_torch")
    calc = memory_bill(LLAMA, "nf4" if quant else "bf16", 16, LLAMA_TARGETS, batch_size=1, seq_len=512,
                       gradient_checkpointing=True, optim="adamw_torch")
    assert book.total("gpu") == pytest.approx(calc["total"], rel=1e-9), (book.total("gpu"), calc["total"])
    # the partial bill is the held parts of the same run: the model's entry plus the run's adapter state
    partial = training_memory_bill(load_config(LLAMA), method, r=16, target_modules=LLAMA_TARGETS)
    run = book.entries[key]
    ledger_held = book.total("gpu") - run.nbytes + sum(run.parts[k] for k in HELD_PARTS if k in run.parts)
    assert partial["total"] == pytest.approx(ledger_held, rel=1e-9)
    assert partial["total"] == pytest.approx(sum(calc["parts"][k] for k in HELD_PARTS), rel=1e-9)
    assert calc["total"] - partial["total"] > 1e9  # what the partial bill leaves out is no rounding error
