"""Interquartile mean and probability of improvement, with paired, stratified-bootstrap intervals.

The bootstrap resamples *units* (see :mod:`nosplug.stats.scores`: a seed, or a tuning study with its
seeds) within each task, with replacement, as many as the task has: tasks are the fixed benchmark,
units the random draws. Every interval of a comparison draws its units from ``default_rng(seed)``
with the same sizes, so a contender and the reference resample the same (task, unit) pairs: the
bootstrap keeps the pairing, and with it any effect that units share (a seed's data order, a tuning
study's luck). Percentile intervals from few units are too narrow (a resample cannot vary more than
the sample), so the tails are read further out, by Hesterberg's *expanded percentile* rule
(:func:`expanded_tail`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

from nosplug.stats.scores import (
    Direction,
    Interval,
    Normalisation,
    Scores,
    _check_bootstrap,
    _tasks,
    as_units,
    normalise,
)

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


def expanded_tail(confidence: float, sizes: Sequence[int]) -> float:
    """The tail probability at which a bootstrap percentile interval is read (each side).

    Hesterberg's expanded percentile interval (Hesterberg 2015, "What teachers should know about the
    bootstrap", The American Statistician 69): a percentile interval from n units is too narrow by
    about sqrt((n - 1) / n) and ignores that the spread itself is estimated, so the tail is moved from
    (1 - confidence) / 2 to Phi(-sqrt(n / (n - 1)) t), with t Student's quantile at (1 + confidence) / 2
    on the units' degrees of freedom. Stratified over tasks, n is the smallest unit count of a task and
    the degrees of freedom are the sum over tasks of (units - 1). With a single unit per task there is
    nothing to expand: the plain percentile tail is used.
    """
    tail = (1.0 - confidence) / 2.0
    n = min(sizes) if sizes else 0
    df = sum(int(k) - 1 for k in sizes)
    if n < 2 or df < 1:
        return tail
    z = math.sqrt(n / (n - 1.0)) * float(scipy.stats.t.ppf(1.0 - tail, df))
    return float(scipy.stats.norm.sf(z))


def _percentile(samples: np.ndarray, point: float, confidence: float, sizes: Sequence[int]) -> Interval:
    tail = expanded_tail(confidence, sizes)
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return Interval(float(point), float(low), float(high), confidence)


def iqm_ci(
    per_task: Sequence[ArrayLike], *, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """IQM over the pooled runs of every task with a stratified-bootstrap expanded percentile interval.

    Stratified: each resample draws, for every task independently, as many units as the task has, with
    replacement, from that task's own units (a unit carries all its seeds), so every resample keeps each
    task's weight and only unit-to-unit noise is resampled (the tasks are the fixed benchmark, not a
    sample). The random draws are ``numpy.random.default_rng(seed)`` then, per task in order, one
    ``integers(0, k_t, size=(n_resamples, k_t))`` for the task's k_t units: the same draws for every
    contender with the same unit counts, so contenders resample the same units (paired). The interval
    is read at :func:`expanded_tail`. Memory is O(n_resamples x total runs).
    """
    _check_bootstrap(n_resamples, confidence)
    arrays = [as_units(a) for a in per_task]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("iqm_ci needs at least one task and one seed per task")
    point = iqm(np.concatenate([a.reshape(-1) for a in arrays]))
    rng = np.random.default_rng(seed)
    sizes = [a.shape[0] for a in arrays]
    indices = _stratified_indices(rng, sizes, n_resamples)
    pooled = np.concatenate([a[idx].reshape(n_resamples, -1) for a, idx in zip(arrays, indices)], axis=1)
    pooled.sort(axis=1)
    return _percentile(pooled @ iqm_weights(pooled.shape[1]), point, confidence, sizes)


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


def _paired_wins(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Per common unit, the fraction of its seeds on which X beats Y (ties count one half)."""
    xu, yu = as_units(x), as_units(y)
    k = min(xu.shape[0], yu.shape[0])
    if k == 0:
        raise ValueError("every task needs at least one paired unit of X and Y")
    if xu.shape[1] != yu.shape[1]:
        raise ValueError(f"paired units need the same seeds per unit, got {xu.shape[1]} and {yu.shape[1]}")
    xu, yu = xu[:k], yu[:k]
    return ((xu > yu) + 0.5 * (xu == yu)).mean(axis=1)


def probability_of_improvement(
    x_per_task: Sequence[ArrayLike], y_per_task: Sequence[ArrayLike], *, paired: bool = False
) -> float:
    """P(X > Y): the average over tasks of P(a run of X beats a run of Y on that task).

    Unpaired (``paired=False``, Agarwal et al. 2021): per task the Mann-Whitney U statistic of X
    against Y divided by n*m, the fraction of all (X run, Y run) pairs that X wins, ties counting one
    half. Paired (``paired=True``, for runs that pair by unit and seed, as in a benchmark): per task
    the fraction of paired runs, (unit, seed), that X wins, ties one half: the probability that X
    beats Y on the same seed (and tuning study). The two agree when runs share nothing; when seeds
    share an effect (a seed's data order helps both), the unpaired estimate is drawn towards 0.5 by
    comparisons across seeds and the paired one is not. Values must be oriented so higher is better.
    It says how often X wins, not by how much, so it complements the IQM; 0.5 means no tendency
    either way. Per-task normalisation never changes it.
    """
    if len(x_per_task) != len(y_per_task) or not x_per_task:
        raise ValueError("X and Y need results on the same, non-empty list of tasks")
    per_task = []
    for x, y in zip(x_per_task, y_per_task):
        if paired:
            per_task.append(float(_paired_wins(x, y).mean()))
            continue
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
    paired: bool = False,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """:func:`probability_of_improvement` with a stratified-bootstrap expanded percentile interval.

    Paired: within each task the paired units are resampled (X and Y together, with replacement, as
    many as there are), drawn as in :func:`iqm_ci`: ``default_rng(seed)``, then per task in order
    ``integers(0, k, (n_resamples, k))``. Unpaired: within each task the runs of X and of Y are
    resampled independently, as in Agarwal et al.'s stratified independent bootstrap: per task in
    order ``integers(0, n, (n_resamples, n))`` for X followed by ``integers(0, m, (n_resamples, m))``
    for Y. The interval is read at :func:`expanded_tail` (on the unit counts; unpaired, the smaller of
    n and m per task).
    """
    _check_bootstrap(n_resamples, confidence)
    point = probability_of_improvement(x_per_task, y_per_task, paired=paired)
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    sizes = []
    for x, y in zip(x_per_task, y_per_task):
        if paired:
            wins = _paired_wins(x, y)
            total += wins[rng.integers(0, wins.size, size=(n_resamples, wins.size))].mean(axis=1)
            sizes.append(wins.size)
            continue
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        xb = x[rng.integers(0, x.size, size=(n_resamples, x.size))][:, :, None]
        yb = y[rng.integers(0, y.size, size=(n_resamples, y.size))][:, None, :]
        total += (xb > yb).mean(axis=(1, 2)) + 0.5 * (xb == yb).mean(axis=(1, 2))
        sizes.append(min(x.size, y.size))
    return _percentile(total / len(x_per_task), point, confidence, sizes)
