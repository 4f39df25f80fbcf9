"""Interquartile mean and probability of improvement, with stratified-bootstrap intervals."""

from __future__ import annotations

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
