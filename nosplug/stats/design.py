"""The design of a comparison, checked before anything is trained: can it decide, and how well?

A benchmark's verdicts come from a design: how many contenders share the reference (Holm's family),
how many tasks, how many tuning studies per contender and task at most (the cap), how many fresh
evaluation seeds each study's chosen hyperparameters train on, and how the units come in
(:mod:`nosplug.stats.sequential`). Whether that design can say "better" at all, and how often it
would for a given true effect, follows from the design alone, so it is computed before anything
runs, by simulating the very procedure the verdicts use (:func:`simulate`): the signed-rank test
over paired units at every look, the sequential p-values, Holm's first step (alpha / family: one
contender with an effect while the others equal the reference, the hardest case), and the
P(improvement) estimate that must agree.

The effect ``d`` is in standard deviations of the paired per-seed difference (contender minus
reference on the same seed, same tuning study). The simulated runs are

    y = mu + d sqrt(2) [contender] + tau a_(side, task, study) + rho s_(task, study, seed) + e,

with a, s, e independent standard normal: e the per-run noise, so that without tuning luck the
paired per-seed difference has standard deviation sqrt(2) and d is the effect in its units; a the
*tuning luck*, one offset per tuning study of each side (reference included) in units of the per-run
noise; s a seed effect shared by every run on that seed (it cancels in paired differences, not in
unpaired ones). The design targets are :data:`EFFECT` = 1 and :data:`POWER` = 0.8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nosplug.stats.sequential import SPENDING, Looks, plan_looks, smallest_p
from nosplug.stats.tests import signed_rank_pvalues

#: The effect a design must detect, in standard deviations of the paired per-seed difference.
EFFECT = 1.0
#: The probability with which it must detect it (say "better") for a default design to be adequate.
POWER = 0.8
#: Automatic caps aim this much above :data:`POWER`, so that a simulation's noise (about 0.009 at
#: 2000 repetitions) cannot make a default design fall short when measured again.
MARGIN = 0.02
#: The largest cap the automatic design tries (tuning studies per contender and task).
MOST_STUDIES = 100
#: Repetitions of a design's own simulation (seeded: the same every time).
REPS = 2000


@dataclass(frozen=True)
class Design:
    """What decides a comparison's power, before any result exists.

    ``family``: contenders compared with the same reference (Holm's family); ``tasks``; ``studies``:
    the cap, the most tuning studies (units) per contender and task; ``seeds``: fresh evaluation seeds
    per study; ``batch``: studies added per look (0: all at once, one look).
    """

    family: int
    studies: int
    tasks: int = 1
    seeds: int = 1
    batch: int = 0
    alpha: float = 0.05
    spending: str = "obrien-fleming"

    def __post_init__(self) -> None:
        if self.family < 1 or self.studies < 1 or self.tasks < 1 or self.seeds < 1 or self.batch < 0:
            raise ValueError(f"a design needs family, studies, tasks, seeds >= 1 and batch >= 0: {self}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), not {self.alpha}")
        if self.spending not in SPENDING:
            raise ValueError(f"spending must be one of {SPENDING}, not {self.spending!r}")

    def looks(self) -> Looks:
        return plan_looks(
            self.studies, self.batch, tasks=self.tasks, family=self.family, alpha=self.alpha,
            spending=self.spending,
        )  # fmt: skip

    def with_studies(self, studies: int) -> Design:
        return Design(self.family, studies, self.tasks, self.seeds, self.batch, self.alpha, self.spending)

    def describe(self) -> str:
        """E.g. "1 contender against the reference, 1 task, up to 7 tuning studies × 2 seeds"."""
        who = f"{self.family} contender{'s' if self.family != 1 else ''} against the reference"
        tasks = f"{self.tasks} task{'s' if self.tasks != 1 else ''}"
        studies = f"up to {self.studies} tuning stud{'ies' if self.studies != 1 else 'y'}"
        return f"{who}, {tasks}, {studies} × {self.seeds} seed{'s' if self.seeds != 1 else ''}"


@dataclass(frozen=True)
class Simulation:
    """How often the procedure said better / worse, and how many studies per task it used on average."""

    better: float
    worse: float
    studies: float
    reps: int


def draw(
    design: Design,
    effect: float = 0.0,
    *,
    tau: float = 0.0,
    seed_effect: float = 0.0,
    reps: int = REPS,
    seed: int = 0,
) -> np.ndarray:
    """Simulated runs ``reps x side (contender, reference) x tasks x studies x seeds`` with a planted
    truth (the model of the module docstring), for :func:`decide` or for the real procedure."""
    cap = design.looks().cap
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((reps, 2, design.tasks, cap, design.seeds))
    if tau:
        y += tau * rng.standard_normal((reps, 2, design.tasks, cap, 1))
    if seed_effect:
        y += seed_effect * rng.standard_normal((reps, 1, design.tasks, cap, design.seeds))
    y[:, 0] += effect * math.sqrt(2.0)
    return y


def decide(design: Design, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The verdict procedure on many simulated benchmarks at once (vectorised; see :func:`simulate`).

    Returns per repetition the outcome (+1 better, -1 worse, 0 no detectable difference) and the
    studies per task it used.
    """
    looks = design.looks()
    reps = y.shape[0]
    diff = (y[:, 0] - y[:, 1]).mean(axis=-1)  # reps x tasks x units
    wins = ((y[:, 0] > y[:, 1]) + 0.5 * (y[:, 0] == y[:, 1])).mean(axis=-1)
    q_better = np.ones(reps)
    q_worse = np.ones(reps)
    outcome = np.zeros(reps, dtype=int)
    used = np.full(reps, looks.cap)
    active = np.ones(reps, dtype=bool)
    threshold = design.alpha / design.family
    for k, share in zip(looks.units, looks.shares):
        p_greater, p_less = signed_rank_pvalues(diff[:, :, :k].reshape(reps, -1))
        q_better = np.where(active, np.minimum(q_better, np.minimum(1.0, 2 * p_greater) / share), q_better)
        q_worse = np.where(active, np.minimum(q_worse, np.minimum(1.0, 2 * p_less) / share), q_worse)
        significant = active & (np.minimum(q_better, q_worse) <= threshold)
        ahead = q_better < q_worse
        poi = wins[:, :, :k].mean(axis=(1, 2))  # the paired P(improvement) point estimate
        decided = np.where(significant & ahead & (poi > 0.5), 1, 0)
        decided = np.where(significant & ~ahead & (poi < 0.5), -1, decided)
        stop = decided != 0
        outcome[stop] = decided[stop]
        used[stop] = k
        active &= ~stop
    return outcome, used


def simulate(
    design: Design,
    effect: float = 0.0,
    *,
    tau: float = 0.0,
    seed_effect: float = 0.0,
    reps: int = REPS,
    seed: int = 0,
) -> Simulation:
    """Run the verdict procedure on ``reps`` simulated benchmarks with a planted truth (vectorised).

    One contender with effect ``effect`` (see the module docstring for the model, ``tau`` and
    ``seed_effect``) against the reference, tested at alpha / family at every look of the design: the
    signed-rank test over the pooled paired units' differences of every task, sequential p-values of
    both sides, and the paired P(improvement) estimate that must lie on the same side of 0.5. A
    repetition stops at the first look that decides. Equal, repetition by repetition, to
    :func:`nosplug.stats.verdicts.compare` on the same data (tested).
    """
    outcome, used = decide(
        design, draw(design, effect, tau=tau, seed_effect=seed_effect, reps=reps, seed=seed)
    )
    return Simulation(float((outcome == 1).mean()), float((outcome == -1).mean()), float(used.mean()), reps)


def power(design: Design, effect: float = EFFECT, *, reps: int = REPS, seed: int = 0) -> float:
    """P("better") for a contender with true effect ``effect`` (d units) under ``design``."""
    return simulate(design, effect, reps=reps, seed=seed).better


def decidable(design: Design) -> bool:
    """Whether the cap's look could pass with every paired difference on one side."""
    looks = design.looks()
    return smallest_p(looks.cap, design.tasks) / looks.shares[-1] <= design.alpha / design.family


def studies_needed(design: Design, effect: float = EFFECT, target: float = POWER + MARGIN) -> int:
    """The smallest cap (tuning studies per contender and task) with power >= ``target`` at
    ``effect``, everything else as in ``design``; 0 when none up to :data:`MOST_STUDIES` reaches it."""
    k = 2  # a bootstrap interval needs two units per task
    while k <= MOST_STUDIES and not decidable(design.with_studies(k)):
        k += 1
    while k <= MOST_STUDIES:
        if power(design.with_studies(k), effect) >= target:
            return k
        k += 1
    return 0


def minimum_detectable_effect(design: Design, target: float = POWER) -> float:
    """The smallest effect (d units) the design calls "better" with probability >= ``target``
    (bisection on the seeded simulation); ``inf`` when the design cannot decide at all."""
    if not decidable(design):
        return math.inf
    low, high = 0.0, 1.0
    while power(design, high) < target:
        low, high = high, high * 2
        if high > 64:
            return math.inf
    for _ in range(8):  # to within 1/256 of the bracket
        mid = (low + high) / 2
        low, high = (mid, high) if power(design, mid) < target else (low, mid)
    return high


@dataclass(frozen=True)
class DesignCheck:
    """A design's verdict on itself: ``adequate`` when its power at :data:`EFFECT` is >= :data:`POWER`."""

    design: Design
    decidable: bool
    power: float
    mde: float
    needed: int  # studies per contender and task for POWER (+ MARGIN) at EFFECT; 0: none up to the limit

    @property
    def adequate(self) -> bool:
        return self.decidable and self.power >= POWER

    def summary(self) -> str:
        """One line: the design, its looks, power at d = 1 and its smallest detectable effect."""
        looks = self.design.looks().describe("studies")
        if not self.decidable:
            return f"{self.design.describe()} ({looks}): cannot decide"
        mde = "never" if math.isinf(self.mde) else f"d >= {self.mde:.2f}"
        return (
            f"{self.design.describe()} ({looks}): power {self.power:.2f} at d = {EFFECT:g}, "
            f"detects {mde} with probability {POWER:g}"
        )

    def shortfall(self) -> str:
        """Why the design is not adequate, and what it needs, in one line ("" when adequate)."""
        if self.adequate:
            return ""
        what = (
            f"cannot decide (its smallest possible p-value does not pass {self.design.alpha:g} / "
            f"{self.design.family} with the share of alpha at its last look)"
            if not self.decidable
            else f"has power {self.power:.2f} at d = {EFFECT:g} (needs {POWER:g})"
        )
        need = (
            f"it needs {self.needed} tuning studies × {self.design.seeds} seeds = "
            f"{self.needed * self.design.seeds} seeds per contender and task"
            if self.needed
            else f"no cap up to {MOST_STUDIES} tuning studies reaches it"
        )
        return f"this design ({self.design.describe()}) {what}; {need}"


def check(design: Design) -> DesignCheck:
    """Decidability, power at d = 1, the smallest detectable effect and the studies needed."""
    ok = decidable(design)
    p = power(design) if ok else 0.0
    mde = minimum_detectable_effect(design) if ok else math.inf
    needed = design.studies if ok and p >= POWER + MARGIN else studies_needed(design)
    return DesignCheck(design, ok, p, mde, needed)
