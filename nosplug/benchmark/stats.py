"""Statistics of a benchmark: contenders (optimizers) x tasks x seeds, compared to one reference.

Pure numpy + scipy (no torch), so a report can be recomputed from stored results on any machine.
The conventions follow Agarwal et al. 2021 (IQM, stratified bootstrap, probability of improvement),
Schmidt et al. 2021 (tuned baselines, comparisons against a reference) and AlgoPerf (Dahl et al. 2023,
performance profiles on time-to-target). ``docs/benchmark.md`` ("Statistics") explains each quantity.

Data layout
-----------
Quality results are a nested mapping ``scores[contender][task] -> sequence of per-seed values`` in the
task's own units (accuracy, loss, perplexity ...). Value ``i`` of every contender on a task must come
from the same seed ``i``: paired tests pair by seed index within a task. Every contender must have the
same set of tasks; seed counts may differ between tasks (and between contenders; pairing then uses the
common seed indices). Values must be finite: the harness maps a diverged run to a finite worst value
(chance accuracy, the initial loss) before it reaches this module, so the choice is visible there.
Tasks are always processed in sorted name order, which fixes the order of random draws.

Direction
---------
``direction`` is ``"maximize"`` (accuracy) or ``"minimize"`` (loss, perplexity, MSE), either one string
for every task or a mapping task -> direction. Every function that compares or aggregates first turns
values into *normalised scores where higher is better* (:func:`normalise`); all intervals,
probabilities and verdicts are about those scores. :func:`mean_std` alone reports raw units.

Normalisation (per task, before aggregating across tasks, because tasks have different scales)
-----------------------------------------------------------------------------------------------
``"reference"`` (default)
    ratio to the reference contender's mean on the task: ``x / ref_mean`` when maximizing,
    ``ref_mean / x`` when minimizing. The reference scores about 1.0; 1.05 reads "5 % better than the
    reference's mean" (for a loss: the reference's loss is 1.05 times this one). It does not depend on
    which other contenders take part, and one diverged run cannot squash everyone else's scores.
    Needs ``ref_mean > 0`` and, when minimizing, every value ``> 0`` (true for losses, perplexity, MSE
    unless exactly zero); otherwise use ``"minmax"``.
``"minmax"``
    ``(x - worst) / (best - worst)`` with best and worst over every run of every contender on the task,
    so 1 is the best run seen and 0 the worst. Works for any sign, but depends on the set of contenders
    and one outlier compresses the rest. A task where every run is equal scores 0.5 for all.
``"none"``
    raw values, negated for ``"minimize"`` tasks so higher is better. Only meaningful when every task is
    on one scale (say, all accuracies).

Normalisation constants are computed once from the full data; bootstrap resamples reuse them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

Direction = Literal["maximize", "minimize"]
Normalisation = Literal["reference", "minmax", "none"]
Outcome = Literal["better", "worse", "no detectable difference"]
#: ``scores[contender][task]`` -> per-seed values; value i of every contender on a task is seed i.
Scores = Mapping[str, Mapping[str, ArrayLike]]
#: ``times[contender][task]`` -> time-to-target (seconds or steps; ``inf`` = never), or per-seed times.
Times = Mapping[str, Mapping[str, float | ArrayLike]]

DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")
NORMALISATIONS: tuple[str, ...] = ("reference", "minmax", "none")
#: Fewest non-zero paired differences for which a two-sided Wilcoxon test can reach p < 0.05:
#: with k differences the smallest exact p is 2 / 2**k, which is 0.0625 for k = 5 and 0.031 for k = 6.
MIN_PAIRS = 6


# --------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (ddof = 1; NaN for a single seed) over ``n`` seeds, raw units."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval ``[low, high]``."""

    point: float
    low: float
    high: float
    confidence: float = 0.95

    def format(self, digits: int = 3) -> str:
        """``"0.912 [0.905, 0.918]"``."""
        return f"{_num(self.point, digits)} [{_num(self.low, digits)}, {_num(self.high, digits)}]"


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


