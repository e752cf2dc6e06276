"""Final-answer extraction and accuracy for GSM8K (course_utils.evaluation, GSM8K section)."""

import pytest

from course_utils.evaluation import (
    extract_gsm8k_answer,
    final_answer_share,
    gsm8k_accuracy,
    normalize_number,
)

REFERENCE = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


@pytest.mark.parametrize("text, expected", [
    (REFERENCE, "72"),
    ("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n#### 10", "10"),
    ("The total is 1,000 + 234 = 1,234.\n#### 1,234", "1234"),
    ("#### -3", "-3"),
    ("#### 2.50", "2.5"),
    ("#### 3.0", "3"),
    ("So she pays $18 in total. The answer is $1,234.", "1234"),
    ("The answer is 18.", "18"),
    ("**Final Answer:** 42", "42"),
    ("Answer: -7", "-7"),
    ("Therefore the result is \\boxed{18}.", "18"),
    ("$\\boxed{\\$1,500}$", "1500"),
    ("First 5 + 3 = 8, then 8 * 2 = 16 apples.", "16"),  # last number
    ("The difference is 5-3 = 2.", "2"),  # '-' after a digit is subtraction, not a sign
    ("It costs $18.00.", "18"),
    ("Half of them, 50%, are red", "50"),
])
def test_extract_real_looking_cases(text, expected):
    assert extract_gsm8k_answer(text) == expected


def test_hash_line_wins_over_later_numbers_and_phrases():
    assert extract_gsm8k_answer("The answer is 5.\n#### 7\nI hope this helps with 3 things.") == "7"


def test_last_hash_line_wins():
    assert extract_gsm8k_answer("#### 4\nWait, I made a mistake.\n#### 6") == "6"


def test_no_number_is_none():
    assert extract_gsm8k_answer("I cannot solve this problem.") is None
    assert extract_gsm8k_answer("") is None
    assert extract_gsm8k_answer(None) is None


def test_strict_needs_a_stated_answer():
    assert extract_gsm8k_answer("She had 3 apples and ate 1, so 2 are left.", strict=True) is None
    assert extract_gsm8k_answer("She has to answer 3 questions.", strict=True) is None
    assert extract_gsm8k_answer("so 2 are left.\n#### 2", strict=True) == "2"


def test_normalize_number():
    assert normalize_number("1,234") == "1234"
    assert normalize_number("$12.50") == "12.5"
    assert normalize_number("-0") == "0"
    assert normalize_number("abc") is None


def test_accuracy_and_final_answer_share():
    refs = [REFERENCE, "#### 10", "#### 5"]
    outs = ["... so 72 clips.\n#### 72", "The answer is $10.00.", "I think it is 6 or 7"]
    assert gsm8k_accuracy(outs, refs) == pytest.approx(2 / 3)
    assert final_answer_share(outs) == pytest.approx(2 / 3)
    assert gsm8k_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        gsm8k_accuracy(["#### 1"], [])


def test_unparseable_output_never_matches():
    assert gsm8k_accuracy(["no idea"], ["#### 3"]) == 0.0


def test_completion_nll_is_the_training_loss_and_ignores_padding(chat_id):
    """Each record's score is the loss transformers computes with the prompt masked, batched or not."""
    import torch

    from course_utils import load_model, load_tokenizer
    from course_utils.evaluation import completion_nll
    from course_utils.gsm8k import generate_problems, record_to_prompt_completion

    model, tok = load_model(chat_id), load_tokenizer(chat_id)
    records = [record_to_prompt_completion(r) for r in generate_problems(3, seed=1, split="test")]
    batched = completion_nll(model, tok, records, batch_size=3)
    alone = completion_nll(model, tok, records, batch_size=1)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(alone), rtol=1e-4, atol=1e-4)
    r = records[0]
    n = len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                    return_dict=True)["input_ids"])
    ids = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True,
                                  return_tensors="pt")["input_ids"]
    labels = ids.clone()
    labels[:, :n] = -100
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    assert abs(batched[0] - loss) < 1e-4 and model.training is False


def test_completion_scores_accuracy_and_kept_logits_match_a_direct_pass(chat_id):
    """Next-token accuracy is top-1 == reference over the completion's tokens; kept logits are those positions."""
    import torch

    from course_utils import load_model, load_tokenizer
    from course_utils.evaluation import completion_nll, completion_scores
    from course_utils.gsm8k import generate_problems, record_to_prompt_completion

    model, tok = load_model(chat_id), load_tokenizer(chat_id)
    records = [record_to_prompt_completion(r) for r in generate_problems(3, seed=2, split="test")]
    scores = completion_scores(model, tok, records, batch_size=2, keep_logits=2)
    assert len(scores["logits"]) == 2 and scores["nll"].shape == scores["accuracy"].shape == (3,)
    torch.testing.assert_close(torch.tensor(scores["nll"]), torch.tensor(completion_nll(model, tok, records)),
                               rtol=1e-4, atol=1e-4)
    r = records[1]
    n = len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                    return_dict=True)["input_ids"])
    ids = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True, return_dict=True,
                                  return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, n - 1:-1]
    target = ids[0, n:]
    assert scores["tokens"][1] == len(target)
    assert abs(scores["accuracy"][1] - (logits.argmax(-1) == target).float().mean().item()) < 1e-9
    torch.testing.assert_close(scores["logits"][1], logits, rtol=1e-4, atol=1e-4)
