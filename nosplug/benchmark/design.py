"""A benchmark's statistical design: tuning studies as units, seeds per study, looks, and its check.

Every contender is tuned on each task by several independent **tuning studies** (each ``tuning.trials``
trials with its own tuning seeds and sampler seed; study k of every contender uses the same ones:
common random numbers). The hyperparameters a study chooses train on ``evaluation.seeds`` fresh
evaluation seeds of their own (shared by every contender's study k, so runs pair). A (task, study)
is the unit of the paired test (:mod:`nosplug.stats`): its result includes that study's tuning luck,
so the verdict's error rate holds whatever the luck. Studies come in batches of ``tuning.batch``;
after each batch the verdicts are recomputed with the sequential rule, and a contender whose verdict
is decided gets no more studies; the others go on up to ``tuning.studies`` (the cap; 0 picks the
fewest for power 0.8 at d = 1). :func:`replay` is that decision, used alike by the planner (what to
run next) and the results (what to print), and it depends only on stored results, so a resume or
several workers plan the same.

A config stored before tuning studies existed (no ``tuning.studies``) is one study whose
``evaluation.seeds`` seeds all come at once: :func:`of` reads it that way, and its verdicts keep the
seeds as units, as they had them, with a note that its tuning luck is not in the error model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nosplug import stats

#: Tuning studies added per look unless the config says otherwise.
DEFAULT_BATCH = 4
#: Fresh evaluation seeds per tuning study unless the config says otherwise.
DEFAULT_SEEDS = 2


@dataclass(frozen=True)
class BenchmarkDesign:
    """What :func:`of` reads from a normalised (or stored) config."""

    studies: int  # the cap: most tuning studies per contender and task
    seeds: int  # fresh evaluation seeds per study
    looks: stats.Looks
    family: int
    tasks: int
    legacy: bool = False  # stored before tuning studies: one study, every seed at once
    power: float = math.nan
    mde: float = math.nan
    needed: int = 0
    adequate: bool = True
    allowed: bool = False  # run although underpowered (benchmark.allow_underpowered)

    @property
    def multi(self) -> bool:
        """Whether trials carry a ``study`` attribute (designs with more than one study)."""
        return self.studies > 1

    def study_of(self, seed_index: int) -> int:
        return seed_index // self.seeds

    def note(self) -> str:
        """What every verdict says when the design was run although underpowered, or was stored
        before designs were checked ("" otherwise)."""
        if self.legacy:
            return "one tuning study, seeds as units: its tuning luck is not in the error model"
        if self.adequate:
            return ""
        power = f"power {self.power:.2f} at d = 1" if self.power > 0 else "it cannot decide"
        need = f"{self.needed} tuning studies" if self.needed else "more tuning studies"
        return f"underpowered design ({power}; needs {need}), run with --allow-underpowered"

    def summary(self) -> str:
        """One line for the tables: the design, its looks, power at d = 1, smallest detectable effect."""
        if self.legacy:
            return f"one tuning study, {self.seeds} seeds per task (stored before designs were checked)"
        looks = self.looks.describe("studies")
        studies = "1 tuning study" if self.studies == 1 else f"{self.studies} tuning studies"
        head = f"up to {studies} × {self.seeds} seeds per contender and task, {looks}"
        if not math.isfinite(self.mde):
            return f"{head}; cannot decide (Holm family of {self.family})"
        return (
            f"{head}; power {self.power:.2f} at d = 1 (Holm family of {self.family}), detects d ≥ "
            f"{self.mde:.2f} with probability 0.8"
        )


def _design(raw: Mapping[str, Any], studies: int) -> stats.Design:
    d = raw.get("design", {})
    return stats.Design(
        family=max(1, len(raw["benchmark"]["contenders"]) - 1),
        studies=studies,
        tasks=len(raw["tasks"]),
        seeds=int(raw["evaluation"]["seeds"]),
        batch=int(raw["tuning"].get("batch", d.get("batch", 0))),
    )


def resolve(raw: dict[str, Any]) -> str:
    """Fill ``raw["design"]`` (the cap, looks, power, smallest detectable effect, studies needed) for a
    normalised config; returns the shortfall line ("" when adequate)."""
    given = int(raw["tuning"]["studies"])
    base = _design(raw, max(given, 2))
    studies = given or stats.studies_needed(base) or stats.design.MOST_STUDIES
    check = stats.check(base.with_studies(studies))
    looks = check.design.looks()
    raw["design"] = {
        "studies": studies,
        "automatic": not given,
        "looks": list(looks.units),
        "shares": list(looks.shares),
        "spending": looks.spending,
        "family": check.design.family,
        "power": round(check.power, 4),
        "mde": round(check.mde, 4) if math.isfinite(check.mde) else None,
        "needed": check.needed,
        "adequate": check.adequate,
    }
    return check.shortfall()


def of(raw: Mapping[str, Any]) -> BenchmarkDesign:
    """The design of a normalised or stored config."""
    n_tasks = len(raw["tasks"])
    family = max(1, len(raw["benchmark"]["contenders"]) - 1)
    d = raw.get("design")
    if d is None:  # stored before designs: one study, every seed at once
        seeds = int(raw["evaluation"]["seeds"])
        return BenchmarkDesign(1, seeds, stats.Looks((1,), (1.0,)), family, n_tasks, legacy=True)
    mde = d.get("mde")
    return BenchmarkDesign(
        studies=int(d["studies"]),
        seeds=int(raw["evaluation"]["seeds"]),
        looks=stats.Looks(tuple(d["looks"]), tuple(d["shares"]), d.get("spending", "obrien-fleming")),
        family=int(d["family"]),
        tasks=n_tasks,
        power=float(d["power"]),
        mde=math.inf if mde is None else float(mde),
        needed=int(d["needed"]),
        adequate=bool(d["adequate"]),
        allowed=bool(raw["benchmark"].get("allow_underpowered", False)),
    )


# ------------------------------------------------------------------------------ scores and replay


def unit_scores(
    design: BenchmarkDesign, contenders: Iterable[str], tasks: Iterable[str],
    finals: Mapping[tuple[str, str, int], float],
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """``scores[contender][task]`` = ``units x seeds`` of final test values: every complete leading
    study (all its seeds finished), in study order. ``finals`` maps (contender, task, seed index)
    to a run's final test value."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for c in contenders:
        out[c] = {}
        for t in tasks:
            rows = []
            for k in range(design.studies):
                row = [finals.get((c, t, k * design.seeds + i)) for i in range(design.seeds)]
                if any(v is None for v in row):
                    break
                rows.append(row)
            out[c][t] = np.asarray(rows, dtype=np.float64).reshape(len(rows), design.seeds)
    return out


