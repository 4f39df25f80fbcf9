"""Scores: the data layout, directions, normalisation, mean and standard deviation.

Data layout
-----------
Quality results are a nested mapping ``scores[contender][task] -> values`` in the task's own units
(accuracy, loss, perplexity ...). The values of a contender on a task are either

* a sequence of per-seed values (1-D): each seed is its own *unit*; or
* an array ``units x seeds`` (2-D): a benchmark with several tuning studies gives one row per study,
  holding the runs of that study's chosen hyperparameters on its own evaluation seeds.

A unit is what pairs: unit ``k`` of every contender on a task must come from the same evaluation
seeds (and, for tuning studies, from the same tuning seeds), so paired tests and the paired
bootstrap pair by (task, unit). Every contender must have the same set of tasks; unit counts may
differ between tasks and between contenders (a sequential design stops some early; pairing then
uses the common leading units), but the seeds per unit of a task are the same for every contender.
Values must be finite: the harness maps a diverged run to a finite worst value (chance accuracy, the
initial loss) before it reaches this package, so the choice is visible there. Tasks are always
processed in sorted name order, which fixes the order of random draws.

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
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Direction = Literal["maximize", "minimize"]
Normalisation = Literal["reference", "minmax", "none"]
#: ``scores[contender][task]`` -> per-seed values (1-D) or ``units x seeds`` (2-D); see the module docstring.
Scores = Mapping[str, Mapping[str, ArrayLike]]
#: ``times[contender][task]`` -> time-to-target (seconds or steps; ``inf`` = never), or per-seed times.
Times = Mapping[str, Mapping[str, float | ArrayLike]]

DIRECTIONS: tuple[str, ...] = ("maximize", "minimize")
NORMALISATIONS: tuple[str, ...] = ("reference", "minmax", "none")

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


def as_units(values: ArrayLike) -> np.ndarray:
    """``units x seeds``: a 1-D sequence is one seed per unit, a 2-D array is returned as it is."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim <= 1:
        return a.reshape(-1, 1)
    if a.ndim != 2:
        raise ValueError(f"values must be per seed (1-D) or units x seeds (2-D), got shape {a.shape}")
    return a


def _values(scores: Scores, contender: str, task: str) -> np.ndarray:
    """The values as given (1-D or 2-D), checked: not empty, finite."""
    values = np.asarray(scores[contender][task], dtype=np.float64)
    if values.ndim == 0:
        values = values.reshape(-1)
    elif values.ndim > 2:
        as_units(values)  # raises with the shape
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
    """Mean and sample standard deviation over all runs per (contender, task), in the task's raw units.

    Raw units (no normalisation, no orientation) because this is the table a reader checks against
    the task's own metric. ``std`` uses ddof = 1 (an unbiased variance estimate over seeds) and is NaN
    for a single seed rather than a misleading 0.
    """
    tasks = _tasks(scores)
    out: dict[str, dict[str, MeanStd]] = {}
    for contender in scores:
        out[contender] = {}
        for task in tasks:
            v = _values(scores, contender, task).reshape(-1)
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
            pooled = np.concatenate([raw[c][task].reshape(-1) for c in scores])
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


def describe_normalisation(normalisation: str, reference_label: str | None = None) -> str:
    """The words a verdict uses for its scale, e.g. "scores normalised per task by tuned adam's mean"."""
    if normalisation == "reference":
        anchor = f"{reference_label}'s" if reference_label else "the reference's"
        return f"scores normalised per task by {anchor} mean"
    if normalisation == "minmax":
        return "scores min-max normalised per task over every run"
    if normalisation == "none":
        return "raw scores (negated where lower is better)"
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, not {normalisation!r}")
