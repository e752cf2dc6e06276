"""GSM8K data: the real ``openai/gsm8k`` when it can be had, else word problems the course generates.

Every record has GSM8K's own shape, ``{"question": str, "answer": str}``, where the answer is
step-by-step reasoning with calculator annotations (``<<48/2=24>>``) and a last line ``#### N``.
The offline generator keeps that shape so the same notebook code runs on the cpu profile, in CI
and on a GPU with the real data set. Its arithmetic is computed, never typed, and each template
(rates, fractions, money, time, percentages, multi-step) asks for two to four calculation steps.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from collections.abc import Callable
from fractions import Fraction

from .data import hub_allowed, load_records
from .evaluation import extract_gsm8k_answer

HUB_ID, HUB_CONFIG = "openai/gsm8k", "main"
SPLITS = ("train", "test")

PROMPT_TEMPLATE = (
    "{question}\n"
    "Solve it step by step, then write the final answer on its own line as '#### <number>'."
)
"""The user message for one problem: the same before and after training, so the comparison is fair."""

_NAMES = [("Natalia", "she", "her"), ("Weng", "he", "his"), ("Betty", "she", "her"),
          ("Julie", "she", "her"), ("James", "he", "his"), ("Albert", "he", "his"),
          ("Mira", "she", "her"), ("Tobias", "he", "his"), ("Priya", "she", "her"),
          ("Kenji", "he", "his"), ("Lena", "she", "her"), ("Omar", "he", "his")]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate_expression(expr: str) -> Fraction:
    """Evaluate + - * / and parentheses over integers exactly (a GSM8K calculator annotation)."""

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported expression {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


_ANNOTATION = re.compile(r"<<([^<>=]+)=[^<>]*>>")


def procedure_correct(output: str, reference: str) -> bool:
    """Say whether the output's last calculator annotation, computed exactly, gives the reference answer.

    "Procedure accuracy": a model that writes the right computation with wrong arithmetic
    (``<<315*7=2200>>``) is wrong by exact match and right here, so it shows whether a small model
    learned *which* computation to write. The expression is evaluated with ``evaluate_expression``;
    the model's own result after ``=`` is ignored. No annotation, or one that does not parse, is wrong.

    Taught in lesson 06, section «9 · Train, then measure again».
    """
    found = _ANNOTATION.findall(output)
    gold = extract_gsm8k_answer(reference)
    if not found or gold is None:
        return False
    try:
        return evaluate_expression(found[-1].strip()) == Fraction(gold)
    except (ValueError, SyntaxError, ZeroDivisionError):
        return False


def _fmt(value: Fraction) -> str:
    if value.denominator != 1:
        raise ValueError(f"generator produced a non-integer result {value}")
    return str(value.numerator)


class _Steps:
    """Collect reasoning lines; ``calc`` computes an expression and writes its annotation."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def calc(self, expr: str) -> tuple[int, str]:
        value = _fmt(evaluate_expression(expr))
        return int(value), f"{expr.replace(' ', '')} = <<{expr.replace(' ', '')}={value}>>{value}"

    def say(self, line: str) -> None:
        self.lines.append(line)

    def answer(self, final: int) -> str:
        return "\n".join([*self.lines, f"#### {final}"])


def _rates(rng: random.Random) -> dict:
    name, _, _ = rng.choice(_NAMES)
    per_min, hours = rng.randint(3, 12), rng.randint(2, 8)
    pause = rng.randint(10, 50)
    s = _Steps()
    minutes, t = s.calc(f"{hours}*60")
    s.say(f"The machine runs {hours} hours, which is {t} minutes.")
    working, t = s.calc(f"{minutes}-{pause}")
    s.say(f"It stops for {pause} minutes, so it works {t} minutes.")
    total, t = s.calc(f"{working}*{per_min}")
    s.say(f"At {per_min} bottles per minute it fills {t} bottles.")
    q = (f"{name}'s machine fills {per_min} bottles every minute. On Monday it runs for {hours} hours, "
         f"but it is stopped for {pause} minutes for cleaning. How many bottles does it fill on Monday?")
    return {"question": q, "answer": s.answer(total)}


