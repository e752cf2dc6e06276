"""Triple parsing and triple-level precision/recall/F1 (course_utils.evaluation, lesson 10)."""

import pytest

from course_utils.data import SAMPLE_DIR, read_jsonl
from course_utils.evaluation import (
    format_triples,
    normalize_triple,
    parse_triples,
    triple_counts,
    triple_scores,
)


def test_format_then_parse_round_trips():
    triples = [("鲁迅", "出生地", "浙江绍兴"), ("狂人日记", "作者", "鲁迅")]
    text = format_triples(triples)
    assert text == "(鲁迅, 出生地, 浙江绍兴)\n(狂人日记, 作者, 鲁迅)"
    assert parse_triples(text) == triples


def test_parse_tolerates_fullwidth_marks_chatter_and_duplicates():
    text = "好的，抽取结果如下：\n（《红楼梦》，作者，曹雪芹）\n(红楼梦, 作者, 曹雪芹)\n(法国,首都, 巴黎) 还有 (半个"
    assert parse_triples(text) == [("红楼梦", "作者", "曹雪芹"), ("法国", "首都", "巴黎")]
    assert parse_triples("我不知道。") == []
    assert parse_triples("(a, b)") == []  # two fields is not a triple


def test_normalize_rejects_wrong_arity():
    with pytest.raises(ValueError):
        normalize_triple(("a", "b"))


def test_counts_and_micro_scores():
    gold = [[("a", "r", "b"), ("c", "r", "d")], [("e", "r", "f")]]
    pred = [[("a", "r", "b"), ("x", "r", "y"), ("a", "r", "b")], []]
    assert triple_counts(pred[0], gold[0]) == {"correct": 1, "predicted": 2, "gold": 2}
    scores = triple_scores(pred, gold)
    assert scores["correct"] == 1 and scores["predicted"] == 2 and scores["gold"] == 3
    assert scores["precision"] == pytest.approx(1 / 2)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_scores_edge_cases():
    gold = [[("a", "r", "b")]]
    assert triple_scores([[]], gold)["precision"] == 0.0  # nothing predicted: no division by zero
    perfect = triple_scores(gold, gold)
    assert perfect["precision"] == perfect["recall"] == perfect["f1"] == 1.0
    with pytest.raises(ValueError):
        triple_scores([[], []], gold)


def test_shipped_sample_parses_back():
    rows = read_jsonl(SAMPLE_DIR / "triples_zh.jsonl")
    assert len(rows) >= 48
    for row in rows:
        assert row["text"] and row["triples"]
        triples = [tuple(t) for t in row["triples"]]
        assert parse_triples(format_triples(triples)) == triples
    assert triple_scores([r["triples"] for r in rows], [r["triples"] for r in rows])["f1"] == 1.0


def test_written_sentences_are_distinct_unseen_and_their_gold_parses_back():
    import json

    from course_utils.data import SAMPLE_DIR
    from course_utils.evaluation import (
        format_triples,
        generate_triple_sentences,
        parse_triples,
        triple_scores,
    )

    rows = generate_triple_sentences(50, seed=0)
    data = {json.loads(line)["text"] for line in (SAMPLE_DIR / "triples_zh.jsonl").read_text().splitlines()}
    assert len({r["text"] for r in rows}) == 50 and not {r["text"] for r in rows} & data
    assert all(t[0] in r["text"] and t[2].removesuffix("年") in r["text"] for r in rows for t in r["triples"])
    golds = [r["triples"] for r in rows]
    assert triple_scores([parse_triples(format_triples(g)) for g in golds], golds)["f1"] == 1.0
    assert generate_triple_sentences(50, seed=0) == rows and generate_triple_sentences(50, seed=1) != rows
