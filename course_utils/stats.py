"""Paired bootstrap intervals: is a before/after change bigger than the noise of a small test set?

A learner who sees accuracy go from 0.42 to 0.50 on 12 items has seen one item change. The paired
bootstrap resamples the *items* (keeping each item's before and after together, since both were
measured on the same item) and reports the middle 95% of the resampled mean differences. A claim
"training helped" is then asserted on the interval (its lower end above zero), not on the point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean difference (after − before) with its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.4g} [{self.low:+.4g}, {self.high:+.4g}] ({self.level:.0%} CI, n={self.n})"


def paired_bootstrap(before, after, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Return the mean of ``after - before`` over paired items with a percentile bootstrap interval.

    ``before`` and ``after`` hold one number per item (a 0/1 correctness, a per-item loss, ...), in
    the same item order. Resampling item indices with replacement keeps the pairing.
    """
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    if b.shape != a.shape or b.ndim != 1:
        raise ValueError(f"need two 1-D arrays of the same length, got {b.shape} and {a.shape}")
    if len(b) < 2:
        raise ValueError("a bootstrap interval needs at least 2 paired items")
    diff = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.mean()), float(low), float(high), len(diff), level)


def compare_paired(a, b, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[Interval, str]:
    """Return the interval of ``mean(a - b)`` over paired units and the ranking it supports.

    ``a`` and ``b`` hold one number per independent unit (a text, a problem), measured on the same
    units in the same order. The verdict is ``"a < b"`` or ``"a > b"`` when the paired bootstrap
    interval excludes zero, else ``"not separated"``: a ranking is claimed only where the units'
    spread cannot explain it. Resample units, not tokens: the tokens of one text are correlated, and
    treating them as independent draws makes an interval too narrow.

    Taught in lesson 03, section «6 · Estimated vs measured, answers, speed».
    """
    ci = paired_bootstrap(b, a, n_boot=n_boot, level=level, seed=seed)
    verdict = "a < b" if ci.high < 0 else "a > b" if ci.low > 0 else "not separated"
    return ci, verdict


def bootstrap_mean(values, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Return the mean of one sample with its percentile bootstrap interval (e.g. an accuracy).

    Taught in lesson 03, section «6 · Estimated vs measured, answers, speed».
    """
    values = np.asarray(values, dtype=np.float64)
    return paired_bootstrap(np.zeros_like(values), values, n_boot=n_boot, level=level, seed=seed)


def paired_ratio_bootstrap(before: tuple, after: tuple, n_boot: int = 2000, level: float = 0.95,
                           seed: int = 0) -> Interval:
    """Interval of the change of a ratio of sums (a micro precision or recall), resampling items.

    ``before`` and ``after`` are (numerators, denominators), one number per item each: for recall,
    correct and gold triples per sentence. A micro average is a ratio of sums, not a mean of
    per-item ratios, so each resample sums its items' counts first; an empty denominator counts as 0.

    Taught in lesson 10, section «11 · After training: precision and recall on the held-out sentences».
    """
    (nb, db), (na, da) = (tuple(np.asarray(x, dtype=np.float64) for x in pair) for pair in (before, after))
    if not (nb.shape == db.shape == na.shape == da.shape) or nb.ndim != 1 or len(nb) < 2:
        raise ValueError("need four 1-D arrays of one length, at least 2 items")

    def ratio(num, den):
        total = den.sum(axis=-1)
        return np.divide(num.sum(axis=-1), total, out=np.zeros_like(total), where=total > 0)

    idx = np.random.default_rng(seed).integers(0, len(nb), size=(n_boot, len(nb)))
    changes = ratio(na[idx], da[idx]) - ratio(nb[idx], db[idx])
    tail = (1 - level) / 2
    low, high = np.quantile(changes, [tail, 1 - tail])
    return Interval(float(ratio(na, da) - ratio(nb, db)), float(low), float(high), len(nb), level)


def check_claim(profile, holds: bool, claim: str, smollm2_only: bool = False) -> bool:
    """Assert a claim about model *quality* (it learned, it improved) where the weights are real.

    A rehearsal runs the GPU recipe with tiny random models: its losses and accuracies test that the
    code runs, not what the lesson claims, so there the claim is printed as not asserted. Claims
    about code (shapes, equal logits, saved files, memory) are asserted everywhere, not through this.
    ``smollm2_only``: only the cpu profile's SmolLM2 runs have shown the claim, so it is printed, not
    asserted, on a profile whose models no run has measured (``profile.quality_measured`` False).
    """
    if profile.rehearsal:
        print(f"[rehearsal: random weights, not asserted] {claim}: {'holds' if holds else 'does not hold'}")
        return holds
    if smollm2_only and not profile.quality_measured:
        print(f"[shown on SmolLM2 only, not yet measured on {profile.target}: printed, not asserted] "
              f"{claim}: {'holds' if holds else 'does not hold'}")
        return holds
    assert holds, f"claim failed: {claim}"
    print(f"[checked] {claim}")
    return holds