@dataclass(frozen=True)
class Replay:
    """The verdicts (``{}`` before the first look is complete), the normalisation used and the studies
    each contender should have by now (``wanted``)."""

    verdicts: dict[str, stats.Verdict]
    normalisation: str
    wanted: dict[str, int]


def compare_units(
    raw: Mapping[str, Any],
    scores: Mapping[str, Mapping[str, np.ndarray]],
    reference: str,
    label: str,
    *,
    looks: stats.Looks | None = None,
    n_resamples: int = 2000,
) -> tuple[dict[str, stats.Verdict], str]:
    """(verdicts of every contender of ``scores`` against ``reference``, the normalisation used),
    on the benchmark's units (``scores`` as :func:`unit_scores` gives them), the way the harness
    decides: the config's normalisation, or min-max when that cannot apply, named in every
    sentence. ``label`` names the reference in the sentences."""
    design = of(raw)
    directions = {t["label"]: t["direction"] for t in raw["tasks"]}
    if design.legacy:  # stored before tuning studies: its seeds are the units, as they were then
        scores = {c: {t: np.asarray(v).reshape(-1) for t, v in per.items()} for c, per in scores.items()}
    kw = {"reference_label": label, "n_resamples": n_resamples, "looks": looks, "note": design.note()}
    normalisation = raw["benchmark"]["normalisation"]
    try:
        verdicts = stats.compare(scores, reference, directions, normalisation=normalisation, **kw)
    except ValueError:  # e.g. 'reference' normalisation of a non-positive metric: min-max, and say so
        normalisation = "minmax"
        text = (
            "scores min-max normalised per task over every run ('reference' normalisation needs a "
            "positive reference mean and, for a metric to minimise, positive values)"
        )
        verdicts = stats.compare(
            scores, reference, directions, normalisation="minmax", normalisation_text=text, **kw
        )
    return verdicts, normalisation


def replay(
    raw: Mapping[str, Any], scores: Mapping[str, Mapping[str, np.ndarray]], *, n_resamples: int = 2000
) -> Replay:
    """The verdicts from the stored results so far, and how many studies each contender needs next.

    ``scores`` as :func:`unit_scores` gives them. The reference needs as many studies as the most any
    contender needs. ``n_resamples`` only sets the intervals' precision: the planner, which needs the
    decisions alone, passes 1 (the decisions do not depend on it).
    """
    design = of(raw)
    reference = raw["benchmark"]["reference"]
    contenders = [c for c in raw["benchmark"]["contenders"] if c != reference]
    tasks = [t["label"] for t in raw["tasks"]]
    first = design.looks.units[0]
    have = {c: min((scores[c][t].shape[0] for t in tasks), default=0) for c in scores}
    if not contenders or any(have[c] < first for c in (reference, *contenders)):
        wanted = {c: first for c in (reference, *contenders)}
        return Replay({}, raw["benchmark"]["normalisation"], wanted)
    looks = design.looks if len(design.looks.units) > 1 else None  # one look: a fixed design
    verdicts, normalisation = compare_units(
        raw, scores, reference, f"tuned {reference}", looks=looks, n_resamples=n_resamples
    )
    wanted: dict[str, int] = {}
    for c, v in verdicts.items():
        if v.stopped == "running":
            done = v.comparison.looks
            nxt = design.looks.units[min(done, len(design.looks.units) - 1)]
            wanted[c] = nxt
        else:
            wanted[c] = have[c]
    wanted[reference] = max([have[reference], *wanted.values()])
    return Replay(verdicts, normalisation, wanted)