@dataclass(frozen=True)
class Comparison:
    """Everything a verdict is computed from: one contender against the reference."""

    contender: str
    reference: str
    normalisation: str
    iqm: Interval
    reference_iqm: Interval
    probability_of_improvement: Interval
    test: PairedTest
    n_tasks: int
    seeds_per_task: tuple[int, ...]


@dataclass(frozen=True)
class Verdict:
    """A computed verdict: ``outcome`` is ``better``, ``worse`` or ``no detectable difference``."""

    outcome: Outcome
    sentence: str
    comparison: Comparison
    alpha: float


@dataclass(frozen=True)
class PerformanceProfiles:
    """AlgoPerf-style performance profiles.

    ``ratios[contender][task]`` is time / best time on the task (``inf``: never reached the target,
    or no contender did). ``rho[contender][i]`` is the fraction of tasks with ratio <= ``tau[i]``.
    ``area[contender]`` is the exact integral of rho from 1 to ``tau_max`` divided by
    ``tau_max - 1``: 1.0 means fastest on every task, 0.0 means never within ``tau_max`` of the fastest.
    """

    tau: np.ndarray
    rho: dict[str, np.ndarray]
    ratios: dict[str, dict[str, float]]
    area: dict[str, float]
    tau_max: float
    tasks: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------- validation


def _tasks(scores: Mapping[str, Mapping[str, object]]) -> tuple[str, ...]:
    """The common, sorted task names; every contender must have exactly these."""
    if not scores:
        raise ValueError("no contenders")
    names = list(scores)
    tasks = set(scores[names[0]])
    if not tasks:
        raise ValueError(f"contender {names[0]!r} has no tasks")
    for name in names[1:]:
        if set(scores[name]) != tasks:
            diff = sorted(tasks.symmetric_difference(scores[name]))
            raise ValueError(f"contender {name!r} does not have the same tasks as {names[0]!r}: {diff}")
    return tuple(sorted(tasks))


def _values(scores: Scores, contender: str, task: str) -> np.ndarray:
    values = np.asarray(scores[contender][task], dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError(f"{contender!r} has no results on task {task!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError(
            f"{contender!r} has non-finite results on task {task!r}; "
            "map diverged runs to a finite worst value"
        )
    return values


def _directions(direction: str | Mapping[str, str], tasks: Sequence[str]) -> dict[str, str]:
    if isinstance(direction, str):
        out = dict.fromkeys(tasks, direction)
    else:
        missing = [t for t in tasks if t not in direction]
        if missing:
            raise ValueError(f"no direction given for tasks {missing}")
        out = {t: direction[t] for t in tasks}
    for task, d in out.items():
        if d not in DIRECTIONS:
            raise ValueError(f"direction of task {task!r} must be one of {DIRECTIONS}, not {d!r}")
    return out


def _check_bootstrap(n_resamples: int, confidence: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")


def _num(value: float, digits: int = 3) -> str:
    """Fixed decimals for ordinary magnitudes, significant digits for tiny or huge ones."""
    if value == 0 or (0.01 <= abs(value) < 10_000):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}g}"


# ------------------------------------------------------------------------------ descriptive + scores


def mean_std(scores: Scores) -> dict[str, dict[str, MeanStd]]:
    """Mean and sample standard deviation over seeds per (contender, task), in the task's raw units.

    Raw units (no normalisation, no orientation) because this is the table a reader checks against
    the task's own metric. ``std`` uses ddof = 1 (an unbiased variance estimate over seeds) and is NaN
    for a single seed rather than a misleading 0.
    """
    tasks = _tasks(scores)
    out: dict[str, dict[str, MeanStd]] = {}
    for contender in scores:
        out[contender] = {}
        for task in tasks:
            v = _values(scores, contender, task)
            std = float(np.std(v, ddof=1)) if v.size > 1 else math.nan
            out[contender][task] = MeanStd(float(np.mean(v)), std, int(v.size))
    return out


