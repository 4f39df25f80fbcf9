"""Performance profiles on time-to-target (AlgoPerf, Dolan and More)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from nosplug.stats.scores import _tasks

#: ``times[contender][task]`` -> time-to-target (seconds or steps; ``inf`` = never), or per-seed times.
Times = Mapping[str, Mapping[str, float | ArrayLike]]


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


# --------------------------------------------------------------------------------- performance profiles


def median_time(times: ArrayLike) -> float:
    """The median of per-seed times-to-target, ``inf`` only when *more* than half are ``inf``.

    For an odd count this is the plain median. For an even count it is the mean of the two middle
    times, except that when only the upper one is ``inf`` (exactly half the seeds missed the target)
    it is the lower one: the target was reached on half of the seeds, so the contender is not
    "never", and its time is the slowest of the seeds that reached it in time to count.
    """
    v = np.sort(np.asarray(times, dtype=np.float64).reshape(-1))
    n = v.size
    if n == 0:
        raise ValueError("no times")
    if n % 2:
        return float(v[n // 2])
    low, high = float(v[n // 2 - 1]), float(v[n // 2])
    if math.isinf(high) and math.isfinite(low):
        return low
    return (low + high) / 2.0


def performance_profiles(times: Times, *, tau_max: float = 4.0, n_points: int = 301) -> PerformanceProfiles:
    """AlgoPerf-style performance profiles from time-to-target (seconds or steps; ``inf`` = never).

    Per task, a contender's ratio is r = t / (fastest t on the task); ``rho(tau)`` is the fraction of
    tasks with r <= tau, given on ``n_points`` evenly spaced tau from 1 to ``tau_max`` for plotting.
    A task no contender solved gives every contender r = inf (nobody earns credit). A sequence of
    per-seed times is reduced to its median first (AlgoPerf takes the median over its studies; see
    :func:`median_time` for an even count), so a
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
            t[c][task] = median_time(v)
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
