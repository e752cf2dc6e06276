import pytest
import torch

from course_utils.data import SAMPLE_DIR
from course_utils.quality import (
    fake_quantize_linears,
    general_text,
    heldout_texts,
    mean_kl,
    next_token_logprobs,
    sequence_nll,
    symmetric_int4,
)


def test_general_text_is_english_passages():
    texts = general_text(20)
    assert len(texts) == 20 and len(set(texts)) == 20
    assert all(len(t.split()) >= 40 for t in texts)


def test_heldout_texts_are_the_handbook_sections_then_the_qa_rows():
    handbook = (SAMPLE_DIR / "rag_handbook.md").read_text(encoding="utf-8")
    n_sections = handbook.count("\n## ")  # counted on the file, not by the helper's split
    texts = heldout_texts(5)
    assert len(texts) == n_sections + 5 and len(set(texts)) == len(texts)
    assert all(t.startswith("## ") and t in handbook for t in texts[:n_sections])
    assert not any(tag in t for t in texts[n_sections:] for tag in ("<s>", "</s>", "[INST]", "[/INST]"))
    assert heldout_texts(11)[:n_sections + 5] == texts  # more Q&A rows extend the list, in order


def test_symmetric_int4_uses_15_levels_and_keeps_zero():
    torch.manual_seed(0)
    w = torch.randn(8, 64)
    w[0, 0] = 0.0
    q = symmetric_int4(w)
    scale = w.abs().amax(dim=1, keepdim=True) / 7
    codes = torch.round(q / scale)
    assert codes.abs().max() == 7 and q[0, 0] == 0
    assert torch.allclose(q, codes * scale)
    rel = ((q - w).norm() / w.norm()).item()
    assert 0.05 < rel < 0.2  # 4 bits on Gaussian weights: roughly 10 % error


@pytest.fixture(scope="module")
def tiny_lm():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, **{ch: i + 1 for i, ch in enumerate(" abcdefghijklmnopqrstuvwxyz.,")}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(config).eval()
    return model, hf


def test_nll_and_kl_on_a_model(tiny_lm):
    model, tok = tiny_lm
    texts = ["the cat sat on the mat.", "a dog, a log, a frog."]
    nll = sequence_nll(model, tok, texts)
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    # padding must not change a text's NLL: alone or in a batch with a longer one
    alone = sequence_nll(model, tok, texts[:1])
    assert torch.allclose(alone, nll[:1], atol=1e-5)
    ref = next_token_logprobs(model, tok, texts)
    assert torch.allclose(mean_kl(ref, ref), torch.zeros(2), atol=1e-6)
    changed = fake_quantize_linears(model)
    assert changed == 7  # q, k, v, o, gate, up, down of the one layer; the head is kept
    kl = mean_kl(ref, next_token_logprobs(model, tok, texts))
    assert (kl > 0).all()
