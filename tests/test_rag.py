"""Tests for course_utils.rag: chunking, cosine retrieval, recall@k, prompts and answer scoring."""

import torch

from course_utils.data import SAMPLE_DIR, read_jsonl
from course_utils.rag import (
    chunk_markdown,
    contains_answer,
    cosine_scores,
    few_shot_messages,
    first_word,
    rag_messages,
    recall_at_k,
    top_k,
)
from course_utils.weights import state_dict_checksum

DOC = "# Title\nintro words\n\n## Alpha\none two three four five\n\n## Beta\nsix seven\n"


def test_chunk_markdown_splits_at_headings_and_windows():
    chunks = chunk_markdown(DOC, max_words=2)
    assert [c["section"] for c in chunks] == ["Alpha", "Alpha", "Alpha", "Beta"]
    assert chunks[0]["text"] == "Alpha: one two"
    assert chunks[2]["text"] == "Alpha: five"
    assert all("intro" not in c["text"] for c in chunks)


def test_handbook_sections_cover_every_question():
    chunks = chunk_markdown((SAMPLE_DIR / "rag_handbook.md").read_text(encoding="utf-8"))
    sections = {c["section"] for c in chunks}
    questions = read_jsonl(SAMPLE_DIR / "rag_questions.jsonl")
    assert len(questions) >= 10
    for q in questions:
        assert q["source"] in sections, q
        source_text = " ".join(c["text"] for c in chunks if c["section"] == q["source"])
        assert contains_answer(source_text, q["answer"]), q


def test_cosine_scores_match_a_loop_and_ignore_length():
    torch.manual_seed(0)
    q, d = torch.randn(3, 8), torch.randn(5, 8)
    scores = cosine_scores(q, d)
    for i in range(3):
        for j in range(5):
            ref = torch.nn.functional.cosine_similarity(q[i], d[j], dim=0)
            assert torch.isclose(scores[i, j], ref, atol=1e-6)
    assert torch.allclose(cosine_scores(q, 7.0 * d), scores, atol=1e-6)


def test_top_k_orders_best_first_and_caps_k():
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    values, idx = top_k(scores, 2)
    assert idx.tolist() == [[1, 2], [2, 0]]
    assert (values[:, 0] >= values[:, 1]).all()
    assert top_k(scores, 10)[1].shape == (2, 3)


def test_recall_at_k_counts_hits_and_is_monotone():
    ranked = [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]]
    gold = ["a", "a", "a"]
    recalls = [recall_at_k(ranked, gold, k) for k in (1, 2, 3)]
    assert recalls == [1 / 3, 2 / 3, 1.0]


def test_contains_answer_uses_whole_words():
    assert contains_answer("You get 27 days.", "27")
    assert not contains_answer("You work 37 hours.", "3")
    assert contains_answer("The mascot is PEBBLE.", "Pebble")
    assert contains_answer("It is Tomas Okonkwo", "tomas okonkwo")


def test_prompts_have_the_expected_turns():
    demos = [{"text": f"t{i}", "label": f"l{i}"} for i in range(3)]
    msgs = few_shot_messages("sys", demos, "question", k=2)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[2]["content"] == "l0" and msgs[-1]["content"] == "question"
    assert len(few_shot_messages("sys", demos, "q", k=0)) == 2
    closed = rag_messages("Q?", None, "sys")
    open_book = rag_messages("Q?", ["fact one", "fact two"], "sys")
    assert closed[-1]["content"] == "Q?"
    assert "- fact one\n- fact two" in open_book[-1]["content"] and open_book[-1]["content"].endswith("Q?")


def test_first_word():
    assert first_word(" Positive.") == "positive"
    assert first_word("**negative** because") == "negative"
    assert first_word("...") == ""


def test_state_dict_checksum_sees_a_single_changed_value():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    before = state_dict_checksum(model)
    assert state_dict_checksum(model) == before  # selfcheck: ok (a second read, nothing changed)
    with torch.no_grad():
        model[0].weight[1, 2] += 1e-6
    assert state_dict_checksum(model) != before
