"""What a benchmark found: per-run results read from its study, statistics and computed verdicts.

Everything here is a pure function of the stored trials, so ``nosplug benchmark`` (at the end of a
run), ``nosplug report`` and a test that recomputes from the storage all print the same numbers; the
verdicts come from :func:`nosplug.benchmark.design.replay`, the same function that decided, look by
look, which contenders got more tuning studies. Time-to-target is read off the stored per-epoch
curves: the first evaluation at which the validation value reaches the target (by default a level
the tuned reference reaches on about three quarters of its seeds, see :func:`default_target`), in
training steps and in training seconds; ``inf`` when never.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nosplug import stats
from nosplug.benchmark import design as bdesign
from nosplug.benchmark.planner import EVAL, TUNE


@dataclass
class EvalRun:
    contender: str
    task: str
    seed_index: int
    final_test: float | None
    best_test: float | None
    final_val: float | None
    train_seconds: float
    steps: list[int]
    seconds: list[float]
    val: list[float]
    test: list[float]
    diverged: bool


@dataclass
class TaskSummary:
    """One contender on one task (over every tuning study it got and their seeds)."""

    contender: str
    task: str
    tuned: dict[str, float]  # the first tuning study's choice
    tuning_trials: int  # per tuning study
    final_test: stats.MeanStd
    best_test: stats.MeanStd
    steps_to_target: float  # median over seeds (inf: more than half never reached it)
    seconds_to_target: float
    reached: int  # seeds that reached the target
    train_seconds: float  # median training wall-clock of a run
    studies: list[dict[str, float]] = field(default_factory=list)  # every study's choice, in order


@dataclass
class BenchmarkResult:
    name: str
    reference: str
    tasks: list[dict[str, Any]]
    contenders: list[str]
    raw: dict[str, Any]
    runs: list[EvalRun] = field(default_factory=list)
    targets: dict[str, float] = field(default_factory=dict)
    summaries: dict[tuple[str, str], TaskSummary] = field(default_factory=dict)
    verdicts: dict[str, stats.Verdict] = field(default_factory=dict)
    profiles: stats.PerformanceProfiles | None = None
    done: bool = False
    normalisation: str = ""  # the one the verdicts used (min-max when 'reference' cannot apply)

    @property
    def design(self) -> bdesign.BenchmarkDesign:
        return bdesign.of(self.raw)

    @property
    def seeds(self) -> int:
        """Fresh evaluation seeds per tuning study."""
        return int(self.raw["evaluation"]["seeds"])

    def runs_of(self, contender: str, task: str) -> int:
        """How many evaluation runs (seeds) the contender got on the task."""
        return sum(1 for r in self.runs if r.contender == contender and r.task == task)

    def stopped(self, contender: str) -> str:
        """Why the contender got no more tuning studies: "decided (K studies)", "cap (K studies)",
        "running" (and "reference" for the reference)."""
        if contender == self.reference:
            return "reference"
        v = self.verdicts.get(contender)
        if v is None or v.stopped == "running":
            return "running"
        if self.design.legacy:
            return "all seeds"
        k = v.comparison.units_per_task[0] if v.comparison.units_per_task else 0
        studies = f"{k} stud{'y' if k == 1 else 'ies'}"
        return f"decided ({studies})" if v.stopped == "decided" else f"cap ({studies})"

    def budget_line(self) -> str:
        """The fairness terms every table is printed with."""
        tu = self.raw["tuning"]
        unequal = tu["per_contender"]
        d = self.design
        per = "contender and task" if d.legacy else "tuning study"
        budget = f"{tu['trials']} {tu['sampler'].upper()} tuning trials per {per}" + (
            f" (unequal budgets allowed: {unequal})" if unequal else ""
        )
        studies = (
            ""
            if d.legacy
            else f"; up to {d.studies} tuning studies per contender and task, each with its own tuning seeds"
        )
        then = (
            f"then {self.seeds} fresh seeds per task"
            if d.legacy
            else f"each study's choice then trains on {self.seeds} fresh seeds of its own"
        )
        return (
            f"{budget} over lr in [{tu['lr'][0]:g}, {tu['lr'][1]:g}] (log) and the warm-up fraction in "
            f"[0, {tu['max_warmup']:g}] (learned optimizers: their warm-up rate; "
            f"extra: {tu['extra'] or 'none'}){studies}; "
            f"chosen on the validation split with tuning seeds; {then}, "
            "quality on the held-out test split"
        )


def collect(study) -> BenchmarkResult:
    """The benchmark's results from its study (finished trials only; crashed ones never count)."""
    from nosplug.study import trials as T
    from nosplug.study.kinds import plan_state

    raw = study.user_attrs[T.CONFIG_ATTR]
    res = BenchmarkResult(
        study.study_name,
        raw["benchmark"]["reference"],
        list(raw["tasks"]),
        list(raw["benchmark"]["contenders"]),
        raw,
    )
    res.done = plan_state(study).done
    live = T.live_trials(study.get_trials(deepcopy=False)).values()
    tuning: dict[tuple[str, str, int], list[Any]] = {}
    for t in live:
        a = t.user_attrs
        if t.state not in T.FINISHED or a.get("phase") not in (TUNE, EVAL):
            continue
        if a["phase"] == TUNE:
            tuning.setdefault((a["contender"], a["task"], int(a.get("study", 0))), []).append(a)
            continue
        curve = a.get("curve") or {}
        res.runs.append(
            EvalRun(
                a["contender"], a["task"], int(a["seed_index"]), a.get("final_test"), a.get("best_test"),
                a.get("final_val"), float(a.get("train_seconds") or 0.0), curve.get("steps", []),
                curve.get("seconds", []), curve.get("val", []), curve.get("test", []),
                bool(a.get("diverged")),
            )
        )  # fmt: skip
    if not res.runs:
        return res
    _summarise(res, tuning)
    return res


