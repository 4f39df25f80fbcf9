"""What a benchmark found: per-run results read from its study, statistics and computed verdicts.

Everything here is a pure function of the stored trials, so ``nosplug benchmark`` (at the end of
a run), ``nosplug report`` and a test that recomputes from the storage all print the same
numbers. Time-to-target is read off the stored per-epoch curves: the first evaluation at which
the validation value reaches the target (by default a level the tuned reference reaches on about
three quarters of its seeds, see :func:`default_target`), in training steps and in training
seconds; ``inf`` when never.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nosplug import stats
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
    """One contender on one task."""

    contender: str
    task: str
    tuned: dict[str, float]
    tuning_trials: int
    final_test: stats.MeanStd
    best_test: stats.MeanStd
    steps_to_target: float  # median over seeds (inf: most seeds never reached it)
    seconds_to_target: float
    reached: int  # seeds that reached the target
    train_seconds: float  # median training wall-clock of a run


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

    @property
    def seeds(self) -> int:
        return int(self.raw["evaluation"]["seeds"])

    def budget_line(self) -> str:
        """The fairness terms every table is printed with."""
        tu = self.raw["tuning"]
        unequal = tu["per_contender"]
        budget = f"{tu['trials']} {tu['sampler'].upper()} tuning trials per contender and task" + (
            f" (unequal budgets allowed: {unequal})" if unequal else ""
        )
        return (
            f"{budget} over lr in [{tu['lr'][0]:g}, {tu['lr'][1]:g}] (log) and the warm-up fraction in "
            f"[0, {tu['max_warmup']:g}] (learned optimizers: their warm-up rate; "
            f"extra: {tu['extra'] or 'none'}); "
            f"chosen on the validation split with tuning seeds; then {self.seeds} fresh seeds per task, "
            "quality on the held-out test split"
        )


def collect(study) -> BenchmarkResult:
    """The benchmark's results from its study (finished trials only; crashed ones never count)."""
    from nosplug.study import trials as T
    from nosplug.study.runner import plan_state

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
    tuning: dict[tuple[str, str], list[Any]] = {}
    for t in live:
        a = t.user_attrs
        if t.state not in T.FINISHED or a.get("phase") not in (TUNE, EVAL):
            continue
        if a["phase"] == TUNE:
            tuning.setdefault((a["contender"], a["task"]), []).append(a)
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


def _summarise(res: BenchmarkResult, tuning: Mapping[tuple[str, str], list[Any]]) -> None:
    for entry in res.tasks:
        task, direction = entry["label"], entry["direction"]
        ref_vals = [r.final_val for r in res.runs if r.task == task and r.contender == res.reference]
        ref_vals = [v for v in ref_vals if v is not None]
        given = res.raw["benchmark"]["target"].get(task)
        res.targets[task] = float(given) if given is not None else default_target(ref_vals, direction)
    complete = True
    scores: dict[str, dict[str, list[float]]] = {c: {} for c in res.contenders}
    times: dict[str, dict[str, list[float]]] = {c: {} for c in res.contenders}
    for c in res.contenders:
        for entry in res.tasks:
            task, direction = entry["label"], entry["direction"]
            runs = sorted(
                (r for r in res.runs if r.contender == c and r.task == task), key=lambda r: r.seed_index
            )
            if len(runs) < res.seeds:
                complete = False
            target = res.targets[task]
            steps_to, secs_to = [], []
            for r in runs:
                hit = next((i for i, v in enumerate(r.val) if _reaches(v, target, direction)), None)
                steps_to.append(math.inf if hit is None else float(r.steps[hit]))
                secs_to.append(math.inf if hit is None else float(r.seconds[hit]))
            finals = [r.final_test for r in runs if r.final_test is not None]
            bests = [r.best_test for r in runs if r.best_test is not None]
            hist = tuning.get((c, task), [])
            chosen = _chosen(hist, direction)
            res.summaries[(c, task)] = TaskSummary(
                c, task, chosen, len(hist),
                _mean_std(finals), _mean_std(bests),
                float(np.median(steps_to)) if steps_to else math.inf,
                float(np.median(secs_to)) if secs_to else math.inf,
                sum(math.isfinite(s) for s in secs_to),
                float(np.median([r.train_seconds for r in runs])) if runs else math.nan,
            )  # fmt: skip
            scores[c][task] = finals
            times[c][task] = [max(s, 1e-9) for s in secs_to] or [math.inf]
    if not complete or any(len(v) < res.seeds for per in scores.values() for v in per.values()):
        return  # statistics only on the full design (every contender, task and seed)
    directions = {t["label"]: t["direction"] for t in res.tasks}
    try:
        res.verdicts = stats.compare(
            scores, res.reference, directions, normalisation=res.raw["benchmark"]["normalisation"],
            reference_label=f"tuned {res.reference}",
        )  # fmt: skip
    except ValueError:  # e.g. reference normalisation of a non-positive metric: fall back to min-max
        res.verdicts = stats.compare(scores, res.reference, directions, normalisation="minmax",
                                     reference_label=f"tuned {res.reference}")  # fmt: skip
    res.profiles = stats.performance_profiles(times)


def _chosen(history: list[Mapping[str, Any]], direction: str) -> dict[str, float]:
    from nosplug.benchmark.planner import BenchmarkPlanner

    ordered = sorted(history, key=lambda a: a["key"])
    pairs = [(dict(a.get("params", {})), a.get("fitness")) for a in ordered]
    return BenchmarkPlanner.chosen(pairs, direction) if pairs else {}


def _mean_std(values: list[float]) -> stats.MeanStd:
    if not values:
        return stats.MeanStd(math.nan, math.nan, 0)
    return stats.MeanStd(
        float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else math.nan, len(values)
    )
