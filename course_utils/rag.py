"""Adapting a model without training: few-shot prompts and retrieval-augmented generation (RAG).

Notebook 02 uses these small pure functions. Each one is a step a learner can check on its own:
chunk a document, embed the chunks, score them by cosine similarity, keep the top k, put them into
a chat prompt, and measure both the retrieval (recall@k) and the answer (does it hold the key fact?).
No function here changes a model's weights.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

# --- in-context learning -------------------------------------------------------------------------


def few_shot_messages(system: str, demos: Sequence[dict], text: str, k: int,
                      text_key: str = "text", label_key: str = "label") -> list[dict]:
    """Build a chat with ``k`` solved examples as earlier user/assistant turns, then the question.

    Examples as real turns (not pasted into one message) show the model the exact shape of the
    reply we want: the assistant turn holds the label and nothing else.

    Taught in lesson 02, section «4 · Zero-shot vs few-shot».
    """
    if k > len(demos):
        raise ValueError(f"asked for {k} examples but only {len(demos)} demos exist")
    messages = [{"role": "system", "content": system}]
    for demo in demos[:k]:
        messages += [{"role": "user", "content": demo[text_key]},
                     {"role": "assistant", "content": demo[label_key]}]
    messages.append({"role": "user", "content": text})
    return messages


def first_word(reply: str) -> str:
    """Return the reply's first word, lower-cased and without punctuation (the predicted label).

    Taught in lesson 02, section «4 · Zero-shot vs few-shot».
    """
    match = re.search(r"[A-Za-z]+", reply)
    return match.group(0).lower() if match else ""


# --- chunking ------------------------------------------------------------------------------------


def chunk_markdown(text: str, max_words: int = 80) -> list[dict]:
    """Split a markdown document at its ``##`` headings, then into windows of at most ``max_words``.

    Headings are natural boundaries: one section holds one topic, so a chunk rarely mixes two facts
    a question could confuse. The section title is kept in the chunk text (it carries the words a
    question uses, e.g. "Annual leave") and in ``section``, which recall@k compares against.
    Returns ``[{"section", "text"}, ...]`` in document order.

    Taught in lesson 02, section «5 · RAG without training».
    """
    if max_words < 1:
        raise ValueError("max_words must be at least 1")
    chunks = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:  # [0] is the title and intro
        title, _, body = part.partition("\n")
        words = body.split()
        for start in range(0, max(len(words), 1), max_words):
            piece = " ".join(words[start:start + max_words])
            chunks.append({"section": title.strip(), "text": f"{title.strip()}: {piece}"})
    return chunks


# --- embedding and retrieval ---------------------------------------------------------------------


def embed(encoder, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Embed texts with a sentence-transformers model; returns a float32 tensor (n, dim).

    The vectors are returned as the encoder makes them: all-MiniLM-L6-v2 ends in a ``Normalize``
    module, so its vectors are already unit length. ``cosine_scores`` normalizes anyway, so any
    encoder works and the notebook shows where the cosine comes from.
    """
    return encoder.encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                          normalize_embeddings=False, show_progress_bar=False).float().cpu()


def cosine_scores(queries: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
    """Return the (n_queries, n_docs) cosine similarities: dot products of unit-length vectors.

    Cosine ignores vector length, which in sentence embeddings mostly reflects text length, not topic.

    Taught in lesson 02, section «5 · RAG without training».
    """
    q = queries / queries.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    d = docs / docs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return q @ d.T


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (values, indices) of the ``k`` best documents per query, best first."""
    k = min(k, scores.shape[-1])
    return torch.topk(scores, k, dim=-1)


def recall_at_k(ranked_sections: Sequence[Sequence[str]], gold_sections: Sequence[str], k: int) -> float:
    """Share of questions whose gold section is among the first ``k`` retrieved chunks.

    Recall, not precision, is what matters for RAG: the model can ignore an extra chunk, but it cannot
    use a fact that was never put into the prompt. It can only grow with k.

    Taught in lesson 02, section «5 · RAG without training».
    """
    if len(ranked_sections) != len(gold_sections):
        raise ValueError("one ranking per question is needed")
    if not gold_sections:
        return 0.0
    hits = sum(gold in list(ranked)[:k] for ranked, gold in zip(ranked_sections, gold_sections))
    return hits / len(gold_sections)


# --- prompt assembly and scoring -----------------------------------------------------------------


def rag_messages(question: str, chunks: Sequence[str] | None, system: str) -> list[dict]:
    """Build the chat for one question: with retrieved ``chunks`` as context, or closed-book (None).

    The context goes into the user turn, right before the question, so the model reads the facts
    last; the chat template (not hand-written special tokens) then formats the turns.

    Taught in lesson 02, section «5 · RAG without training».
    """
    if not chunks:
        return [{"role": "system", "content": system}, {"role": "user", "content": question}]
    context = "\n".join(f"- {c}" for c in chunks)
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"Context:\n{context}\n\nQuestion: {question}"}]


def contains_answer(reply: str, answer: str) -> bool:
    """True if the key fact appears in the reply as a whole word (case-insensitive).

    Whole words, so that the answer "3" is not found inside "37" or "2013".

    Taught in lesson 02, section «5 · RAG without training».
    """
    pattern = r"(?<![\w])" + re.escape(answer.lower()) + r"(?![\w])"
    return re.search(pattern, reply.lower()) is not None
