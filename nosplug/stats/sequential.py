"""The stopping rule of a sequential design: alpha spending with Bonferroni boundaries.

A benchmark adds its units (tuning studies, each with its seeds) in batches and looks at the data
after each batch; a contender stops as soon as its verdict is decided, at the latest at the cap.
Looking repeatedly and stopping when a test passes would inflate the false-positive rate, so each
look may use only a share of alpha, fixed in advance:

* **Spending function** (Lan & DeMets 1983). The cumulative share of alpha spent by the time a
  fraction t = units / cap of the units is in is f(t), increasing from f(0) = 0 to f(1) = 1. The
  default is the O'Brien-Fleming-type function f(t) = 2 (1 - Phi(z / sqrt t)) / alpha with
  z = Phi^-1(1 - alpha / 2): almost nothing early, most of alpha at the cap, so a design that runs to
  its cap loses little power to the looks before. ``"pocock"`` is Lan & DeMets' Pocock-type
  f(t) = ln(1 + (e - 1) t): more early stopping, less power at the cap.
* **Bonferroni boundaries.** Look j tests at its own share a_j = f(t_j) - f(t_{j-1}) of alpha. The
  *sequential p-value* of one side (the contender ahead, or behind) is min over the looks made of
  p_j / a_j, where p_j is that side's one-sided p-value times 2 (both sides share alpha). Under the
  null, P(some p_j <= a_j x) <= sum_j a_j x = x (Bonferroni's inequality over looks and sides), so
  it is a valid p-value however the looks' statistics depend on each other and whatever the test
  (exact Wilcoxon p-values included, discreteness and all), and however the decision to go on was
  taken. Holm's correction over contenders then applies to these p-values unchanged. This is more
  conservative than boundaries from the looks' joint normal distribution (Jennison & Turnbull 2000,
  ch. 7), which would need an approximation the small exact signed-rank test does not meet.
* **Looks that can hardly decide are skipped** (decided in advance from the design, never from the
  data): a look whose share would not let a result with all units but the smallest on one side
  pass is not made, and its share carries to the next look (the spending function is evaluated at
  the looks actually made).

A contender whose result never passes runs to the cap; the verdict is then "no detectable
difference". References: K. K. G. Lan, D. L. DeMets, *Discrete sequential boundaries for clinical
trials*, Biometrika 70, 1983; C. Jennison, B. W. Turnbull, *Group Sequential Methods with
Applications to Clinical Trials*, Chapman & Hall 2000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import scipy.stats

SPENDING: tuple[str, ...] = ("obrien-fleming", "pocock")


def spent(t: float, kind: str = "obrien-fleming", alpha: float = 0.05) -> float:
    """The cumulative share f(t) of alpha spent at information fraction t (0 <= t <= 1; f(1) = 1)."""
    if kind not in SPENDING:
        raise ValueError(f"spending must be one of {SPENDING}, not {kind!r}")
    t = min(max(float(t), 0.0), 1.0)
    if t == 0.0 or t == 1.0:
        return t
    if kind == "pocock":
        return math.log1p((math.e - 1.0) * t)
    z = float(scipy.stats.norm.isf(alpha / 2.0))
    return min(1.0, 2.0 * float(scipy.stats.norm.sf(z / math.sqrt(t))) / alpha)


@dataclass(frozen=True)
class Looks:
    """When a sequential design looks and how much of alpha each look may use.

    ``units[j]`` is the number of units per task in at look j (the last is the cap) and ``shares[j]``
    its share of alpha (the shares sum to 1). One look at the cap with share 1 is a fixed design.
    """

    units: tuple[int, ...]
    shares: tuple[float, ...]
    spending: str = "obrien-fleming"

    @property
    def cap(self) -> int:
        return self.units[-1]

    def describe(self, unit: str = "units") -> str:
        """E.g. "looks at 8 and 12 units (O'Brien-Fleming-type spending: 0.33, 0.67 of alpha)"."""
        if len(self.units) == 1:
            return f"one look at {self.units[0]} {unit}"
        at = ", ".join(str(u) for u in self.units[:-1]) + f" and {self.units[-1]}"
        name = {"obrien-fleming": "O'Brien-Fleming", "pocock": "Pocock"}[self.spending]
        shares = ", ".join(f"{s:.2f}" for s in self.shares)
        return f"looks at {at} {unit} ({name}-type spending: {shares} of alpha)"


def smallest_p(units: int, tasks: int = 1, against: int = 0) -> float:
    """The smallest two-sided signed-rank p-value of ``units * tasks`` paired differences: all on one
    side (``against = 0``), or all but the smallest one (``against = 1``)."""
    return min(1.0, 2.0 * (1 + against) * 0.5 ** (units * tasks))


def plan_looks(
    cap: int,
    batch: int = 0,
    *,
    tasks: int = 1,
    family: int = 1,
    alpha: float = 0.05,
    spending: str = "obrien-fleming",
) -> Looks:
    """The looks of a design with ``cap`` units per task added ``batch`` at a time (0: all at once).

    Candidate looks are at batch, 2 batch, ... units and at the cap. A candidate look is made only if
    a result with all but one of its ``units * tasks`` differences on one side (the other one the
    smallest) could pass there, at the first step of Holm's correction over ``family`` contenders
    (alpha / family): a look that could only decide if every unit agreed is not worth its share of
    alpha. Otherwise it is skipped and its share carries to the next look made. The cap is always a
    look (it may be unable to decide: :mod:`nosplug.stats.design` says so before anything runs).
    """
    if cap < 1:
        raise ValueError(f"the cap must be at least 1 unit, not {cap}")
    if batch < 0:
        raise ValueError(f"batch must be >= 0, not {batch}")
    candidates = list(range(batch, cap, batch)) if batch else []
    units: list[int] = []
    shares: list[float] = []
    before = 0.0
    for k in [*candidates, cap]:
        share = spent(k / cap, spending, alpha) - before
        if k == cap or smallest_p(k, tasks, against=1) / share <= alpha / family:
            units.append(k)
            shares.append(share)
            before += share
    return Looks(tuple(units), tuple(shares), spending)


def sequential_p(p_values: Sequence[float | None], shares: Sequence[float]) -> float:
    """``min(1, min_j p_j / share_j)`` over the looks made so far (``None``: a look not reached).

    ``p_j`` is a two-sided-share p-value of look j (a one-sided p-value times 2). See the module
    docstring for why this is a valid p-value of the whole sequential design.
    """
    best = 1.0
    for p, share in zip(p_values, shares):
        if p is not None and share > 0:
            best = min(best, float(p) / share)
    return best
