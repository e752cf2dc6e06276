"""Scoring model outputs: GSM8K final answers, and subject-predicate-object triples.

Each metric is a small pure function so a notebook can show it on one example before using it on
a whole evaluation set.
"""

from __future__ import annotations

# --- GSM8K answers ---------------------------------------------------------------------------
import re as _re
from decimal import Decimal, InvalidOperation

# A number as people write it: 1234, 1,234, -3, 2.5, .5 (a comma only between groups of three).
_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+"
_NUM_RE = _re.compile(rf"(?<![\w.])(?:{_NUM})")
_HASH_RE = _re.compile(rf"####\s*\$?\s*({_NUM})")
_BOXED_RE = _re.compile(rf"\\boxed\{{\s*\\?\$?\s*({_NUM})")
_PHRASE_RE = _re.compile(  # "The answer is $1,234", "Final answer: 72", "**Answer:** 72"
    rf"answer\**\s*(?:is\s*[:=]?|[:=])\s*\**\s*\\?\$?\s*({_NUM})", _re.IGNORECASE)


def normalize_number(text: str) -> str | None:
    """Normalise a written number: drop commas, $, % and trailing zeros ("1,234.50" -> "1234.5")."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".%")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_gsm8k_answer(text: str | None, strict: bool = False) -> str | None:
    """Return the final numeric answer of a GSM8K reference or a model's output, normalised.

    Tried in order, the last match of each winning: ``#### N``; ``\\boxed{N}``; "the answer is N"
    (also "Final answer: $N"); then, unless ``strict``, the last number in the text. None when
    nothing matches. ``strict=True`` asks whether the output *states* a final answer.

    Taught in lesson 06, section «3 · The data: GSM8K, or problems in its exact format».
    """
    if not text:
        return None
    for pattern in (_HASH_RE, _BOXED_RE, _PHRASE_RE):
        matches = pattern.findall(text)
        if matches:
            return normalize_number(matches[-1])
    if strict:
        return None
    numbers = _NUM_RE.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def gsm8k_accuracy(outputs: list[str], references: list[str]) -> float:
    """Exact-match accuracy of the final answers of ``outputs`` against GSM8K ``references``.

    Taught in lesson 06, section «7 · The base model in 8-bit: does LoRA train on it?».
    """
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} references")
    if not outputs:
        return 0.0
    hits = 0
    for out, ref in zip(outputs, references, strict=True):
        pred, gold = extract_gsm8k_answer(out), extract_gsm8k_answer(ref)
        hits += pred is not None and pred == gold
    return hits / len(outputs)


def final_answer_share(outputs: list[str]) -> float:
    """Share of outputs that state a final answer (``####``, boxed or "the answer is"), not just a number.

    Taught in lesson 06, section «7 · The base model in 8-bit: does LoRA train on it?».
    """
    if not outputs:
        return 0.0
    return sum(extract_gsm8k_answer(o, strict=True) is not None for o in outputs) / len(outputs)


def completion_nll(model, tokenizer, records: list[dict], batch_size: int = 4, desc: str = "scoring",
                   per_token: bool = True):
    """Return each record's mean negative log-likelihood per token of its reference completion
    (``per_token=False``: the total over the completion, a log-probability ratio between two replies).

    Teacher forcing: the model reads prompt + reference completion through the chat template, and
    only the completion's tokens count (the end-of-turn token included), exactly the tokens training
    puts its loss on. One forward pass per record instead of a generation, so a notebook can score
    hundreds of held-out problems where generating answers scores a dozen; one number per record, so
    a before/after change gets a paired interval (``course_utils.stats.paired_bootstrap``). Records
    are trl's conversational prompt/completion dicts. The model is put in eval mode for the pass and
    given back in the mode it came in.
    """
    scores = completion_scores(model, tokenizer, records, batch_size, desc)
    return scores["nll"] if per_token else scores["nll"] * scores["tokens"]


def completion_scores(model, tokenizer, records: list[dict], batch_size: int = 4, desc: str = "scoring",
                      keep_logits: int = 0) -> dict:
    """Score each record's reference completion in one teacher-forced pass (see ``completion_nll``).

    Returns one number per record in each array: ``nll`` (mean negative log-likelihood per completion
    token), ``accuracy`` (next-token accuracy: the share of the completion's tokens that are the
    model's top-1 prediction from the reference text before them) and ``tokens`` (completion tokens
    scored); with ``keep_logits=k``, ``logits`` holds the fp32 CPU logits at the completion's tokens
    of the first k records, ``(tokens, vocab)`` each, to compare two models on the same positions.
    Records are batched by length (less padding); the results are in the order of ``records``.

    Taught in lesson 08, section «4 · LoRA, int8-LoRA or QLoRA: what the 4 bits cost».
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    rows = []
    for record in records:
        prompt = tokenizer.apply_chat_template(record["prompt"], add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        full = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True,
                                             return_dict=True)["input_ids"]
        if full[:len(prompt)] != prompt or len(full) <= len(prompt):
            raise ValueError("the chat template renders the prompt differently inside the conversation, "
                             "so the completion's tokens cannot be told apart")
        rows.append((full, len(prompt)))
    was_training = model.training
    model.eval()
    n = len(rows)
    out: dict = {"nll": [0.0] * n, "accuracy": [0.0] * n, "tokens": [0] * n,
                 "logits": [None] * min(keep_logits, n)}
    order = sorted(range(n), key=lambda k: len(rows[k][0]))  # batch similar lengths: less padding
    try:
        for start in tqdm(range(0, n, batch_size), desc=desc):
            batch = order[start:start + batch_size]
            width = max(len(rows[k][0]) for k in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            mask = torch.zeros_like(ids)
            for i, k in enumerate(batch):  # right padding: positions stay as in training
                ids[i, :len(rows[k][0])] = torch.tensor(rows[k][0])
                mask[i, :len(rows[k][0])] = 1
            with torch.no_grad():
                logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            for i, k in enumerate(batch):
                full, n_prompt = rows[k]
                # position t predicts token t + 1: the completion's tokens are predicted from n_prompt - 1 on
                pred = logits[i, n_prompt - 1:len(full) - 1].float()
                target = torch.tensor(full[n_prompt:], device=pred.device)
                out["nll"][k] = torch.nn.functional.cross_entropy(pred, target).item()
                out["accuracy"][k] = (pred.argmax(-1) == target).float().mean().item()
                out["tokens"][k] = len(target)
                if k < keep_logits:
                    out["logits"][k] = pred.cpu()
    finally:
        model.train(was_training)
    return {k: v if k == "logits" else np.array(v) for k, v in out.items()}


# --- triples (subject, predicate, object) ------------------------------------------------------
# The custom-LoRA lesson (10) asks a model to write one triple per line as ``(主体, 关系, 客体)``.
# Scoring is at the level of whole triples: a triple counts only if all three parts match exactly
# (after trimming spaces and book-title marks), as in the usual DuIE-style evaluation.

Triple = tuple[str, str, str]

# One triple: an opening bracket, three fields separated by ASCII or full-width commas, a closing one.
_FIELD = r"\s*([^,，()（）\n]+?)\s*"
_TRIPLE_PATTERN = rf"[(（]{_FIELD}[,，]{_FIELD}[,，]{_FIELD}[)）]"
_STRIP_CHARS = " \t《》「」“”\"'"


def normalize_triple(triple) -> Triple:
    """Trim spaces, quotes and book-title marks from each part so 《红楼梦》 matches 红楼梦."""
    if len(triple) != 3:
        raise ValueError(f"a triple has 3 parts (subject, predicate, object), got {triple!r}")
    return tuple(str(part).strip(_STRIP_CHARS) for part in triple)  # type: ignore[return-value]


def format_triples(triples) -> str:
    """Write triples the way the lesson's model should: one ``(主体, 关系, 客体)`` per line.

    Taught in lesson 10, section «3 · The task: triples from Chinese sentences».
    """
    return "\n".join("({}, {}, {})".format(*normalize_triple(t)) for t in triples)


def parse_triples(text: str) -> list[Triple]:
    """Read every ``(s, p, o)`` triple out of free model output; duplicates are kept once, in order.

    Text that is not a triple (a chatty preamble, a half-written last line) is ignored, so a model
    that rambles is not punished twice: it simply produces fewer triples.

    Taught in lesson 10, section «3 · The task: triples from Chinese sentences».
    """
    import re

    found: list[Triple] = []
    for match in re.finditer(_TRIPLE_PATTERN, text):
        triple = normalize_triple(match.groups())
        if all(triple) and triple not in found:
            found.append(triple)
    return found


def triple_counts(predicted, gold) -> dict[str, int]:
    """Count correct, predicted and gold triples of one example (each side as a set).

    Taught in lesson 10, section «5 · The baseline: what does the untrained model extract?».
    """
    pred = {normalize_triple(t) for t in predicted}
    ref = {normalize_triple(t) for t in gold}
    return {"correct": len(pred & ref), "predicted": len(pred), "gold": len(ref)}


def triple_scores(predicted_per_example, gold_per_example) -> dict[str, float]:
    """Micro precision, recall and F1 over a data set: counts are summed first, then divided.

    Precision = correct / predicted (0 when nothing was predicted), recall = correct / gold.

    Taught in lesson 10, section «3 · The task: triples from Chinese sentences».
    """
    predicted_per_example, gold_per_example = list(predicted_per_example), list(gold_per_example)
    if len(predicted_per_example) != len(gold_per_example):
        raise ValueError(f"{len(predicted_per_example)} predictions for {len(gold_per_example)} examples")
    totals = {"correct": 0, "predicted": 0, "gold": 0}
    for pred, gold in zip(predicted_per_example, gold_per_example, strict=True):
        for key, value in triple_counts(pred, gold).items():
            totals[key] += value
    precision = totals["correct"] / totals["predicted"] if totals["predicted"] else 0.0
    recall = totals["correct"] / totals["gold"] if totals["gold"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, **totals}


# Held-out sentences the course writes: the data set's eight relations in its own sentence patterns,
# over made-up people, works, companies and places (capitals are real), so the gold triples are exact
# and as many can be drawn as an interval needs. The first names and titles are not in the data.
_PEOPLE = ("林晓峰", "周明远", "陈思雨", "王海涛", "赵雪婷", "孙立文", "刘慧敏", "郑浩然", "何静怡", "黄子轩",
           "吴嘉宁", "许文博", "高雅琴", "马俊杰", "梁晨曦", "宋志远")
_PLACES = ("江苏扬州", "四川绵阳", "湖南岳阳", "山东烟台", "福建泉州", "广西桂林", "河北保定", "安徽芜湖")
_WORKS = ("远山的回声", "城南旧梦", "星河彼岸", "青石巷", "归途", "白鹭洲", "雪落无声", "长河落日")
_COMPANIES = ("星河科技", "青禾食品", "云帆物流", "北辰电子", "远航软件", "禾丰农业", "蓝鲸数据", "金桥建材")
_SCHOOLS = ("北京大学", "复旦大学", "浙江大学", "南京大学", "武汉大学", "中山大学", "四川大学", "厦门大学")
_LANDMARKS = (("望江楼", "四川省成都市"), ("拙政园", "江苏省苏州市"), ("黄鹤楼", "湖北省武汉市"),
              ("岳麓书院", "湖南省长沙市"), ("大雁塔", "陕西省西安市"), ("鼓浪屿", "福建省厦门市"))
_CAPITALS = (("葡萄牙", "里斯本"), ("希腊", "雅典"), ("瑞典", "斯德哥尔摩"), ("挪威", "奥斯陆"),
             ("波兰", "华沙"), ("匈牙利", "布达佩斯"), ("越南", "河内"), ("土耳其", "安卡拉"))


def _written_sentence(rng, kind: int) -> tuple[str, list[tuple[str, str, str]]]:
    """One sentence of pattern ``kind`` (0-7) with its gold triples, names drawn from ``rng``."""
    if kind == 0:
        p, x = rng.choice(_PEOPLE), rng.choice(_PLACES)
        return f"{p}出生于{x}。", [(p, "出生地", x)]
    if kind == 1:
        w, p = rng.choice(_WORKS), rng.choice(_PEOPLE)
        return f"《{w}》的作者是{p}。", [(w, "作者", p)]
    if kind == 2:
        w, p = rng.choice(_WORKS), rng.choice(_PEOPLE)
        return f"电影《{w}》由{p}执导。", [(w, "导演", p)]
    if kind == 3:
        p, u = rng.choice(_PEOPLE), rng.choice(_SCHOOLS)
        return f"{p}毕业于{u}。", [(p, "毕业院校", u)]
    if kind == 4:
        country, capital = rng.choice(_CAPITALS)
        return f"{country}的首都是{capital}。", [(country, "首都", capital)]
    if kind == 5:
        landmark, where = rng.choice(_LANDMARKS)
        return f"{landmark}位于{where}。", [(landmark, "位于", where)]
    if kind == 6:
        p, year, c = rng.choice(_PEOPLE), rng.randint(1985, 2015), rng.choice(_COMPANIES)
        return f"{p}于{year}年创立了{c}。", [(c, "创始人", p), (c, "成立时间", f"{year}年")]
    p, x, u = rng.choice(_PEOPLE), rng.choice(_PLACES), rng.choice(_SCHOOLS)
    return f"{p}出生于{x}，毕业于{u}。", [(p, "出生地", x), (p, "毕业院校", u)]


def generate_triple_sentences(n: int, seed: int = 0) -> list[dict]:
    """Return ``n`` distinct sentences with their gold triples, ``{"text", "triples"}`` like the data.

    Taught in lesson 10, section «3 · The task: triples from Chinese sentences».
    """
    import random

    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        text, triples = _written_sentence(rng, rng.randrange(8))
        if text not in seen:
            seen.add(text)
            rows.append({"text": text, "triples": [list(t) for t in triples]})
    return rows
