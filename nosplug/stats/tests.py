"""Paired testing: the Wilcoxon signed-rank test and Holm's correction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

#: Fewest non-zero paired differences for which a two-sided Wilcoxon test can reach p < 0.05:
#: with k differences the smallest exact p is 2 / 2**k, which is 0.0625 for k = 5 and 0.031 for k = 6.
MIN_PAIRS = 6


@dataclass(frozen=True)
class PairedTest:
    """Two-sided Wilcoxon signed-rank test of paired (task, seed) normalised scores, contender - reference.

    ``direction`` is +1 when the positive differences carry the larger rank sum (contender ahead),
    -1 when the negative ones do, 0 on a tie. ``p_corrected`` is the Holm-corrected p-value within
    the family of contenders compared to the same reference (equal to ``p_value`` until corrected).
    When the test is not ``testable`` both p-values are 1.0 and ``reason`` says why.
    """

    p_value: float
    p_corrected: float
    statistic: float
    r_plus: float
    r_minus: float
    direction: int
    n_pairs: int
    n_zero: int
    testable: bool
    reason: str = ""


# ----------------------------------------------------------------------------------- paired testing


def _not_testable(reason: str, n_pairs: int, n_zero: int) -> PairedTest:
    return PairedTest(1.0, 1.0, math.nan, math.nan, math.nan, 0, n_pairs, n_zero, False, reason)


def wilcoxon_paired(
    x_per_task: Sequence[ArrayLike], y_per_task: Sequence[ArrayLike], *, min_pairs: int = MIN_PAIRS
) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on the pooled paired differences X - Y over (task, seed).

    Pairs are (task, seed index): value i of X on a task pairs with value i of Y on the same task (only
    the common indices when the counts differ). Pass normalised scores: the signed-rank test ranks
    |differences| across all tasks together, so on raw values the task with the largest scale would
    dominate. Zero differences are dropped before the test (Wilcoxon's own ``zero_method="wilcox"``);
    scipy then chooses the exact or the normal-approximation p-value. Degenerate cases are answered,
    not raised: no pairs, every difference zero, or fewer than ``min_pairs`` non-zero differences (too
    few for the two-sided test to ever reach p < 0.05) give a not-testable result with p = 1.0 and the
    reason.
    """
    if len(x_per_task) != len(y_per_task):
        raise ValueError("X and Y need results on the same tasks")
    diffs = []
    for x, y in zip(x_per_task, y_per_task):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        k = min(x.size, y.size)
        diffs.append(x[:k] - y[:k])
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    n_pairs = int(d.size)
    n_zero = int(np.sum(d == 0))
    nonzero = d[d != 0]
    if n_pairs == 0:
        return _not_testable("no paired (task, seed) results", 0, 0)
    if nonzero.size == 0:
        return _not_testable(f"all {n_pairs} paired differences are zero", n_pairs, n_zero)
    if nonzero.size < min_pairs:
        return _not_testable(
            f"only {nonzero.size} non-zero paired differences (of {n_pairs}); "
            f"at least {min_pairs} are needed",
            n_pairs,
            n_zero,
        )
    try:
        # zeros dropped here (what zero_method="wilcox" means), so scipy may use the exact distribution
        res = scipy.stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    except ValueError as exc:  # scipy's own refusal, reported rather than raised
        return _not_testable(f"scipy.stats.wilcoxon refused: {exc}", n_pairs, n_zero)
    p = float(res.pvalue)
    if not math.isfinite(p):
        return _not_testable("scipy.stats.wilcoxon returned a non-finite p-value", n_pairs, n_zero)
    ranks = scipy.stats.rankdata(np.abs(nonzero))
    r_plus = float(ranks[nonzero > 0].sum())
    r_minus = float(ranks[nonzero < 0].sum())
    direction = int(np.sign(r_plus - r_minus))
    return PairedTest(p, p, float(res.statistic), r_plus, r_minus, direction, n_pairs, n_zero, True)


def holm_bonferroni(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sort ascending; the i-th smallest (i = 1..k) becomes ``min(1, (k - i + 1) * p_(i))``, then take the
    running maximum so adjusted values keep the order of the raw ones. Rejecting where the adjusted
    value is below alpha controls the family-wise error rate at alpha for any dependence between the
    tests, and is uniformly more powerful than plain Bonferroni.
    """
    p = np.asarray(p_values, dtype=np.float64).reshape(-1)
    k = p.size
    if k == 0:
        return []
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"p-values must be in [0, 1]: {p.tolist()}")
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
    out = np.empty(k)
    out[order] = adjusted_sorted
    return out.tolist()