#: Quantile of the tuned reference's final validation values that sets the default target.
TARGET_QUANTILE = 0.25


def default_target(reference_final_vals: list[float], direction: str) -> float:
    """The default time-to-target target: a level the tuned reference reaches on most seeds.

    The reference's lower quartile of final validation values (upper quartile for a metric to
    minimise), so about three quarters of its own runs end at or beyond it. The median, the
    obvious choice, leaves half of the reference's runs short by construction, and since a
    profile takes the median time over seeds the reference itself would "never" reach its own
    target (deviation documented in docs/benchmark.md)."""
    if not reference_final_vals:
        return math.nan
    q = TARGET_QUANTILE if direction == "maximize" else 1 - TARGET_QUANTILE
    return float(np.quantile(reference_final_vals, q))


def _direction(res: BenchmarkResult, task: str) -> str:
    return next(t["direction"] for t in res.tasks if t["label"] == task)


def _reaches(value: float, target: float, direction: str) -> bool:
    return math.isfinite(value) and (value >= target if direction == "maximize" else value <= target)


def _summarise(res: BenchmarkResult, tuning: Mapping[tuple[str, str, int], list[Any]]) -> None:
    for entry in res.tasks:
        task, direction = entry["label"], entry["direction"]
        ref_vals = [r.final_val for r in res.runs if r.task == task and r.contender == res.reference]
        ref_vals = [v for v in ref_vals if v is not None]
        given = res.raw["benchmark"]["target"].get(task)
        res.targets[task] = float(given) if given is not None else default_target(ref_vals, direction)
    times: dict[str, dict[str, list[float]]] = {c: {} for c in res.contenders}
    finals_by_seed: dict[tuple[str, str, int], float] = {}
    for c in res.contenders:
        for entry in res.tasks:
            task, direction = entry["label"], entry["direction"]
            runs = sorted(
                (r for r in res.runs if r.contender == c and r.task == task), key=lambda r: r.seed_index
            )
            target = res.targets[task]
            steps_to, secs_to = [], []
            for r in runs:
                hit = next((i for i, v in enumerate(r.val) if _reaches(v, target, direction)), None)
                steps_to.append(math.inf if hit is None else float(r.steps[hit]))
                secs_to.append(math.inf if hit is None else float(r.seconds[hit]))
                if r.final_test is not None:
                    finals_by_seed[(c, task, r.seed_index)] = float(r.final_test)
            finals = [r.final_test for r in runs if r.final_test is not None]
            bests = [r.best_test for r in runs if r.best_test is not None]
            studies = [
                _chosen(hist, direction)
                for _k, hist in sorted((k, h) for (cc, tt, k), h in tuning.items() if (cc, tt) == (c, task))
            ]
            res.summaries[(c, task)] = TaskSummary(
                c, task, studies[0] if studies else {},
                len(tuning.get((c, task, 0), [])),
                _mean_std(finals), _mean_std(bests),
                stats.median_time(steps_to) if steps_to else math.inf,
                stats.median_time(secs_to) if secs_to else math.inf,
                sum(math.isfinite(s) for s in secs_to),
                float(np.median([r.train_seconds for r in runs])) if runs else math.nan,
                studies,
            )  # fmt: skip
            times[c][task] = [max(s, 1e-9) for s in secs_to] or [math.inf]
    labels = [t["label"] for t in res.tasks]
    design = res.design
    replayed = bdesign.replay(res.raw, bdesign.unit_scores(design, res.contenders, labels, finals_by_seed))
    res.verdicts = replayed.verdicts
    res.normalisation = replayed.normalisation
    if res.verdicts:  # every contender has (at least) its first look's runs
        res.profiles = stats.performance_profiles(times)


def _chosen(history: list[Mapping[str, Any]], direction: str) -> dict[str, float]:
    from nosplug.benchmark.planner import BenchmarkPlanner

    ordered = sorted(history, key=lambda a: int(str(a["key"]).rsplit("/", 1)[1]))
    pairs = [(dict(a.get("params", {})), a.get("fitness")) for a in ordered]
    return BenchmarkPlanner.chosen(pairs, direction) if pairs else {}


def _mean_std(values: list[float]) -> stats.MeanStd:
    if not values:
        return stats.MeanStd(math.nan, math.nan, 0)
    return stats.MeanStd(
        float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan, len(values)
    )
