"""The rehearsal profiles' tiny models keep what the lessons rely on from the real architectures."""

import json

import pytest
import torch

from course_utils import load_config, load_model, load_tokenizer, meta_model
from course_utils.machinery.profiles import TINY_PREFIX, get_profile
from course_utils.machinery.rehearsal import (
    TOKENIZER_DATA_DIR,
    build_tokenizer,
    materialize_tiny,
    shrink_config,
)

REAL_IDS = ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "microsoft/Phi-4-mini-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct"]
TURN_END = {REAL_IDS[0]: "<|eot_id|>", REAL_IDS[1]: "<|im_end|>", REAL_IDS[2]: "<|end|>", REAL_IDS[3]: "<|im_end|>"}
TEXT = "Hello, world! The answer is 42.\n甄嬛说：家父是大理寺少卿甄远道。 Mixed 中文 and English."
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "你好, what is 2+3?"},
        {"role": "assistant", "content": "5"}]


@pytest.fixture(scope="module")
def tiny(request):
    """Return {real id: (directory, model, tokenizer)}, built once into the session's course cache."""
    out = {}
    for rid in REAL_IDS:
        path = materialize_tiny(rid)
        out[rid] = (path, load_model(TINY_PREFIX + rid), load_tokenizer(TINY_PREFIX + rid))
    return out


def _shipped(rid: str, name: str) -> str:
    return (TOKENIZER_DATA_DIR / rid.replace("/", "__") / name).read_text(encoding="utf-8")


def _attention_module_kinds(model) -> set[str]:
    """Return the leaf names under the first layer's self_attn and mlp (q_proj, qkv_proj, gate_up_proj...)."""
    names = set()
    for name, _ in model.named_modules():
        parts = name.split(".")
        if "layers" in parts[:-1] and parts[parts.index("layers") + 1] == "0" and len(parts) > 4:
            names.add(".".join(parts[-2:]))
    return names


def test_the_rehearsal_profiles_name_exactly_these_models():
    from course_utils.registry import original_of

    roles = ("chat", "chinese_chat", "fused_qkv", "small_chat")
    ids = {get_profile("t4-rehearsal").model_id(role) for role in roles}
    assert all(i.startswith(TINY_PREFIX) for i in ids)
    # the chat role names an ungated mirror; its tiny copy is built from the original's files
    assert {original_of(i.removeprefix(TINY_PREFIX)) for i in ids} == set(REAL_IDS)


@pytest.mark.parametrize("rid", REAL_IDS)
def test_architecture_matches_the_real_config(tiny, rid):
    real = load_config(rid)
    _, model, tok = tiny[rid]
    cfg = model.config
    assert type(model).__name__ == real.architectures[0]
    assert cfg.model_type == real.model_type
    assert cfg.num_hidden_layers == 2 and cfg.hidden_size <= 256  # head dim 32 x the real GQA ratio
    assert (cfg.num_attention_heads / cfg.num_key_value_heads
            == real.num_attention_heads / real.num_key_value_heads)
    assert cfg.tie_word_embeddings == real.tie_word_embeddings
    tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied == real.tie_word_embeddings
    assert cfg.hidden_act == real.hidden_act and cfg.rms_norm_eps == real.rms_norm_eps
    assert cfg.rope_parameters["rope_type"] == real.rope_parameters["rope_type"]
    assert cfg.rope_parameters["rope_theta"] == real.rope_parameters["rope_theta"]
    assert cfg.vocab_size == len(tok)
    # Fused or separate QKV and MLP projections: the same module names as the real model's.
    assert _attention_module_kinds(model) == _attention_module_kinds(meta_model(real))


