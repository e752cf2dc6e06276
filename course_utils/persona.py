"""The persona lesson (甄嬛): load and validate the dialogue records, format them, score adherence.

The Chat-甄嬛 data set is a list of ``{"instruction", "input", "output"}`` records: a line someone
says to 甄嬛 and her reply. The helpers here keep three promises the old tutorial did not:

- every record is checked before tokenization, and a bad one is named (index, key, problem);
- the prompt comes from the tokenizer's own chat template, never from special tokens typed as text;
- the labels are -100 everywhere except the reply and the EOS token that ends it.
"""

from __future__ import annotations

import json
import urllib.request

from .data import hub_allowed, load_records

SYSTEM_PROMPT = "现在你要扮演皇帝身边的女人--甄嬛"
# The same prompt without her name: an identity answer that names her cannot be an echo of the prompt.
NAMELESS_PROMPT = "现在你要扮演皇帝身边的女人"
REQUIRED_KEYS = ("instruction", "input", "output")

HUANHUAN_URL = "https://raw.githubusercontent.com/datawhalechina/self-llm/master/dataset/huanhuan.json"
HUANHUAN_NOTE = ("huanhuan.json from github.com/datawhalechina/self-llm (dataset/), built by the "
                 "Chat-甄嬛 project from the drama's script: about 3,700 exchanges, about 1.3 MB")
SAMPLE_FILE = "huanhuan_sample.json"

# A fixed held-out question list: none of these lines is in the course's sample. "identity"
# answers pass when they name her (甄嬛) or her father (甄远道); "style" answers pass when she
# speaks as a palace woman does (本宫 / 臣妾 / 嫔妾).
HELD_OUT_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("identity", "你叫什么名字？"),
    ("identity", "请问你是哪位？"),
    ("identity", "介绍一下你自己。"),
    ("identity", "你的父亲是做什么官的？"),
    ("style", "皇上今晚要来，你准备好了吗？"),
    ("style", "娘娘，出去走走吧。"),
    ("style", "你觉得华妃是个什么样的人？"),
    ("style", "嬛嬛，朕赏你一支玉簪。"),
)
# Minimal pairs for the likelihood test: the same answer in character (the palace self-address, her
# name and family) and out of character (plain 我, no name). Written for the course; none of the
# questions is in the data. A model that has taken on the persona finds the first reply likelier.
REPLY_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("你是谁？请报上名来。", "臣妾甄嬛，家父是大理寺少卿甄远道。", "我是一个普通人，我的父亲在衙门里做事。"),
    ("你从哪里来？", "臣妾自甄府入宫，家父甄远道。", "我从家里来，我父亲在衙门做事。"),
    ("你叫什么？", "臣妾甄嬛。", "我没有名字。"),
    ("令尊在朝中任何职？", "家父甄远道，官居大理寺少卿。", "我父亲是一个普通的官员。"),
    ("今日天气如何？", "回皇上，臣妾瞧着今日天朗气清。", "今天天气很好，阳光明媚。"),
    ("你累不累？", "臣妾不累，能伺候皇上是臣妾的福分。", "我不累，谢谢你的关心。"),
    ("想吃点什么？", "本宫想尝尝御膳房新做的桂花糕。", "我想吃一点桂花糕。"),
    ("这件衣裳好看吗？", "臣妾觉得这件衣裳颜色雅致，很是好看。", "我觉得这件衣服颜色很好看。"),
    ("你喜欢读书吗？", "臣妾自幼喜读诗书，尤爱李义山的诗。", "我从小就喜欢读书，特别喜欢诗歌。"),
    ("明天做什么？", "本宫明日要去给太后请安。", "我明天要去看望长辈。"),
    ("你怕不怕？", "臣妾不怕，有皇上在，臣妾什么都不怕。", "我不怕，有你在我就不怕。"),
    ("要不要喝茶？", "本宫正口渴，奉茶来吧。", "好的，我正好口渴，给我一杯茶吧。"),
    ("外面下雪了。", "臣妾最爱雪景，倚梅园的梅花该开了。", "我很喜欢雪景，公园的梅花应该开了。"),
    ("你在想什么？", "臣妾在想家中的父母，不知他们可好。", "我在想家里的父母，不知道他们好不好。"),
    ("皇上赏了你一匹锦缎。", "臣妾谢皇上隆恩。", "谢谢你送的礼物。"),
    ("你为何叹气？", "本宫只是想起了一些旧事。", "我只是想起了一些过去的事。"),
    ("你会弹琴吗？", "臣妾略通琴艺，愿为皇上弹奏一曲。", "我会一点钢琴，可以给你弹一首。"),
    ("你生气了吗？", "臣妾不敢生皇上的气。", "我没有生你的气。"),
    ("你最近睡得好吗？", "臣妾近来夜里总是惊醒，睡得不安稳。", "我最近晚上经常醒，睡得不太好。"),
    ("有人说你坏话。", "本宫行得正坐得端，不怕旁人议论。", "我做事光明正大，不怕别人说什么。"),
)
MARKERS: dict[str, tuple[str, ...]] = {
    "identity": ("甄嬛", "甄远道"),
    "style": ("本宫", "臣妾", "嫔妾"),
}


class RecordError(ValueError):
    """A data record that cannot be trained on; the message names the record and the problem.

    Taught in lesson 09, section «3 · The data: records, validated one by one».
    """


