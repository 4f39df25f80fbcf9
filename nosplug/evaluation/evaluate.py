"""Turn a genome into a fitness on a task (spec §6-8): integrity check, LR sweep, gates, final run.

The stages live in :mod:`~nosplug.evaluation.runs` (one run, the final runs) and
:mod:`~nosplug.evaluation.sweep` (the learning-rate sweep); this module chains them.

Everything here is written against :class:`~nosplug.tasks.Task`: its model, data splits, loss,
training metric (what the gates read) and metric (what fitness is read from, with its
direction). Stages, each gate decided through the evaluation's reporter
(:mod:`nosplug.evaluation.reporter`):

1. integrity check (shifted sphere + decay check); a failure rejects the candidate (``pruned``
   at stage ``integrity``);
2. pre-screen: the preset's pre-screen rates, trained side by side where a batched form pays;
   pruned when their best training value misses ``prescreen_gate`` (``nonfinite`` instead when
   every rate diverged);
3. sweep: the remaining rates likewise; pruned when the best of all rates misses ``sweep_gate``;
   the best rate is chosen. Sweep and selection read the *training* split only;
4. final run at that rate with GraphOptimizer and the paper's schedule. The validation metric
   after each epoch is reported at that training step (in a study: the trial's intermediate
   value, the curve optuna-dashboard plots; fitness is its best value); the epoch-mean training
   value is kept in ``train_curve``. When the training floor gate says stop, or the loss or an
   update turns non-finite (Keras' TerminateOnNaN in the paper), training stops but the candidate
   is *not* rejected: fitness is the best validation value so far. Only a run that diverges before
   its first validation has no fitness (``nonfinite``).

The test split is never read here. An exception is not an outcome of the candidate: it
propagates to the caller (a study worker records it as a crash and retries).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from nosplug.evaluation.presets import EvalPreset
from nosplug.evaluation.pruners import PRESCREEN, SWEEP, pruner_for
from nosplug.evaluation.reporter import GateReporter, Reporter
from nosplug.evaluation.runs import Progress, RunSetup, final_runs, for_stage, setup_runs
from nosplug.evaluation.sweep import sweep
from nosplug.genome.model import Genome
from nosplug.tasks.base import Task, TaskData


@dataclass
class EvalResult:
    """Everything an evaluation learned; stored as trial user attributes by studies."""

    status: str  # "complete" | "pruned" (a gate rejected it) | "nonfinite" (diverged, no fitness)
    fitness: float | None  # best validation value of the task's metric
    stage: str  # last stage reached: integrity | prescreen | sweep | final
    reason: str
    integrity: dict[str, Any] | None = None
    lr_scores: dict[str, float] = field(default_factory=dict)  # best training value per rate
    chosen_lr: float | None = None
    val_curve: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)  # training steps done at each validation
    train_curve: list[float] = field(default_factory=list)
    final_steps_run: int = 0
    flip: bool = False
    duration: float = 0.0
    metric: str = "accuracy"
    untrained_loss: float | None = None  # L0 of relative gates
    seed_fitness: list[float | None] = field(default_factory=list)  # best value of each final run
    sweep_mode: str = ""  # how the sweep trained its rates: grouped | vmap | sequential
    sweep_note: str = ""  # why not side by side where that was chosen (vmap cannot run the model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_genome(
    genome: Genome,
    task: Task,
    data: TaskData,
    preset: EvalPreset | str = "task",
    *,
    reporter: Reporter | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate ``genome`` on ``task`` with ``data`` (its splits, on the device to train on).

    The validation curve goes to ``reporter``, which also decides the gates; without one, a
    :class:`~nosplug.evaluation.reporter.GateReporter` decides them with the stage's pruner, the
    same pruner a study uses, and nothing is logged or stored.
    """
    task, preset = for_stage(task, preset)
    if reporter is None:
        reporter = GateReporter(pruner_for(task, preset))
    start = time.perf_counter()
    result = _evaluate(genome, task, data, preset, reporter, seed, progress)
    result.duration = time.perf_counter() - start
    return result