def test_phi_keeps_fused_qkv_and_a_consistent_partial_longrope(tiny):
    _, model, _ = tiny[REAL_IDS[2]]
    cfg = model.config
    names = _attention_module_kinds(model)
    assert "self_attn.qkv_proj" in names and "self_attn.q_proj" not in names
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    rotary_half = int(head_dim * cfg.partial_rotary_factor) // 2
    assert cfg.partial_rotary_factor == 0.75
    assert len(cfg.rope_parameters["long_factor"]) == rotary_half
    assert len(cfg.rope_parameters["short_factor"]) == rotary_half
    # A sequence longer than original_max_position_embeddings runs on the long factors.
    n = cfg.rope_parameters["original_max_position_embeddings"] + 8
    long_ids = torch.randint(0, cfg.vocab_size, (1, n), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(model(long_ids).logits[:, -8:]).all()


@pytest.mark.parametrize("rid", REAL_IDS)
def test_chat_template_is_the_real_one_and_ends_turns_with_the_real_token(tiny, rid):
    _, _, tok = tiny[rid]
    assert tok.chat_template == _shipped(rid, "chat_template.jinja")
    text = tok.apply_chat_template(CHAT, tokenize=False)
    assert text.rstrip("\n").removesuffix(tok.eos_token if rid == REAL_IDS[2] else "").endswith(
        "5" + TURN_END[rid])
    ids = tok.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]
    turn_end_id = tok.convert_tokens_to_ids(TURN_END[rid])
    assert ids.count(turn_end_id) == 3  # one per turn: the turn-end marker is a single token


@pytest.mark.parametrize("rid", REAL_IDS)
def test_special_tokens_keep_their_real_strings_and_roles(tiny, rid):
    path, model, tok = tiny[rid]
    table = json.loads(_shipped(rid, "special_tokens.json"))
    for entry in table["tokens"]:
        assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids(entry["content"])) == entry["content"]
        assert len(tok(entry["content"], add_special_tokens=False)["input_ids"]) == 1
    raw = json.loads((path / "tokenizer_config.json").read_text())
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        assert raw.get(role) == table[role], role
    # The model's EOS ids are the real ones, remapped: the same strings.
    real_gen, tiny_gen = table["generation_config"]["eos_token_id"], model.generation_config.eos_token_id
    as_list = (lambda ids: ids if isinstance(ids, list) else [ids])  # SmolLM2 has one EOS id, not a list
    names = {e["id"]: e["content"] for e in table["tokens"]}
    assert tok.convert_ids_to_tokens(as_list(tiny_gen)) == [names[i] for i in as_list(real_gen)]


def test_each_models_own_pad_convention(tiny):
    llama, qwen, phi, smol = (tiny[rid][1:] for rid in REAL_IDS)
    from transformers import AutoTokenizer

    raw_llama = AutoTokenizer.from_pretrained(tiny[REAL_IDS[0]][0])
    assert raw_llama.pad_token is None and raw_llama.eos_token == "<|eot_id|>"
    assert raw_llama("hi")["input_ids"][0] == raw_llama.bos_token_id  # bos added, as by the real one
    assert llama[1].pad_token == "<|finetune_right_pad_id|>" != llama[1].eos_token  # load_tokenizer's pick
    assert qwen[1].pad_token == "<|endoftext|>" and qwen[1].pad_token_id != qwen[1].eos_token_id
    assert qwen[1].bos_token is None
    assert phi[1].eos_token == phi[1].pad_token == "<|endoftext|>"
    assert phi[0].generation_config.eos_token_id[0] == phi[1].convert_tokens_to_ids("<|end|>")
    # SmolLM2 pads with its EOS <|im_end|>; load_tokenizer picks <|endoftext|>, as on the cpu profile
    assert smol[1].pad_token == "<|endoftext|>" != smol[1].eos_token == "<|im_end|>"
    assert smol[1]("hi")["input_ids"][0] != smol[1].bos_token_id  # no bos added, as by the real one


@pytest.mark.parametrize("rid", REAL_IDS)
def test_english_and_chinese_round_trip(tiny, rid):
    _, _, tok = tiny[rid]
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == TEXT
    assert len(ids) < len(TEXT.encode("utf-8"))  # the BPE merges something; bytes alone would not


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rid", REAL_IDS)
def test_half_precision_forward_on_cpu(tiny, rid, dtype):
    path, _, tok = tiny[rid]
    model = load_model(TINY_PREFIX + rid, dtype=dtype)
    assert next(model.parameters()).dtype == dtype
    enc = tok.apply_chat_template(CHAT, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits.float()).all()


