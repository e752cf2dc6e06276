import numpy as np
import pytest

from course_utils import PROFILES
from course_utils.stats import bootstrap_mean, check_claim, paired_bootstrap


def test_clear_improvement_excludes_zero():
    rng = np.random.default_rng(1)
    before = rng.normal(2.0, 0.3, size=200)
    after = before - 0.2 + rng.normal(0, 0.05, size=200)  # every item improves by about 0.2
    ci = paired_bootstrap(before, after)
    assert ci.excludes_zero and ci.high < 0
    assert ci.low < -0.2 < ci.high or abs(ci.mean + 0.2) < 0.02


def test_balanced_flips_interval_contains_zero():
    before = np.array([0, 1] * 6)
    after = before.copy()
    after[0], after[1] = 1, 0  # one item gained, one lost: no net change
    ci = paired_bootstrap(before, after)
    assert ci.mean == 0 and ci.low < 0 < ci.high and not ci.excludes_zero


def test_one_item_in_twelve_is_noise():
    before = np.zeros(12)
    after = np.zeros(12)
    after[3] = 1  # "accuracy rose from 0 to 8%"
    ci = paired_bootstrap(before, after)
    assert ci.mean == pytest.approx(1 / 12)
    assert ci.low == 0.0 and not ci.excludes_zero


def test_pairing_matters():
    """Large between-item spread, small consistent gain: paired sees it, unpaired means would not."""
    rng = np.random.default_rng(3)
    before = rng.normal(0, 5, size=100)
    after = before + 0.5
    assert paired_bootstrap(before, after).excludes_zero


def test_bad_inputs_and_mean():
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2, 3], [1, 2])
    with pytest.raises(ValueError):
        paired_bootstrap([1], [2])
    ci = bootstrap_mean([0, 1, 1, 1])
    assert ci.mean == 0.75 and 0 <= ci.low <= 0.75 <= ci.high <= 1 and "CI" in str(ci)


def test_check_claim_asserts_on_real_weights_only(capsys):
    assert check_claim(PROFILES["cpu"], True, "loss went down")  # selfcheck: ok (tests check_claim itself)
    with pytest.raises(AssertionError, match="loss went down"):
        check_claim(PROFILES["cpu"], False, "loss went down")
    assert check_claim(PROFILES["t4-rehearsal"], False, "accuracy rose") is False
    assert "not asserted" in capsys.readouterr().out


def test_check_claim_prints_a_smollm2_only_claim_where_no_run_measured_it(capsys):
    from course_utils.machinery.profiles import with_overrides

    with pytest.raises(AssertionError):  # the cpu profile's SmolLM2 runs measured it: asserted
        check_claim(PROFILES["cpu"], False, "format learned", smollm2_only=True)
    capsys.readouterr()
    t4 = with_overrides(PROFILES["t4-rehearsal"], rehearsal=False)  # the t4 recipe as a real GPU runs it
    assert check_claim(t4, False, "format learned", smollm2_only=True) is False
    assert "not yet measured on t4" in capsys.readouterr().out
    with pytest.raises(AssertionError):  # a claim not marked SmolLM2-only stays asserted on a GPU profile
        check_claim(t4, False, "the loss fell")
    measured = with_overrides(t4, quality_measured=True)  # once a GPU run has measured it: asserted
    with pytest.raises(AssertionError):
        check_claim(measured, False, "format learned", smollm2_only=True)


def test_paired_ratio_bootstrap_is_a_micro_average_change():
    from course_utils.stats import paired_ratio_bootstrap

    gold = [1, 2, 1, 2, 1, 2, 1, 2]
    before = [0, 0, 0, 1, 0, 0, 0, 0]
    after = [1, 2, 1, 1, 1, 2, 0, 2]
    change = paired_ratio_bootstrap((before, gold), (after, gold))
    assert change.mean == (sum(after) - sum(before)) / sum(gold)  # a ratio of sums, not a mean of ratios
    assert change.low > 0 and change.low <= change.mean <= change.high
    same = paired_ratio_bootstrap((before, gold), (before, gold))
    assert same.low == same.high == 0
    empty = paired_ratio_bootstrap(([0, 0], [0, 0]), ([1, 0], [1, 0]))  # nothing predicted before: precision 0
    assert empty.mean == 1


def test_compare_paired_matches_scipy_bootstrap_and_hand_cases():
    from scipy import stats

    from course_utils.stats import compare_paired

    rng = np.random.default_rng(5)
    b = rng.normal(1.0, 0.5, size=40)  # 40 units: a per-text loss
    a = b + 0.1 + rng.normal(0, 0.2, size=40)
    ci, verdict = compare_paired(a, b, n_boot=20000)
    # An independent computation: scipy's paired percentile bootstrap of the mean difference.
    ref = stats.bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, method="percentile",
                          n_resamples=20000, random_state=0).confidence_interval
    se = np.std(a - b, ddof=1) / np.sqrt(len(a))
    assert abs(ci.low - ref.low) < 0.05 * se and abs(ci.high - ref.high) < 0.05 * se
    assert ci.mean == pytest.approx(np.mean(a) - np.mean(b))
    # and close to the paired t interval (normal differences, n = 40)
    t = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert abs(ci.low - t.low) < 0.15 * se and abs(ci.high - t.high) < 0.15 * se
    assert verdict == ("a > b" if t.low > 0 else "not separated")
    # Hand cases: a constant gap is separated with a zero-width interval; equal values are not.
    assert compare_paired([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])[1] == "a < b"
    assert compare_paired([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])[0].low == pytest.approx(0.5)
    assert compare_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])[1] == "not separated"
    # Two units gain, two lose by the same amount: no ranking, whatever the sizes.
    assert compare_paired([1.0, 0.0, 5.0, 3.0], [0.0, 1.0, 4.0, 4.0])[1] == "not separated"


def test_compare_paired_resamples_units_not_tokens():
    """Tokens within a text share the text's offset: pooling them as independent draws would
    separate two formats that the texts do not separate."""
    from course_utils.stats import compare_paired

    rng = np.random.default_rng(7)
    text_effect = rng.normal(0, 1.0, size=6)  # each of 6 texts moves all its 50 tokens together
    token_diff = np.repeat(text_effect, 50) + rng.normal(0, 0.05, size=300)
    per_text = token_diff.reshape(6, 50).mean(axis=1)
    pooled, _ = compare_paired(token_diff, np.zeros(300))
    units, verdict = compare_paired(per_text, np.zeros(6))
    assert units.high - units.low > 5 * (pooled.high - pooled.low)
    assert units.mean == pytest.approx(pooled.mean)
