import json

import pytest

from course_utils import PROFILES, persona
from course_utils.data import SAMPLE_DIR


def _good():
    return [{"instruction": "你是谁？", "input": "", "output": "我是甄嬛，家父是大理寺少卿甄远道。"},
            {"instruction": "皇上驾到！", "input": "", "output": "臣妾恭迎皇上。"}]


def test_sample_has_the_real_schema_and_identity_answers():
    rows = json.loads((SAMPLE_DIR / persona.SAMPLE_FILE).read_text(encoding="utf-8"))
    assert len(rows) >= 36
    assert persona.validate_records(rows) is rows
    assert all(set(r) == set(persona.REQUIRED_KEYS) for r in rows)
    who = [r["output"] for r in rows if r["instruction"] == "你是谁？"]
    assert who and all("甄嬛" in a and "甄远道" in a for a in who)
    # The held-out questions really are held out.
    asked = {r["instruction"] for r in rows}
    assert not asked & {q for _, q in persona.HELD_OUT_QUESTIONS}


@pytest.mark.parametrize("bad, index, words", [
    ({"instruction": "x", "input": ""}, 1, "'output' is missing"),
    ({"instruction": "x", "input": "", "output": 3}, 1, "'output' should be a string, got int"),
    ({"instruction": "x", "input": None, "output": "y"}, 1, "'input' should be a string, got NoneType"),
    ({"instruction": "x", "input": "", "output": "  "}, 1, "'output' is empty"),
    ("just text", 1, "expected a dict"),
])
def test_validator_names_the_bad_record(bad, index, words):
    rows = _good()[:1] + [bad] + _good()
    with pytest.raises(persona.RecordError) as err:
        persona.validate_records(rows)
    assert f"record {index}:" in str(err.value) and words in str(err.value)


def test_load_offline_uses_sample(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    rows, source = persona.load_huanhuan(PROFILES["cpu"])
    assert "huanhuan_sample.json" in source and len(rows) >= 36
    assert "rows from course sample" in capsys.readouterr().out


def test_load_prefers_course_data_dir(tmp_path, monkeypatch):
    (tmp_path / "huanhuan.json").write_text(json.dumps(_good(), ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    rows, source = persona.load_huanhuan(PROFILES["t4"])  # COURSE_DATA_DIR wins before any download
    assert rows == _good() and "COURSE_DATA_DIR" in source


def test_encode_masks_prompt_and_ends_with_eos(tokenizer):
    rec = _good()[0]
    ex = persona.encode_example(tokenizer, rec, max_len=10_000)
    n_prompt = sum(lab == -100 for lab in ex["labels"])
    prompt = tokenizer.apply_chat_template(persona.to_messages(rec), add_generation_prompt=True,
                                           tokenize=True, return_dict=True)["input_ids"]
    assert ex["input_ids"][:n_prompt] == list(prompt)
    assert all(lab == -100 for lab in ex["labels"][:n_prompt])
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["labels"][-1] == tokenizer.eos_token_id != tokenizer.pad_token_id
    loss_text = tokenizer.decode(persona.loss_tokens(ex))
    assert loss_text == rec["output"] + tokenizer.eos_token
    # The encoded example is the template's full conversation up to (and including) the EOS.
    full = tokenizer.apply_chat_template(persona.to_messages(rec) + [{"role": "assistant", "content": rec["output"]}],
                                         tokenize=True, return_dict=True)["input_ids"]
    assert list(full[:len(ex["input_ids"])]) == ex["input_ids"]
    assert not ex["truncated"] and len(ex["attention_mask"]) == len(ex["input_ids"])


def test_encode_truncates_to_max_len(tokenizer):
    ex = persona.encode_example(tokenizer, _good()[0], max_len=20)
    assert ex["truncated"] and len(ex["input_ids"]) == len(ex["labels"]) == 20


class _ByteTokenizer:
    """A tokenizer with no merges at all: one token per UTF-8 byte (what a byte-level BPE falls back to)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(text.encode("utf-8"))}


def test_count_cjk_and_tokens_per_char():
    assert persona.count_cjk("我是甄嬛，家父。abc") == 6
    # Worked by hand: each Chinese character and each full-width comma is 3 bytes, each letter 1.
    # "我是甄嬛，abc" = 4*3 + 3 + 3 = 18 tokens; 4 Chinese characters, 8 characters in all.
    byte_tok = _ByteTokenizer()
    assert persona.tokens_per_char(byte_tok, ["我是甄嬛"]) == 3.0
    assert persona.tokens_per_char(byte_tok, ["我是甄嬛，abc"]) == 18 / 4
    assert persona.tokens_per_char(byte_tok, ["我是甄嬛，abc"], chinese_only=False) == 18 / 8
    assert persona.tokens_per_char(byte_tok, ["我", "是甄嬛，abc"]) == 18 / 4  # pooled; the mean of 3 and 5 is 4


def test_adherence_scores_each_kind():
    answers = ["我是甄嬛。", "I am an AI.", "臣妾遵旨。", "好的。"]
    kinds = ["identity", "identity", "style", "style"]
    assert persona.adherence(answers, kinds) == {"all": 0.5, "identity": 0.5, "style": 0.5}
    assert persona.adheres("家父甄远道", "identity") and not persona.adheres("本宫", "identity")


def test_reply_pairs_are_unseen_and_differ_in_the_persona_only():
    """The likelihood test's pairs: questions not in the data, in-character replies carry a marker,
    out-of-character ones none, and the records put the same prompt before both replies."""
    import json

    from course_utils import persona
    from course_utils.data import SAMPLE_DIR

    data = json.loads((SAMPLE_DIR / persona.SAMPLE_FILE).read_text(encoding="utf-8"))
    asked = {r["instruction"] for r in data} | {q for _, q in persona.HELD_OUT_QUESTIONS}
    markers = [m for ms in persona.MARKERS.values() for m in ms]
    assert len(persona.REPLY_PAIRS) == 20
    for question, good, bad in persona.REPLY_PAIRS:
        assert question not in asked
        assert any(m in good for m in markers) and not any(m in bad for m in markers)
    good, bad = persona.reply_pair_records(persona.NAMELESS_PROMPT)
    assert [g["prompt"] for g in good] == [b["prompt"] for b in bad]
    assert "甄嬛" not in persona.NAMELESS_PROMPT and persona.NAMELESS_PROMPT in persona.SYSTEM_PROMPT
