"""Instruction data in the Llama-2 text format of ``mlabonne/guanaco-llama2-1k``, turned into chats.

The QLoRA tutorials trained on records with one ``text`` field written in Llama-2's prompt format,
``<s>[INST] question [/INST] answer </s>``, with a model's special tokens typed in as plain text.
That only suits a Llama-2 model. This module parses such records back into role/content messages so
that every model's own chat template (``tokenizer.apply_chat_template``) writes the special tokens,
and splits each chat into a ``prompt``/``completion`` pair, the format for which trl's ``SFTTrainer``
computes the loss on the answer only.
"""

from __future__ import annotations

import re

from .data import hub_allowed, load_records

GUANACO_DATASET = "mlabonne/guanaco-llama2-1k"
GUANACO_LOCAL_FILE = "guanaco/train.jsonl"  # under COURSE_DATA_DIR
GUANACO_SAMPLE = "guanaco_sample.jsonl"  # under course_utils/sample_data, written by the course
GUANACO_ROWS = 1000  # rows in the Hub data set's train split ("1k"): a slice past it is clamped

_TURN = re.compile(r"<s>\s*\[INST\](.*?)\[/INST\](.*?)(?:</s>|(?=<s>\s*\[INST\])|\Z)", re.DOTALL)
_SYSTEM = re.compile(r"^\s*<<SYS>>(.*?)<</SYS>>", re.DOTALL)


def parse_llama2(text: str) -> list[dict]:
    """Parse ``<s>[INST] q [/INST] a </s>`` (one or more turns) into role/content messages.

    A ``<<SYS>> ... <</SYS>>`` block in the first instruction becomes a system message. Raises
    ``ValueError`` when the text holds no ``[INST] ... [/INST]`` turn or a turn has no answer.

    Taught in lesson 07, section «3 · Instruction data, through the chat template».
    """
    turns = _TURN.findall(text)
    if not turns:
        raise ValueError(f"not in the <s>[INST] ... [/INST] ... </s> format: {text[:80]!r}")
    messages: list[dict] = []
    for i, (question, answer) in enumerate(turns):
        question, answer = question.strip(), answer.strip()
        if i == 0 and (m := _SYSTEM.match(question)):
            messages.append({"role": "system", "content": m.group(1).strip()})
            question = question[m.end():].strip()
        if not question or not answer:
            raise ValueError(f"turn {i + 1} has an empty question or answer: {text[:80]!r}")
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def chat_to_prompt_completion(messages: list[dict]) -> dict:
    """Split a chat into trl's conversational prompt/completion: everything before the last answer."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def hub_guanaco(n_rows: int, split: str = "train") -> list[dict]:
    """Download only the first ``n_rows`` of the Hub data set (a split slice, not the whole set)."""
    from datasets import load_dataset

    return load_dataset(GUANACO_DATASET, split=f"{split}[:{n_rows}]").to_list()


def load_guanaco(profile, n_rows: int | None = None) -> tuple[list[dict], str]:
    """Load guanaco-style ``{"text": ...}`` records: COURSE_DATA_DIR, the Hub on GPU, else the sample.

    ``n_rows`` defaults to the profile's training plus held-out examples.
    """
    wanted = n_rows or profile.n_train + profile.n_eval
    n_rows = min(wanted, GUANACO_ROWS)
    if n_rows < wanted:
        print(f"guanaco-llama2-1k has {GUANACO_ROWS:,} rows: asked for {wanted:,}, loading {n_rows:,}")
    return load_records("guanaco", GUANACO_LOCAL_FILE, GUANACO_SAMPLE,
                        hub=lambda: hub_guanaco(n_rows), use_hub=hub_allowed(profile), limit=n_rows)


def guanaco_chats(rows: list[dict]) -> list[dict]:
    """Turn ``{"text": ...}`` records into prompt/completion chats, skipping malformed ones loudly."""
    out, bad = [], 0
    for row in rows:
        try:
            out.append(chat_to_prompt_completion(parse_llama2(row["text"])))
        except ValueError:
            bad += 1
    if bad:
        print(f"skipped {bad} of {len(rows)} records that are not in the [INST] format")
    return out