def normalise(
    scores: Scores,
    direction: Direction | Mapping[str, Direction],
    normalisation: Normalisation = "reference",
    reference: str | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per-task normalised scores where higher is better (see the module docstring for the formulas).

    Normalising per task is what makes aggregating across tasks meaningful: without it a task measured
    in perplexity (hundreds) would drown one measured in accuracy (fractions). Every normalisation is a
    strictly increasing map of the oriented value, so within one task it never changes who beats whom;
    it only changes how tasks weigh against each other. ``reference`` names the contender whose
    per-task mean anchors ``"reference"`` normalisation (required for it, ignored otherwise).
    """
    tasks = _tasks(scores)
    dirs = _directions(direction, tasks)
    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, not {normalisation!r}")
    if normalisation == "reference" and (reference is None or reference not in scores):
        raise ValueError(f"'reference' normalisation needs the reference contender, got {reference!r}")
    raw = {c: {t: _values(scores, c, t) for t in tasks} for c in scores}
    out: dict[str, dict[str, np.ndarray]] = {c: {} for c in scores}
    for task in tasks:
        maximize = dirs[task] == "maximize"
        if normalisation == "none":
            for c in scores:
                out[c][task] = raw[c][task] if maximize else -raw[c][task]
        elif normalisation == "minmax":
            pooled = np.concatenate([raw[c][task] for c in scores])
            lo, hi = float(pooled.min()), float(pooled.max())
            for c in scores:
                if hi == lo:
                    out[c][task] = np.full_like(raw[c][task], 0.5)
                elif maximize:
                    out[c][task] = (raw[c][task] - lo) / (hi - lo)
                else:
                    out[c][task] = (hi - raw[c][task]) / (hi - lo)
        else:
            anchor = float(np.mean(raw[reference][task]))  # type: ignore[index]
            if anchor <= 0:
                raise ValueError(
                    f"'reference' normalisation needs a positive reference mean on task {task!r} "
                    f"(got {anchor}); use normalisation='minmax'"
                )
            for c in scores:
                if maximize:
                    out[c][task] = raw[c][task] / anchor
                else:
                    if np.any(raw[c][task] <= 0):
                        raise ValueError(
                            f"'reference' normalisation of a minimized metric needs positive values; "
                            f"{c!r} has values <= 0 on task {task!r}; use normalisation='minmax'"
                        )
                    out[c][task] = anchor / raw[c][task]
    return out


# ------------------------------------------------------------------------------------------------ IQM


def iqm_weights(n: int) -> np.ndarray:
    """Weights on the sorted sample that give its interquartile mean.

    IQM here is the mean of the empirical quantile function over [0.25, 0.75]: sorted value i owns the
    probability slice [i/n, (i+1)/n] and weighs twice its overlap with [0.25, 0.75]. For n divisible by
    4 this is exactly ``scipy.stats.trim_mean(x, 0.25)`` (drop the lowest and highest quarter); for
    other n it trims fractionally instead of rounding the quarter down, so every n gives the true
    middle half (n = 3: weights 1/6, 2/3, 1/6; n = 5: 0.3 on each of the middle three values
    except 0.4 on the median; n = 1 and 2: the plain mean).
    """
    if n < 1:
        raise ValueError("IQM of an empty sample")
    edges = np.arange(n + 1, dtype=np.float64) / n
    overlap = np.clip(np.minimum(edges[1:], 0.75) - np.maximum(edges[:-1], 0.25), 0.0, None)
    return 2.0 * overlap


def iqm(values: ArrayLike) -> float:
    """Interquartile mean of all values (see :func:`iqm_weights` for the definition on any size).

    The IQM ignores the best and worst quarter of runs, so one lucky or diverged seed cannot decide a
    ranking, yet it uses half the data, which makes it far less noisy than the median.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    return float(x @ iqm_weights(x.size))


def _stratified_indices(rng: np.random.Generator, sizes: Sequence[int], n_resamples: int) -> list[np.ndarray]:
    """Per task (in the given order), ``rng.integers(0, n_t, size=(n_resamples, n_t))``."""
    return [rng.integers(0, n, size=(n_resamples, n)) for n in sizes]


def _percentile(samples: np.ndarray, point: float, confidence: float) -> Interval:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(float(point), float(low), float(high), confidence)


def iqm_ci(
    per_task: Sequence[ArrayLike], *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """IQM over the pooled task x seed scores with a stratified-bootstrap percentile interval.

    Stratified: each resample draws, for every task independently, as many seeds as the task has, with
    replacement, from that task's own seeds, so every resample keeps each task's weight and only the
    seed-to-seed noise is resampled (the tasks are the fixed benchmark, not a sample). The random draws
    are ``numpy.random.default_rng(seed)`` then, per task in order, one
    ``integers(0, n_t, size=(n_resamples, n_t))``. Memory is O(n_resamples x total seeds).
    """
    _check_bootstrap(n_resamples, confidence)
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in per_task]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("iqm_ci needs at least one task and one seed per task")
    point = iqm(np.concatenate(arrays))
    rng = np.random.default_rng(seed)
    indices = _stratified_indices(rng, [a.size for a in arrays], n_resamples)
    pooled = np.concatenate([a[idx] for a, idx in zip(arrays, indices)], axis=1)
    pooled.sort(axis=1)
    return _percentile(pooled @ iqm_weights(pooled.shape[1]), point, confidence)


def aggregate_iqm(
    scores: Scores,
    direction: Direction | Mapping[str, Direction],
    *,
    normalisation: Normalisation = "reference",
    reference: str | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """IQM of each contender's normalised scores across tasks x seeds, with stratified-bootstrap CI.

    Every contender's interval uses a fresh ``default_rng(seed)`` (see :func:`iqm_ci`), so a
    contender's interval does not depend on which other contenders are listed or in what order.
    Tasks with more seeds weigh more in the pooled IQM (one weight per run).
    """
    tasks = _tasks(scores)
    norm = normalise(scores, direction, normalisation, reference)
    return {
        c: iqm_ci([norm[c][t] for t in tasks], n_resamples=n_resamples, confidence=confidence, seed=seed)
        for c in scores
    }


# ------------------------------------------------------------------------- probability of improvement


def probability_of_improvement(x_per_task: Sequence[ArrayLike], y_per_task: Sequence[ArrayLike]) -> float:
    """P(X > Y): the average over tasks of P(a run of X beats a run of Y on that task).

    Per task this is the Mann-Whitney U statistic of X against Y divided by n*m: the fraction of all
    (X run, Y run) pairs that X wins, ties counting one half (Agarwal et al. 2021). Values must be
    oriented so higher is better. It says how often X wins, not by how much, so it complements the IQM;
    0.5 means no tendency either way. Per-task normalisation never changes it.
    """
    if len(x_per_task) != len(y_per_task) or not x_per_task:
        raise ValueError("X and Y need results on the same, non-empty list of tasks")
    per_task = []
    for x, y in zip(x_per_task, y_per_task):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if x.size == 0 or y.size == 0:
            raise ValueError("every task needs at least one run of X and of Y")
        u = scipy.stats.mannwhitneyu(x, y, alternative="two-sided").statistic
        per_task.append(float(u) / (x.size * y.size))
    return float(np.mean(per_task))


def probability_of_improvement_ci(
    x_per_task: Sequence[ArrayLike],
    y_per_task: Sequence[ArrayLike],
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` with a stratified-bootstrap percentile interval.

    Within each task the runs of X and of Y are resampled independently (each with replacement, as many
    as it has), as in Agarwal et al.'s stratified independent bootstrap. Random draws:
    ``default_rng(seed)``, then per task in order ``integers(0, n, (n_resamples, n))`` for X followed by
    ``integers(0, m, (n_resamples, m))`` for Y.
    """
    _check_bootstrap(n_resamples, confidence)
    point = probability_of_improvement(x_per_task, y_per_task)
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for x, y in zip(x_per_task, y_per_task):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        xb = x[rng.integers(0, x.size, size=(n_resamples, x.size))][:, :, None]
        yb = y[rng.integers(0, y.size, size=(n_resamples, y.size))][:, None, :]
        total += (xb > yb).mean(axis=(1, 2)) + 0.5 * (xb == yb).mean(axis=(1, 2))
    return _percentile(total / len(x_per_task), point, confidence)


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


# -------------------------------------------------------------------------------------------- verdicts


def verdict(comparison: Comparison, *, alpha: float = 0.05, reference_label: str | None = None) -> Verdict:
    """The verdict on one contender, computed from its comparison with the reference.

    Decision rule (both conditions, so neither a tiny consistent edge nor a noisy large one suffices):

    * ``better`` iff the Holm-corrected Wilcoxon p-value is < ``alpha``, the signed ranks favour the
      contender, and the lower end of the P(improvement) interval is > 0.5;
    * ``worse`` iff the corrected p-value is < ``alpha``, the signed ranks favour the reference, and
      the upper end of the P(improvement) interval is < 0.5;
    * otherwise ``no detectable difference`` (including when the test is not testable).

    The IQM intervals are reported but do not decide: they are per-contender intervals, and two
    overlapping intervals do not mean "no difference". The sentence states every number used, e.g.
    "better than tuned adam: IQM 0.912 [0.905, 0.918] vs 0.897 [0.889, 0.904], P(improvement)
    0.81 [0.70, 0.90], Wilcoxon p = 0.004 (Holm-corrected), 3 tasks × 5 seeds".
    """
    c = comparison
    t = c.test
    poi = c.probability_of_improvement
    significant = t.testable and t.p_corrected < alpha
    if significant and t.direction > 0 and poi.low > 0.5:
        outcome: Outcome = "better"
        lead = "better than"
    elif significant and t.direction < 0 and poi.high < 0.5:
        outcome = "worse"
        lead = "worse than"
    else:
        outcome = "no detectable difference"
        lead = "no detectable difference from"
    label = reference_label or c.reference
    if t.testable:
        p_text = "p < 0.001" if t.p_corrected < 0.001 else f"p = {t.p_corrected:.3f}"
        test_text = f"Wilcoxon {p_text} (Holm-corrected)"
    else:
        test_text = f"Wilcoxon not testable ({t.reason})"
    seeds = set(c.seeds_per_task)
    tasks = f"{c.n_tasks} task{'s' if c.n_tasks != 1 else ''}"
    if len(seeds) == 1:
        n = seeds.pop()
        size = f"{tasks} × {n} seed{'s' if n != 1 else ''}"
    else:
        size = f"{tasks}, {t.n_pairs} paired runs"
    sentence = (
        f"{lead} {label}: IQM {c.iqm.format(3)} vs {c.reference_iqm.format(3)}, "
        f"P(improvement) {poi.format(2)}, {test_text}, {size}"
    )
    return Verdict(outcome, sentence, c, alpha)


def compare(
    scores: Scores,
    reference: str,
    direction: Direction | Mapping[str, Direction],
    *,
    normalisation: Normalisation = "reference",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
    min_pairs: int = MIN_PAIRS,
    reference_label: str | None = None,
) -> dict[str, Verdict]:
    """Compare every contender with ``reference``: IQM intervals, P(improvement), Wilcoxon, verdicts.

    The Holm correction runs over all contenders compared to this reference (the reference itself is
    not compared); contenders whose test is not testable stay in the family with p = 1.0, which keeps
    the correction conservative rather than letting the data decide the family's size. All bootstrap
    intervals use ``seed`` (see :func:`iqm_ci` and :func:`probability_of_improvement_ci`), so a report
    recomputed from the same results is identical. Returns one :class:`Verdict` per contender, in the
    order of ``scores``.
    """
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the contenders {list(scores)}")
    tasks = _tasks(scores)
    norm = normalise(scores, direction, normalisation, reference)
    intervals = {
        c: iqm_ci([norm[c][t] for t in tasks], n_resamples=n_resamples, confidence=confidence, seed=seed)
        for c in scores
    }
    ref_tasks = [norm[reference][t] for t in tasks]
    contenders = [c for c in scores if c != reference]
    tests = {
        c: wilcoxon_paired([norm[c][t] for t in tasks], ref_tasks, min_pairs=min_pairs) for c in contenders
    }
    corrected = holm_bonferroni([tests[c].p_value for c in contenders])
    out: dict[str, Verdict] = {}
    for c, p_corr in zip(contenders, corrected):
        test = replace(tests[c], p_corrected=p_corr if tests[c].testable else 1.0)
        x_tasks = [norm[c][t] for t in tasks]
        comparison = Comparison(
            contender=c,
            reference=reference,
            normalisation=normalisation,
            iqm=intervals[c],
            reference_iqm=intervals[reference],
            probability_of_improvement=probability_of_improvement_ci(
                x_tasks, ref_tasks, n_resamples=n_resamples, confidence=confidence, seed=seed
            ),
            test=test,
            n_tasks=len(tasks),
            seeds_per_task=tuple(min(norm[c][t].size, norm[reference][t].size) for t in tasks),
        )
        out[c] = verdict(comparison, alpha=alpha, reference_label=reference_label)
    return out


# --------------------------------------------------------------------------------- performance profiles


def performance_profiles(times: Times, *, tau_max: float = 4.0, n_points: int = 301) -> PerformanceProfiles:
    """AlgoPerf-style performance profiles from time-to-target (seconds or steps; ``inf`` = never).

    Per task, a contender's ratio is r = t / (fastest t on the task); ``rho(tau)`` is the fraction of
    tasks with r <= tau, given on ``n_points`` evenly spaced tau from 1 to ``tau_max`` for plotting.
    A task no contender solved gives every contender r = inf (nobody earns credit). A sequence of
    per-seed times is reduced to its median first (AlgoPerf takes the median over its studies), so a
    contender that misses the target on more than half of the seeds counts as never reaching it.
    ``area`` is the integral of rho from 1 to ``tau_max`` divided by ``tau_max - 1``, computed exactly
    (rho is a step function: each task contributes ``max(0, tau_max - r) / (tau_max - 1)``), so it does
    not depend on the grid; AlgoPerf's score uses ``tau_max = 4``. Times must be > 0 (or ``inf``).
    """
    if not tau_max > 1.0:
        raise ValueError(f"tau_max must be > 1, not {tau_max}")
    if n_points < 2:
        raise ValueError("n_points must be at least 2")
    tasks = _tasks(times)
    t: dict[str, dict[str, float]] = {}
    for c in times:
        t[c] = {}
        for task in tasks:
            v = np.asarray(times[c][task], dtype=np.float64).reshape(-1)
            if v.size == 0 or np.any(np.isnan(v)) or np.any(v <= 0):
                raise ValueError(f"time-to-target of {c!r} on {task!r} must be > 0 or inf, got {v.tolist()}")
            t[c][task] = float(np.median(v))
    ratios: dict[str, dict[str, float]] = {c: {} for c in times}
    for task in tasks:
        best = min(t[c][task] for c in times)
        for c in times:
            ratios[c][task] = t[c][task] / best if math.isfinite(best) else math.inf
    tau = np.linspace(1.0, tau_max, n_points)
    rho = {c: np.array([np.mean([ratios[c][k] <= x for k in tasks]) for x in tau]) for c in times}
    area = {
        c: float(np.mean([max(0.0, tau_max - ratios[c][k]) for k in tasks]) / (tau_max - 1.0)) for c in times
    }
    return PerformanceProfiles(tau, rho, ratios, area, float(tau_max), tasks)
