"""Paired testing: the Wilcoxon signed-rank test on paired units, and Holm's correction.

A *unit* is what pairs a contender with the reference: one (task, tuning study) with the same
evaluation seeds on both sides (see :mod:`nosplug.stats.scores`). The paired difference of a unit
is the mean over its seeds of contender minus reference (normalised scores); units are independent
draws, tuning luck included, so the signed-rank test over units is exact for any amount of it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.special
import scipy.stats
from numpy.typing import ArrayLike

from nosplug.stats.scores import as_units

#: Fewest non-zero paired differences for which a two-sided Wilcoxon test can reach p < 0.05:
#: with k differences the smallest exact p is 2 / 2**k, which is 0.0625 for k = 5 and 0.031 for k = 6.
MIN_PAIRS = 6
#: Up to this many differences without ties scipy uses the exact null distribution (scipy >= 1.13).
EXACT_UP_TO = 50


@dataclass(frozen=True)
class PairedTest:
    """Wilcoxon signed-rank test of paired units' differences (normalised scores, contender - reference).

    ``p_better`` and ``p_worse`` are the one-sided p-values (contender ahead, reference ahead);
    ``p_value`` is the two-sided one, ``min(1, 2 min(p_better, p_worse))``, or, in a sequential
    design, the sequential p-value of :mod:`nosplug.stats.sequential` (both sides, every look).
    ``direction`` is +1 when the positive differences carry the larger rank sum (contender ahead),
    -1 when the negative ones do, 0 on a tie; in a sequential design, the side whose sequential
    p-value is the smaller. ``p_corrected`` is the Holm-corrected p-value within the family of
    contenders compared to the same reference (equal to ``p_value`` until corrected). When the test
    is not ``testable`` every p-value is 1.0 and ``reason`` says why. ``n_pairs`` counts units.
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
    p_better: float = 1.0
    p_worse: float = 1.0


def unit_differences(x_per_task: Sequence[ArrayLike], y_per_task: Sequence[ArrayLike]) -> list[np.ndarray]:
    """Per task, the paired units' differences: the mean over a unit's seeds of X - Y.

    Unit ``k`` of X pairs with unit ``k`` of Y on the same task (only the common leading units when the
    counts differ, as when a sequential design stopped one contender early); both must have the same
    seeds per unit. A 1-D input is one seed per unit.
    """
    if len(x_per_task) != len(y_per_task):
        raise ValueError("X and Y need results on the same tasks")
    out = []
    for x, y in zip(x_per_task, y_per_task):
        x, y = as_units(x), as_units(y)
        k = min(x.shape[0], y.shape[0])
        if k and x.shape[1] != y.shape[1]:
            raise ValueError(f"paired units need the same seeds per unit, got {x.shape[1]} and {y.shape[1]}")
        out.append((x[:k] - y[:k]).mean(axis=1))
    return out


def _not_testable(reason: str, n_pairs: int, n_zero: int) -> PairedTest:
    return PairedTest(1.0, 1.0, math.nan, math.nan, math.nan, 0, n_pairs, n_zero, False, reason)


def wilcoxon_paired(
    x_per_task: Sequence[ArrayLike], y_per_task: Sequence[ArrayLike], *, min_pairs: int = MIN_PAIRS
) -> PairedTest:
    """Wilcoxon signed-rank test on the pooled paired units' differences X - Y over (task, unit).

    See :func:`unit_differences` for the pairing (1-D inputs: units are seeds, so this is the test on
    paired (task, seed) differences). Pass normalised scores: the signed-rank test ranks |differences|
    across all tasks together, so on raw values the task with the largest scale would dominate. Zero
    differences are dropped before the test (Wilcoxon's own ``zero_method="wilcox"``); scipy then
    chooses the exact or the normal-approximation p-value. Degenerate cases are answered, not raised:
    no pairs, every difference zero, or fewer than ``min_pairs`` non-zero differences (too few for the
    two-sided test to ever reach p < 0.05) give a not-testable result with p = 1.0 and the reason.
    """
    diffs = unit_differences(x_per_task, y_per_task)
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
        two = scipy.stats.wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
        greater = scipy.stats.wilcoxon(nonzero, zero_method="wilcox", alternative="greater")
        less = scipy.stats.wilcoxon(nonzero, zero_method="wilcox", alternative="less")
    except ValueError as exc:  # scipy's own refusal, reported rather than raised
        return _not_testable(f"scipy.stats.wilcoxon refused: {exc}", n_pairs, n_zero)
    p = float(two.pvalue)
    if not math.isfinite(p):
        return _not_testable("scipy.stats.wilcoxon returned a non-finite p-value", n_pairs, n_zero)
    ranks = scipy.stats.rankdata(np.abs(nonzero))
    r_plus = float(ranks[nonzero > 0].sum())
    r_minus = float(ranks[nonzero < 0].sum())
    direction = int(np.sign(r_plus - r_minus))
    return PairedTest(
        p, p, float(two.statistic), r_plus, r_minus, direction, n_pairs, n_zero, True, "",
        float(greater.pvalue), float(less.pvalue),
    )  # fmt: skip


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


# ------------------------------------------------------------------------ vectorised, for simulation


@functools.cache
def _signed_rank_sf(n: int) -> np.ndarray:
    """``sf[w] = P(W+ >= w)`` under the null for n differences without ties (exact, by counting)."""
    top = n * (n + 1) // 2
    counts = np.zeros(top + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):  # add rank k to every subset counted so far
        counts[k:] = counts[k:] + counts[: top + 1 - k].copy()
    prob = counts / counts.sum()
    return np.cumsum(prob[::-1])[::-1]


def signed_rank_pvalues(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Wilcoxon p-values (greater, less) along the last axis, for many data sets at once.

    For continuous differences (no ties, no zeros), as in simulations: the exact null distribution up
    to :data:`EXACT_UP_TO` differences and the normal approximation (no continuity correction) above,
    which is what ``scipy.stats.wilcoxon`` computes for the same data (tested).
    """
    d = np.asarray(d, dtype=np.float64)
    n = d.shape[-1]
    ranks = np.argsort(np.argsort(np.abs(d), axis=-1), axis=-1) + 1
    r_plus = (ranks * (d > 0)).sum(axis=-1)
    if n <= EXACT_UP_TO:
        sf = _signed_rank_sf(n)
        top = n * (n + 1) // 2
        return sf[r_plus], sf[top - r_plus]
    mean = n * (n + 1) / 4.0
    se = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    z = (r_plus - mean) / se
    return scipy.special.ndtr(-z), scipy.special.ndtr(z)
