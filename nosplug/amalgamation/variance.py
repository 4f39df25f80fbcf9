"""Meta-stability and evaluation stability: variance components of a random-intercept model.

The paper (spec §6.1, App. D, not available) reports how much a method's result varies between
independently meta-trained replicates ("meta-stability") and between evaluation runs of one
replicate ("evaluation stability"). For one method on one problem, with replicate r = 1..R and
run k = 1..n_r, the model is

    y_rk = μ + u_r + e_rk,    u_r ~ N(0, σ_meta²),    e_rk ~ N(0, σ_eval²),

fitted here by the **method of moments** (the one-way ANOVA estimator, exact for unbalanced
groups): with group means ȳ_r, N = Σ n_r,

    MSW = Σ_r Σ_k (y_rk − ȳ_r)² / (N − R)                       ->  σ_eval² = MSW
    MSB = Σ_r n_r (ȳ_r − ȳ)² / (R − 1)                          ->  σ_meta² = max(0, (MSB − MSW) / n₀)
    n₀  = (N − Σ n_r² / N) / (R − 1)                            (= n for balanced groups)

(for balanced data this is also the REML estimate whenever MSB ≥ MSW). The mean μ is the
generalised-least-squares mean Σ w_r ȳ_r / Σ w_r with w_r = 1 / (σ_meta² + σ_eval² / n_r), whose
variance is 1 / Σ w_r; its confidence interval uses Student's t with R − 1 degrees of freedom,
because the replicates, not the runs, are the independent units. For balanced groups and
MSB ≥ MSW this is the textbook interval ȳ ± t · sqrt(MSB / (R·n)).

Pure numpy + scipy, so reports can be recomputed from an exported Parquet file anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats


@dataclass(frozen=True)
class VarianceComponents:
    """Estimates for one method on one problem; standard deviations are the square roots."""

    mean: float
    low: float  # confidence interval of the mean
    high: float
    var_meta: float  # σ_meta²: between replicates (NaN with a single replicate)
    var_eval: float  # σ_eval²: between runs of one replicate (NaN when no replicate has two runs)
    replicates: int
    runs: int  # N, all runs
    confidence: float = 0.95
    method: str = "moments"

    @property
    def sd_meta(self) -> float:
        return math.sqrt(self.var_meta) if math.isfinite(self.var_meta) else math.nan

    @property
    def sd_eval(self) -> float:
        return math.sqrt(self.var_eval) if math.isfinite(self.var_eval) else math.nan


def random_intercept(groups: Sequence[Sequence[float]], confidence: float = 0.95) -> VarianceComponents:
    """Method-of-moments fit of the random-intercept model to ``groups[r]`` = the runs of replicate r."""
    arrays = [np.asarray(g, dtype=np.float64).reshape(-1) for g in groups]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError("no observations")
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError("values must be finite (map diverged runs to a finite worst value first)")
    sizes = np.array([a.size for a in arrays], dtype=np.float64)
    means = np.array([a.mean() for a in arrays])
    r, n = len(arrays), float(sizes.sum())
    grand = float(np.concatenate(arrays).mean())
    ssw = float(sum(((a - a.mean()) ** 2).sum() for a in arrays))
    msw = ssw / (n - r) if n > r else math.nan
    tail = 0.5 + confidence / 2
    if r == 1:  # one replicate: only the evaluation spread is estimable
        k = int(n)
        half = scipy.stats.t.ppf(tail, k - 1) * math.sqrt(msw / k) if k > 1 else math.nan
        return VarianceComponents(grand, grand - half, grand + half, math.nan, msw, 1, k, confidence)
    msb = float((sizes * (means - grand) ** 2).sum()) / (r - 1)
    n0 = (n - float((sizes**2).sum()) / n) / (r - 1)
    if math.isnan(msw):  # one run per replicate: the spread of replicate means is all we see
        var_meta, var_eval = math.nan, math.nan
        mean, var_mean = float(means.mean()), msb / r
    else:
        var_eval = msw
        var_meta = max(0.0, (msb - msw) / n0)
        w = 1.0 / (var_meta + var_eval / sizes)
        mean, var_mean = float((w * means).sum() / w.sum()), float(1.0 / w.sum())
    half = scipy.stats.t.ppf(tail, r - 1) * math.sqrt(var_mean)
    return VarianceComponents(mean, mean - half, mean + half, var_meta, var_eval, r, int(n), confidence)