def _fractions(rng: random.Random) -> dict:
    name, pron, poss = rng.choice(_NAMES)
    den = rng.choice([2, 3, 4, 5])
    num = rng.randint(1, den - 1)
    total, extra = den * rng.randint(4, 20), rng.randint(3, 30)
    item = rng.choice(["marbles", "stickers", "baseball cards", "clips"])
    s = _Steps()
    given, t = s.calc(f"{total}*{num}/{den}")
    s.say(f"{name} gives away {t} {item}.")
    left, t = s.calc(f"{total}-{given}")
    s.say(f"{pron.capitalize()} has {t} {item} left.")
    now, t = s.calc(f"{left}+{extra}")
    s.say(f"After buying {extra} more, {pron} has {t} {item}.")
    q = (f"{name} has {total} {item}. {pron.capitalize()} gives {num}/{den} of them to {poss} friend "
         f"and then buys {extra} more. How many {item} does {name} have now?")
    return {"question": q, "answer": s.answer(now)}


def _money(rng: random.Random) -> dict:
    name, pron, _ = rng.choice(_NAMES)
    a, p, b, c = rng.randint(2, 9), rng.randint(2, 15), rng.randint(2, 9), rng.randint(1, 6)
    s = _Steps()
    books, t1 = s.calc(f"{a}*{p}")
    pens, t2 = s.calc(f"{b}*{c}")
    s.say(f"The notebooks cost {t1} dollars and the pens cost {t2} dollars.")
    cost, t = s.calc(f"{books}+{pens}")
    s.say(f"Together {pron} spends {t} dollars.")
    bill = next(x for x in (20, 50, 100, 200) if x > cost)
    change, t = s.calc(f"{bill}-{cost}")
    s.say(f"{pron.capitalize()} gets {t} dollars in change.")
    q = (f"{name} buys {a} notebooks at ${p} each and {b} pens at ${c} each. {pron.capitalize()} pays "
         f"with a ${bill} bill. How much change, in dollars, does {pron} get?")
    return {"question": q, "answer": s.answer(change)}


def _time(rng: random.Random) -> dict:
    name, pron, _ = rng.choice(_NAMES)
    while True:
        minutes, days, weeks = rng.choice([15, 20, 30, 40, 45, 50]), rng.randint(3, 6), rng.randint(2, 8)
        if (minutes * days * weeks) % 60 == 0:
            break
    s = _Steps()
    per_week, t = s.calc(f"{minutes}*{days}")
    s.say(f"{name} practices {t} minutes a week.")
    total, t = s.calc(f"{per_week}*{weeks}")
    s.say(f"In {weeks} weeks {pron} practices {t} minutes.")
    hours, t = s.calc(f"{total}/60")
    s.say(f"That is {t} hours.")
    q = (f"{name} practices the piano for {minutes} minutes a day, {days} days a week. How many hours "
         f"does {pron} practice in {weeks} weeks?")
    return {"question": q, "answer": s.answer(hours)}


def _percent(rng: random.Random) -> dict:
    name, pron, _ = rng.choice(_NAMES)
    while True:
        price, pct = rng.randint(4, 40) * 5, rng.choice([10, 20, 25, 30, 40, 50])
        if (price * pct) % 100 == 0:
            break
    n = rng.randint(2, 6)
    s = _Steps()
    off, t = s.calc(f"{price}*{pct}/100")
    s.say(f"The discount is {t} dollars per jacket.")
    sale, t = s.calc(f"{price}-{off}")
    s.say(f"Each jacket costs {t} dollars on sale.")
    total, t = s.calc(f"{sale}*{n}")
    s.say(f"For {n} jackets {pron} pays {t} dollars.")
    q = (f"A jacket costs ${price}. This week it is {pct}% off. {name} buys {n} jackets. "
         f"How many dollars does {pron} pay?")
    return {"question": q, "answer": s.answer(total)}