def validate_records(rows: list, keys: tuple[str, ...] = REQUIRED_KEYS) -> list[dict]:
    """Check every record and raise ``RecordError`` naming the first bad one; return the rows.

    A record must be a dict whose ``keys`` are all strings, and whose ``output`` and
    ``instruction`` are not blank (``input`` may be empty). Catching this here gives a message
    such as ``record 17: key 'output' is missing`` instead of a TypeError deep in tokenization.

    Taught in lesson 09, section «3 · The data: records, validated one by one».
    """
    if not isinstance(rows, list):
        raise RecordError(f"expected a list of records, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RecordError(f"record {i}: expected a dict, got {type(row).__name__}: {row!r:.80}")
        for key in keys:
            if key not in row:
                raise RecordError(f"record {i}: key {key!r} is missing (keys present: {sorted(row)})")
            value = row[key]
            if not isinstance(value, str):
                raise RecordError(f"record {i}: key {key!r} should be a string, "
                                  f"got {type(value).__name__}: {value!r:.80}")
        for key in ("instruction", "output"):
            if key in keys and not row[key].strip():
                raise RecordError(f"record {i}: key {key!r} is empty; nothing to learn from "
                                  f"(instruction={row.get('instruction', '')!r:.40})")
    return rows


def download_huanhuan(url: str = HUANHUAN_URL, timeout_s: float = 60) -> list[dict]:
    """Download huanhuan.json, saying what and from where before a byte arrives."""
    print(f"Downloading {HUANHUAN_NOTE}\n  from {url}")
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - fixed https URL
        raw = resp.read()
    print(f"  received {len(raw) / 1e6:.2f} MB")
    return json.loads(raw.decode("utf-8"))


def load_huanhuan(profile, limit: int | None = None) -> tuple[list[dict], str]:
    """Load and validate the 甄嬛 records: COURSE_DATA_DIR, then GitHub (GPU and online), then the sample.

    Taught in lesson 09, section «3 · The data: records, validated one by one».
    """
    rows, source = load_records("huanhuan", "huanhuan.json", sample=SAMPLE_FILE, hub=download_huanhuan,
                                use_hub=hub_allowed(profile), limit=limit,
                                hub_name="GitHub (datawhalechina/self-llm)")
    return validate_records(rows), source


def reply_pair_records(system: str) -> tuple[list[dict], list[dict]]:
    """Prompt/completion records of ``REPLY_PAIRS``: (in character, out of character), same order.

    Taught in lesson 09, section «7 · The model, before training».
    """
    def record(question, reply):
        return {"prompt": to_messages({"instruction": question}, system),
                "completion": [{"role": "assistant", "content": reply}]}

    return ([record(q, good) for q, good, _ in REPLY_PAIRS], [record(q, bad) for q, _, bad in REPLY_PAIRS])


def to_messages(record: dict, system: str = SYSTEM_PROMPT) -> list[dict]:
    """Turn a record into chat messages: system prompt, then instruction (+ input) as the user turn.

    Taught in lesson 09, section «5 · Pitfall 4: a training format the model never sees at inference».
    """
    user = record["instruction"] + (("\n" + record["input"]) if record.get("input") else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def encode_example(tokenizer, record: dict, max_len: int, system: str = SYSTEM_PROMPT) -> dict:
    """Tokenize one record for completion-only SFT: prompt from the chat template, reply + EOS.

    Returns ``input_ids``, ``attention_mask``, ``labels`` (-100 on the prompt) and ``truncated``.
    The prompt ends with the template's generation prompt (``<|im_start|>assistant\\n`` for ChatML),
    so training sees exactly what ``generate`` will see at inference.

    Taught in lesson 09, section «3 · The data: records, validated one by one».
    """
    prompt = tokenizer.apply_chat_template(to_messages(record, system), add_generation_prompt=True,
                                           tokenize=True, return_dict=True)["input_ids"]
    reply = tokenizer(record["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = list(prompt) + reply
    labels = [-100] * len(prompt) + reply
    truncated = len(input_ids) > max_len
    input_ids, labels = input_ids[:max_len], labels[:max_len]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels,
            "truncated": truncated}


def loss_tokens(example: dict) -> list[int]:
    """Return the token ids that carry loss (labels other than -100), in order.

    Taught in lesson 09, section «6 · The right way: template prompt, reply + EOS, labels -100 on the prompt».
    """
    return [t for t in example["labels"] if t != -100]


def count_cjk(text: str) -> int:
    """Count CJK unified ideographs (Chinese characters) in a text; punctuation is not counted.

    Taught in lesson 09, section «4 · How many tokens does a Chinese character cost?».
    """
    return sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)


def tokens_per_char(tokenizer, texts: list[str], chinese_only: bool = True) -> float:
    """Tokens the tokenizer spends per character: per Chinese character, or per character of any kind.

    Taught in lesson 09, section «4 · How many tokens does a Chinese character cost?».
    """
    n_tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    n_chars = sum(count_cjk(t) if chinese_only else len(t) for t in texts)
    return n_tokens / max(n_chars, 1)


def adheres(answer: str, kind: str) -> bool:
    """Say whether one answer stays in character for its question kind ("identity" or "style").

    Taught in lesson 09, section «10 · Save, reload on a fresh base, and answer again».
    """
    return any(marker in answer for marker in MARKERS[kind])


def adherence(answers: list[str], kinds: list[str]) -> dict[str, float]:
    """Share of answers in character, overall and per question kind.

    Taught in lesson 09, section «7 · The model, before training».
    """
    hits = [adheres(a, k) for a, k in zip(answers, kinds, strict=True)]
    out = {"all": sum(hits) / len(hits)}
    for kind in dict.fromkeys(kinds):
        sel = [h for h, k in zip(hits, kinds, strict=True) if k == kind]
        out[kind] = sum(sel) / len(sel)
    return out
