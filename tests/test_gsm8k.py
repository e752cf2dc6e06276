"""The GSM8K loader and the offline problem generator (course_utils.gsm8k)."""

import json
import re
from collections import Counter
from fractions import Fraction

import pytest

from course_utils.evaluation import extract_gsm8k_answer
from course_utils.gsm8k import (
    TEMPLATES,
    evaluate_expression,
    generate_problems,
    generation_budget,
    load_gsm8k,
    record_to_prompt_completion,
)
from course_utils.machinery.profiles import PROFILES

ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>(\S+)")


def exact_value(expr: str) -> Fraction:
    """Evaluate an arithmetic annotation exactly with Python's own parser, on Fractions (not the course's evaluator)."""
    assert re.fullmatch(r"[\d+\-*/(). ]+", expr), expr
    return eval(re.sub(r"\d+", lambda m: f"F({m.group()})", expr), {"__builtins__": {}, "F": Fraction})


def test_deterministic_for_a_seed_and_split():
    assert generate_problems(20, seed=3) == generate_problems(20, seed=3)
    assert generate_problems(20, seed=3) != generate_problems(20, seed=4)
    train = {r["question"] for r in generate_problems(200, split="train")}
    test = {r["question"] for r in generate_problems(50, split="test")}
    assert not train & test


def test_gsm8k_format_and_computed_arithmetic():
    rows = generate_problems(120, seed=0)
    assert len({r["question"] for r in rows}) == 120
    for row in rows:
        assert set(row) == {"question", "answer"}
        lines = row["answer"].split("\n")
        assert lines[-1].startswith("#### ") and len(lines) >= 3
        annotations = ANNOTATION.findall(row["answer"])
        assert len(annotations) >= 2
        for expr, result, written in annotations:
            # the generator computed each result with evaluate_expression: check it with a second evaluator
            assert exact_value(expr) == int(result) == int(written), (expr, result, written)
        # the final answer is the result of the last calculation
        assert extract_gsm8k_answer(row["answer"]) == annotations[-1][1]


def test_every_template_is_used():
    rows = generate_problems(len(TEMPLATES) * 3, seed=1)
    kinds = Counter()
    for r in rows:
        q = r["question"]
        kinds["rates" if "bottles" in q else "fractions" if "/" in q else "money" if "change" in q
              else "time" if "hours" in q else "percent" if "%" in q else "multi_step"] += 1
    assert set(kinds) == set(TEMPLATES) and min(kinds.values()) == 3


def test_evaluate_expression():
    assert evaluate_expression("48/2") == 24
    assert evaluate_expression("(3+4)*5-1") == 34
    with pytest.raises(ValueError):
        evaluate_expression("__import__('os')")


def test_record_to_prompt_completion():
    row = generate_problems(1)[0]
    pc = record_to_prompt_completion(row)
    assert pc["prompt"][0]["role"] == "user" and row["question"] in pc["prompt"][0]["content"]
    assert pc["completion"] == [{"role": "assistant", "content": row["answer"]}]


def test_load_offline_uses_the_generator(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    rows, source = load_gsm8k("test", 5, PROFILES["cpu"], seed=0)
    assert rows == generate_problems(5, seed=0, split="test")
    assert "generator" in source and "5 rows" in capsys.readouterr().out


def test_load_from_course_data_dir(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    real = [{"question": "Janet has 3 ducks. How many?", "answer": "She has 3.\n#### 3"}] * 4
    (tmp_path / "gsm8k" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in real))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    rows, source = load_gsm8k("train", 2, PROFILES["cpu"])
    assert rows == real[:2] and "COURSE_DATA_DIR" in source
    with pytest.raises(ValueError):
        load_gsm8k("validation", 2, PROFILES["cpu"])


def test_procedure_correct_reads_the_last_annotation_not_the_models_arithmetic():
    from course_utils.gsm8k import generate_problems, procedure_correct

    ref = "It works 360-45 = <<360-45=315>>315 minutes.\nIt fills 315*7 = <<315*7=2205>>2205 bottles.\n#### 2205"
    assert procedure_correct(ref, ref)
    assert procedure_correct("<<360-45=315>> then <<315*7=2200>>2200\n#### 2200", ref)  # right sum, wrong product
    assert not procedure_correct("<<315*6=1890>>1890\n#### 1890", ref)  # the wrong computation
    assert not procedure_correct("315 times 7 is 2205\n#### 2205", ref)  # no annotation to judge
    assert not procedure_correct("<<315 x 7=2205>>", ref)  # not an expression the evaluator reads
    # Every generated problem's own answer passes: its last annotation computes the final answer.
    assert all(procedure_correct(r["answer"], r["answer"]) for r in generate_problems(60, seed=3))


def test_generation_budget_caps_long_references():
    # real GSM8K answers run to ~400 tokens: uncapped, every batch could decode that far on a CPU
    long_refs = [90, 130, 412, 250, 161, 160]
    budget, note = generation_budget(long_refs, floor=48, cap=160)
    assert budget == 160
    assert "capped at 160" in note and "uncapped it would be 424" in note and "3 of 6" in note
    # without a cap (or with a roomy one) the budget covers the longest reference plus 8, in steps of 8
    assert generation_budget(long_refs, floor=48) == (424, generation_budget(long_refs, floor=48, cap=424)[1])
    assert generation_budget(long_refs, floor=48)[0] >= max(long_refs) + 8
    assert generation_budget([10, 20], floor=48, cap=160) == (48, generation_budget([10, 20], floor=48)[1])
    assert "not capped" in generation_budget([116], floor=48, cap=160)[1]
    assert generation_budget([116], floor=48, cap=160)[0] == 128
    with pytest.raises(ValueError, match="at least one"):
        generation_budget([], floor=48, cap=160)
