"""Tests for course_utils.instruct: the guanaco-llama2 text format, parsed into chats and back."""

import json

import pytest

from course_utils import get_profile
from course_utils.data import SAMPLE_DIR, clamp_split, read_jsonl, split_train_eval
from course_utils.instruct import (
    GUANACO_ROWS,
    GUANACO_SAMPLE,
    chat_to_prompt_completion,
    guanaco_chats,
    load_guanaco,
    parse_llama2,
)


def format_llama2(messages: list[dict]) -> str:
    """Write a chat in the guanaco-llama2 text format: the inverse of ``parse_llama2``, written
    independently, so a round trip through both checks the parser."""
    text, system = "", None
    turns = list(messages)
    if turns and turns[0]["role"] == "system":
        system = turns.pop(0)["content"]
    if len(turns) % 2 or any(m["role"] != r for m, r in zip(turns, ["user", "assistant"] * len(turns))):
        raise ValueError("expected alternating user/assistant turns, starting with user")
    for i in range(0, len(turns), 2):
        question = turns[i]["content"]
        if system is not None and i == 0:
            question = f"<<SYS>>\n{system}\n<</SYS>>\n\n{question}"
        text += f"<s>[INST] {question} [/INST] {turns[i + 1]['content']} </s>"
    return text


def test_parse_single_turn():
    msgs = parse_llama2("<s>[INST] What is 2+2? [/INST] 4. </s>")
    assert msgs == [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}]


def test_parse_multi_turn_and_system():
    text = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST] Ciao </s>"
    msgs = parse_llama2(text)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant"]
    assert msgs[0]["content"] == "Be brief." and msgs[1]["content"] == "Hi" and msgs[-1]["content"] == "Ciao"
    assert format_llama2(msgs) == text


def test_parse_tolerates_missing_eos_between_turns():
    msgs = parse_llama2("<s>[INST] a [/INST] b <s>[INST] c [/INST] d")
    assert [m["content"] for m in msgs] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("bad", ["plain text", "<s>[INST] question only [/INST] </s>", ""])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_llama2(bad)


def test_format_rejects_wrong_roles():
    with pytest.raises(ValueError):
        format_llama2([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}])


def test_prompt_completion_split():
    msgs = parse_llama2("<s>[INST] a [/INST] b </s><s>[INST] c [/INST] d </s>")
    pc = chat_to_prompt_completion(msgs)
    assert [m["content"] for m in pc["prompt"]] == ["a", "b", "c"]
    assert pc["completion"] == [{"role": "assistant", "content": "d"}]
    with pytest.raises(ValueError):
        chat_to_prompt_completion(msgs[:-1])


def test_sample_file_is_exact_format_and_round_trips():
    rows = read_jsonl(SAMPLE_DIR / GUANACO_SAMPLE)
    assert 40 <= len(rows) <= 100
    for row in rows:
        assert set(row) == {"text"}
        assert row["text"].startswith("<s>[INST] ") and row["text"].endswith(" </s>")
        assert format_llama2(parse_llama2(row["text"])) == row["text"]
    assert len(guanaco_chats(rows)) == len(rows)
    questions = [parse_llama2(r["text"])[0]["content"] for r in rows]
    assert len(set(questions)) == len(questions)  # no duplicates that would leak into the held-out set


def test_guanaco_chats_skips_bad_rows(capsys):
    rows = [{"text": "<s>[INST] q [/INST] a </s>"}, {"text": "no format"}]
    assert len(guanaco_chats(rows)) == 1
    assert "skipped 1 of 2" in capsys.readouterr().out


def test_split_is_disjoint_and_seeded():
    rows = list(range(20))
    train, held = split_train_eval(rows, 5, seed=1)
    assert len(held) == 5 and len(train) == 15 and not set(train) & set(held)
    assert split_train_eval(rows, 5, seed=1) == (train, held)
    with pytest.raises(ValueError):
        split_train_eval(rows, 20)


def test_load_guanaco_sources(tmp_path, monkeypatch):
    profile = get_profile("cpu")
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    rows, source = load_guanaco(profile, n_rows=10)
    assert len(rows) == 10 and "course sample" in source
    local = tmp_path / "guanaco" / "train.jsonl"
    local.parent.mkdir()
    local.write_text(json.dumps({"text": "<s>[INST] x [/INST] y </s>"}) + "\n", encoding="utf-8")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    rows, source = load_guanaco(profile, n_rows=10)
    assert rows == [{"text": "<s>[INST] x [/INST] y </s>"}] and "COURSE_DATA_DIR" in source


def test_clamp_split_keeps_request_that_fits_and_shrinks_one_that_does_not(capsys):
    assert clamp_split(48, 12, 60) == (48, 12)
    assert capsys.readouterr().out == ""
    n_train, n_eval = clamp_split(1000, 200, GUANACO_ROWS)  # the a100 profile on the 1k set
    assert (n_train, n_eval) == (833, 167) and n_train + n_eval == GUANACO_ROWS
    assert "833" in capsys.readouterr().out
    assert clamp_split(5, 5, 2) == (1, 1)
    with pytest.raises(ValueError):
        clamp_split(5, 5, 1)


def test_load_guanaco_clamps_a_slice_past_the_data_set(monkeypatch, capsys):
    import course_utils.instruct as instruct

    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    asked = []  # the slice the Hub is asked for: past the set's 1,000 rows, datasets would raise
    monkeypatch.setattr(instruct, "hub_allowed", lambda profile: True)
    monkeypatch.setattr(instruct, "hub_guanaco", lambda n: asked.append(n) or [{"text": "<s>[INST] q [/INST] a </s>"}] * n)
    rows, source = load_guanaco(get_profile("cpu"), n_rows=GUANACO_ROWS + 200)
    assert f"asked for {GUANACO_ROWS + 200:,}, loading {GUANACO_ROWS:,}" in capsys.readouterr().out
    assert asked == [GUANACO_ROWS] and len(rows) == GUANACO_ROWS and source == "Hugging Face Hub"
