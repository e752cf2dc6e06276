"""Model-level quality: perplexity and next-token KL on held-out text, for any precision.

Weight error says how far a quantized matrix is from the original; what a learner cares about is
what the *model* does. The QLoRA and LLM.int8 papers compare formats by perplexity on held-out text,
and the KL divergence of the quantized model's next-token distribution from the original's is the
same comparison made per token. Everything here works on any causal LM, quantized or not.
"""

from __future__ import annotations

import importlib
import inspect
import re

import torch
import torch.nn.functional as F

from .data import SAMPLE_DIR, read_jsonl

# Modules of Python's standard library whose docstrings serve as general English text: written by
# people, present on every machine, never in the course's training data. (The exact text varies a
# little between Python versions, so numbers may move in the third digit across versions.)
_TEXT_MODULES = ("argparse", "collections", "textwrap", "logging", "json", "csv", "unittest",
                 "functools", "itertools", "pathlib", "datetime", "random", "statistics", "string")


def general_text(n_passages: int = 48, min_words: int = 40) -> list[str]:
    """Return up to ``n_passages`` English passages (stdlib docstrings of at least ``min_words``)."""
    passages: list[str] = []
    for name in _TEXT_MODULES:
        module = importlib.import_module(name)
        objects = [module, *(obj for _, obj in sorted(vars(module).items()) if callable(obj))]
        for obj in objects:
            doc = inspect.getdoc(obj) or ""
            text = " ".join(doc.split())
            if len(text.split()) >= min_words and text not in passages:
                passages.append(text)
            if len(passages) >= n_passages:
                return passages
    return passages


def heldout_texts(n_qa: int = 11) -> list[str]:
    """Return independent held-out texts: each section of the course's fictional handbook (text no model
    was trained on), then the first ``n_qa`` short Q&A rows the course wrote, their chat tags removed.

    One number per text (its NLL, its KL) makes the texts the units of a paired bootstrap: resampling
    texts, not the correlated tokens inside one text.
    """
    handbook = (SAMPLE_DIR / "rag_handbook.md").read_text(encoding="utf-8")
    sections = re.split(r"\n(?=## )", handbook)[1:]  # drop the title
    qa = [" ".join(re.sub(r"</?s>|\[/?INST\]", " ", row["text"]).split())
          for row in read_jsonl(SAMPLE_DIR / "guanaco_sample.jsonl")]
    return [s.strip() for s in sections] + qa[:n_qa]


def _right_padded_batches(model, tokenizer, texts: list[str], max_len: int, batch_size: int):
    """Yield the texts as right-padded, truncated batches on the model's device.

    Padding on the right keeps each text's positions where an unpadded pass puts them; the
    tokenizer's padding side is restored when the batches are done (or the loop is left early).
    """
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_len)
            yield {k: v.to(model.device) for k, v in enc.items()}
    finally:
        tokenizer.padding_side = side


@torch.no_grad()
def sequence_nll(model, tokenizer, texts: list[str], max_len: int = 128, batch_size: int = 8) -> torch.Tensor:
    """Return the mean next-token negative log-likelihood (nats) of each text, shape (len(texts),).

    Per-text values (not one pooled number) let two models be compared with a paired bootstrap.
    Padding is on the right and masked out; no position predicts from a pad token.
    """
    out = []
    for enc in _right_padded_batches(model, tokenizer, texts, max_len, batch_size):
        logits = model(**enc).logits[:, :-1].float()
        target = enc["input_ids"][:, 1:]
        mask = enc["attention_mask"][:, 1:].float()
        nll = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        out.append(((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())
    return torch.cat(out)


@torch.no_grad()
def next_token_logprobs(model, tokenizer, texts: list[str], max_len: int = 128,
                        batch_size: int = 8) -> list[torch.Tensor]:
    """Return, per text, the log-softmax of the next-token logits at its real positions (fp32, cpu).

    Taught in lesson 00, section «4 · Load, measure, answer, free: three times».
    """
    out = []
    for enc in _right_padded_batches(model, tokenizer, texts, max_len, batch_size):
        logp = F.log_softmax(model(**enc).logits.float(), dim=-1).cpu()
        out += [row[:n] for row, n in zip(logp, enc["attention_mask"].sum(1).tolist())]
    return out


def mean_kl(reference: list[torch.Tensor], other: list[torch.Tensor]) -> torch.Tensor:
    """Return per text the mean KL(reference ‖ other) over positions, in nats; shape (len(texts),).

    Taught in lesson 00, section «5 · Estimated vs measured».
    """
    kls = []
    for p, q in zip(reference, other, strict=True):
        kls.append((p.exp() * (p - q)).sum(-1).mean())
    return torch.stack(kls)


def symmetric_int4(w: torch.Tensor, block: int = 64) -> torch.Tensor:
    """Quantize to symmetric int4 per block of ``block`` weights and dequantize (from scratch).

    Levels −7…7 times ``absmax / 7``: uniform steps, one code (−8) unused so zero stays exact. This is
    the plain baseline NF4 is measured against: same bits, same blocks, uniform instead of normal
    quantiles.
    """
    flat = w.detach().float().reshape(-1, block)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 7
    q = torch.clamp(torch.round(flat / scale), -7, 7)
    return (q * scale).reshape(w.shape).to(w.dtype)


@torch.no_grad()
def fake_quantize_linears(model, quantize=symmetric_int4, skip=("lm_head",)) -> int:
    """Replace each ``nn.Linear`` weight by ``quantize(weight)`` in place; return how many were changed.

    "Fake" quantization stores the dequantized values in the original dtype: the model computes as
    a real 4-bit kernel would (same rounded weights) without a special kernel. The head stays as
    bitsandbytes keeps it, in full precision.

    Taught in lesson 05, section «10 · NF4, FP4 and int4 on a real model's held-out text».
    """
    n = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not any(s in name for s in skip):
            if module.weight.numel() % 64 == 0:
                module.weight.copy_(quantize(module.weight))
                n += 1
    return n