@pytest.mark.parametrize("quant", ["nf4", "int8"])
@pytest.mark.parametrize("rid", REAL_IDS)
def test_quantized_load_and_lora_backward(tiny, rid, quant):
    from peft import LoraConfig, get_peft_model

    model = load_model(TINY_PREFIX + rid, quantization=quant, dtype=torch.float16)
    n_bnb = sum(type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in model.modules())
    assert n_bnb == 2 * (4 if rid != REAL_IDS[2] else 2) + 2 * (3 if rid != REAL_IDS[2] else 2)
    targets = ["qkv_proj", "o_proj"] if rid == REAL_IDS[2] else ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    _, _, tok = tiny[rid]
    enc = tok.apply_chat_template(CHAT, return_tensors="pt", return_dict=True)
    model.train()
    loss = model(**enc, labels=enc["input_ids"]).loss
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_second_materialize_reuses_the_directory(tiny):
    path = tiny[REAL_IDS[0]][0]
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert materialize_tiny(REAL_IDS[0]) == path
    assert materialize_tiny(TINY_PREFIX + REAL_IDS[0]) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == before


def test_build_is_deterministic():
    a, b = build_tokenizer(REAL_IDS[1]), build_tokenizer(REAL_IDS[1])
    assert a.get_vocab() == b.get_vocab()
    cfg = shrink_config(load_config(REAL_IDS[1]))
    assert cfg.num_hidden_layers == 2 and load_config(REAL_IDS[1]).num_hidden_layers == 28  # a copy


def test_unknown_model_says_which_are_known():
    with pytest.raises(ValueError, match="Qwen/Qwen2.5-1.5B-Instruct"):
        materialize_tiny("nobody/no-model")


def test_shipped_smollm2_config_is_the_cpu_profiles_model():
    """The shipped config (written from the GGUF's metadata) describes the model the cpu profile loads."""
    from course_utils.machinery.profiles import LOCAL_CHAT_MODEL

    shipped, cpu = load_config(REAL_IDS[3]), load_config(LOCAL_CHAT_MODEL)
    for key in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "hidden_act",
                "max_position_embeddings", "bos_token_id", "eos_token_id"):
        assert getattr(shipped, key) == getattr(cpu, key), key
    assert shipped.rope_parameters["rope_theta"] == cpu.rope_parameters["rope_theta"]
    assert shipped.rms_norm_eps == pytest.approx(cpu.rms_norm_eps, rel=1e-6)
    assert sum(p.numel() for p in meta_model(shipped).parameters()) == 134_515_008


def test_fp16_accelerator_on_the_cpu_runs_autocast_and_a_grad_scaler():
    """After enable_cpu_mixed_precision (load_model calls it in a rehearsal) accelerate trains fp16 on the CPU
    as on a GPU: the forward under fp16 autocast, the loss scaled, a step with inf gradients skipped."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from course_utils.machinery.rehearsal import enable_cpu_mixed_precision

    assert enable_cpu_mixed_precision() and enable_cpu_mixed_precision()  # idempotent
    AcceleratorState._reset_state(True)
    try:
        accelerator = Accelerator(cpu=True, mixed_precision="fp16")
        assert accelerator.native_amp and isinstance(accelerator.scaler, torch.amp.GradScaler)
        model = torch.nn.Sequential(torch.nn.Linear(8, 8))  # fp32 master weights, as a GPU run keeps them
        seen = []
        model[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model, opt = accelerator.prepare(model, opt)
        layer, x = model[0], torch.randn(4, 8)
        assert model(x).dtype == torch.float32 and seen == [torch.float16]  # an fp16 matmul inside, fp32 out
        scale = accelerator.scaler.get_scale()
        before = layer.weight.detach().clone()
        accelerator.backward(model(x).sum() * float("inf"))  # overflowing gradients
        opt.step()
        opt.zero_grad()
        assert opt.step_was_skipped and torch.equal(layer.weight, before)  # the inf check skipped the step
        assert accelerator.scaler.get_scale() == scale / 2  # and the scale backed off
        accelerator.backward(model(x).pow(2).mean())
        opt.step()
        assert not opt.step_was_skipped and not torch.equal(layer.weight, before)
    finally:
        AcceleratorState._reset_state(True)