def _multi_step(rng: random.Random) -> dict:
    name, _, _ = rng.choice(_NAMES)
    while True:
        batches, per_batch, box = rng.randint(2, 8), rng.choice([12, 18, 20, 24, 30, 36]), rng.choice([4, 6])
        if (batches * per_batch) % box == 0:
            break
    price, days = rng.randint(3, 9), rng.randint(2, 7)
    s = _Steps()
    cookies, t = s.calc(f"{batches}*{per_batch}")
    s.say(f"The bakery makes {t} cookies a day.")
    boxes, t = s.calc(f"{cookies}/{box}")
    s.say(f"That fills {t} boxes.")
    daily, t = s.calc(f"{boxes}*{price}")
    s.say(f"Selling every box brings {t} dollars a day.")
    total, t = s.calc(f"{daily}*{days}")
    s.say(f"In {days} days the bakery makes {t} dollars.")
    q = (f"{name}'s bakery bakes {batches} batches of {per_batch} cookies every day and packs them in "
         f"boxes of {box}. Each box sells for ${price}. If every box is sold, how many dollars does the "
         f"bakery make in {days} days?")
    return {"question": q, "answer": s.answer(total)}


TEMPLATES: dict[str, Callable[[random.Random], dict]] = {
    "rates": _rates, "fractions": _fractions, "money": _money, "time": _time,
    "percent": _percent, "multi_step": _multi_step,
}


def generate_problems(n: int, seed: int = 0, split: str = "train") -> list[dict]:
    """Generate ``n`` GSM8K-style problems, the same ones for the same (seed, split).

    Templates take turns, so every kind of problem appears. The split is part of the random
    seed, so train and test draw different numbers; duplicate questions are skipped.
    """
    rng = random.Random(f"gsm8k-{split}-{seed}")
    names, rows, seen = list(TEMPLATES), [], set()
    i = 0
    while len(rows) < n:
        row = TEMPLATES[names[i % len(names)]](rng)
        i += 1
        if row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    return rows


def _hub_rows(split: str, n: int) -> list[dict]:
    from datasets import load_dataset  # imported here: only GPU profiles with Hub access need it

    ds = load_dataset(HUB_ID, HUB_CONFIG, split=f"{split}[:{n}]")  # slice on load, not after
    return [{"question": r["question"], "answer": r["answer"]} for r in ds]


def load_gsm8k(split: str, n: int, profile, seed: int = 0) -> tuple[list[dict], str]:
    """Load ``n`` GSM8K records of ``split``: COURSE_DATA_DIR, the Hub (GPU profiles), else the generator.

    Taught in lesson 06, section «3 · The data: GSM8K, or problems in its exact format».
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return load_records(
        f"GSM8K {split}", f"gsm8k/{split}.jsonl",
        sample=lambda: generate_problems(n, seed=seed, split=split),
        hub=lambda: _hub_rows(split, n), use_hub=hub_allowed(profile), limit=n)


def question_chat(question: str) -> list[dict]:
    """The chat that asks one GSM8K question, as training and evaluation both ask it.

    Taught in lesson 06, section «7 · The base model in 8-bit: does LoRA train on it?».
    """
    return [{"role": "user", "content": PROMPT_TEMPLATE.format(question=question)}]


def record_to_prompt_completion(row: dict) -> dict:
    """Turn a record into trl's conversational prompt/completion form (loss on the completion only).

    Taught in lesson 06, section «4 · Tokenizer, records and the length distribution».
    """
    return {"prompt": question_chat(row["question"]),
            "completion": [{"role": "assistant", "content": row["answer"]}]}


def generation_budget(completion_lens, floor: int, cap: int | None = None) -> tuple[int, str]:
    """``max_new_tokens`` for answering problems: room for the longest reference answer, within ``cap``.

    The budget is the longest reference completion plus 8 tokens, rounded up to a multiple of 8, and
    at least ``floor``. Greedy decoding runs a batch until its longest reply stops, so one long answer
    costs every row of the batch that many decoding steps: ``cap`` (the cpu profile's) bounds that.
    Returns the budget and a line saying what, if anything, was capped.

    Taught in lesson 06, section «4 · Tokenizer, records and the length distribution».
    """
    lens = [int(n) for n in completion_lens]
    if not lens:
        raise ValueError("generation_budget needs the token lengths of at least one reference completion")
    need = max(int(floor), -(-(max(lens) + 8) // 8) * 8)
    if cap is None or need <= cap:
        return need, f"max_new_tokens = {need} (longest reference completion: {max(lens)} tokens; not capped)"
    n_long = sum(n > cap for n in lens)
    return cap, (f"max_new_tokens capped at {cap} (uncapped it would be {need}: longest reference completion "
                 f"{max(lens)} tokens); {n_long} of {len(lens)} reference completions are longer than "
                 "the cap, so an answer that long would be cut before its '#### N' line")