def _evaluate(
    genome: Genome,
    task: Task,
    data: TaskData,
    preset: EvalPreset,
    reporter: Reporter,
    seed: int,
    progress: Progress | None,
) -> EvalResult:
    integrity = None
    flip = False
    if preset.integrity:
        from nosplug.evaluation.integrity import apply_flip, integrity_check

        check = integrity_check(genome, seed=seed)
        integrity = check.to_dict()
        if progress:
            progress("integrity", integrity)
        if not check.passed:
            return EvalResult(
                "pruned",
                None,
                "integrity",
                f"integrity check: {check.reason}",
                integrity,
                metric=task.metric.name,
            )
        flip = check.flip
        genome = apply_flip(genome, check)
    s = setup_runs(task, data, preset, seed)
    result = EvalResult("pruned", None, "prescreen", "", integrity, flip=flip, metric=task.metric.name,
                        untrained_loss=s.untrained_loss)  # fmt: skip
    pre = sweep(genome, preset.prescreen_lrs, task, data, preset, seed, progress, setup=s)
    result.lr_scores.update({repr(lr): v for lr, v in zip(preset.prescreen_lrs, pre.values)})
    result.sweep_mode, result.sweep_note = pre.mode, pre.note
    best_pre = _best_of(task, pre.values)
    if reporter.gate(PRESCREEN, s.units(best_pre)):
        if all(pre.diverged):
            result.status, result.reason = (
                "nonfinite",
                "pre-screen: every rate diverged (non-finite loss or update)",
            )
        else:
            result.reason = "pre-screen: " + _missed(s, best_pre, s.gates.prescreen)
        return result
    rest = (
        sweep(genome, preset.sweep_lrs, task, data, preset, seed, progress, setup=s)
        if preset.sweep_lrs
        else None
    )
    if rest is not None:
        result.lr_scores.update({repr(lr): v for lr, v in zip(preset.sweep_lrs, rest.values)})
        result.sweep_mode, result.sweep_note = rest.mode, rest.note or result.sweep_note
    all_lrs, values = list(preset.all_lrs), [*pre.values, *(rest.values if rest else [])]
    best_i = min(range(len(values)), key=lambda i: (task.train_metric.key(values[i]), i))
    if reporter.gate(SWEEP, s.units(values[best_i])):
        result.stage = "sweep"
        result.reason = "sweep: " + _missed(s, values[best_i], s.gates.sweep)
        return result
    lr = all_lrs[best_i]
    run = final_runs(genome, lr, task, data, preset, reporter, seed, progress, setup=s)
    result.stage, result.chosen_lr = "final", lr
    result.seed_fitness = list(run.seed_best)
    result.val_curve, result.val_steps, result.train_curve = run.val_curve, run.val_steps, run.train_curve
    result.final_steps_run, result.fitness = run.steps, run.best
    if run.best is None or not math.isfinite(run.best):
        result.status, result.reason = "nonfinite", "final run: diverged before its first validation"
        result.fitness = None
    else:
        result.status, result.reason = "complete", run.why
    return result


def _best_of(task: Task, values: Sequence[float]) -> float:
    best = task.train_metric.best(values)
    return task.train_metric.worst if best is None else best


def _missed(s: RunSetup, value: float, threshold: float) -> str:
    """Why a gate rejected: the value against the threshold, in words a reader can check."""
    name = f"best training {s.task.train_metric.name}"
    if s.gates.scale == "relative":
        l0 = s.untrained_loss or math.nan
        return f"{name} {value:.4g} = {value / l0:.2f} x the untrained {l0:.4g}, above {threshold:g} x"
    sign = "<" if s.gates.direction(s.task.train_metric) == "maximize" else ">"
    return f"{name} {value:.3f} {sign} {threshold:g}"
