"""One training run of a genome on a task, as an evaluation stage trains it (spec §6-8).

An evaluation's runs share a :class:`RunSetup` (the task bound to its stage, the data, the
preset, the gates and the untrained loss of relative gates). A run trains one model at one
learning rate with GraphOptimizer and the paper's schedule: a sweep run reads training values
only and stops at the run gate; a final run validates after every epoch, reports each value to
its :class:`~nosplug.evaluation.reporter.Reporter` and stops when the floor gate says so.
:func:`train_loop` is the loop every run (and every benchmark run, with any optimizer) uses.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nosplug.evaluation.presets import EvalPreset, for_task, get_preset
from nosplug.evaluation.pruners import FINAL, stage_gates
from nosplug.evaluation.reporter import Reporter
from nosplug.genome.model import Genome
from nosplug.optim.graph_optimizer import GraphOptimizer
from nosplug.optim.schedules import WarmupHoldCosine, cycled_momentum, warmup_hold_cosine_factor
from nosplug.tasks.base import Gates, Task, TaskData

Progress = Callable[[str, dict[str, Any]], None]


def bind_stage(task: Task, preset: EvalPreset) -> Task:
    """The task as an evaluation stage trains it: per-stage task options, and for classification
    tasks the stage's surrogate (the paper trains a wider ConvNet in each stage)."""
    from nosplug.tasks.classification import ClassificationTask, ModelSettings

    if preset.task_options:
        task = task.with_options(**preset.task_options)
    if isinstance(task, ClassificationTask):
        task = task.with_model(
            ModelSettings(preset.surrogate, dict(preset.surrogate_options), preset.augment)
        )
    return task


@dataclass
class RunSetup:
    """What every run of one evaluation shares."""

    task: Task
    data: TaskData
    preset: EvalPreset
    gates: Gates
    untrained_loss: float | None
    device: torch.device

    def units(self, value: float) -> float:
        return self.gates.units(value, self.untrained_loss)

    def autocast(self):
        if self.preset.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def schedule(self, t: int) -> tuple[float, float]:
        p = self.preset
        factor = warmup_hold_cosine_factor(t, p.schedule_steps, p.warmup_steps, p.hold_steps)
        mom = cycled_momentum(t, p.schedule_steps, p.warmup_steps, p.hold_steps) if p.cycle_momentum else 0.9
        return factor, mom


def setup_runs(task: Task, data: TaskData, preset: EvalPreset, seed: int) -> RunSetup:
    """What the runs of one evaluation of ``task`` with ``data`` and ``preset`` share."""
    gates = stage_gates(task, preset)
    device = data.train.x.device
    l0 = _untrained_loss(task, data, preset, seed, device) if gates.scale == "relative" else None
    return RunSetup(task, data, preset, gates, l0, device)


@torch.no_grad()
def _untrained_loss(task: Task, data: TaskData, preset: EvalPreset, seed: int, device) -> float:
    """L0 of relative gates: the fresh model's mean training loss on 4 minibatches of its own
    stream (seeded apart from the training stream, which it leaves untouched)."""
    model = task.model(seed, device)
    batches = task.batches(data, seed + 2, preset.batch_size)
    losses = [float(task.loss(model(x), y)) for x, y in (batches.next() for _ in range(4))]
    return sum(losses) / len(losses)


def _optimizer(model: nn.Module, genome: Genome, lr: float, preset: EvalPreset, seed: int):
    opt = GraphOptimizer(
        model.parameters(), genome, lr=lr, total_steps=preset.schedule_steps, nonfinite="skip", seed=seed
    )
    sched = WarmupHoldCosine(
        opt,
        preset.schedule_steps,
        preset.warmup_steps,
        preset.hold_steps,
        cycle_momentum=preset.cycle_momentum,
    )
    return opt, sched


@dataclass
class Run:
    """One training run: epoch-mean training values, validation values (final runs) and the
    training step each was taken at, steps trained, why it stopped, whether it diverged, and
    (final runs) the best validation value, its fitness."""

    train_curve: list[float] = field(default_factory=list)
    val_curve: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    steps: int = 0
    why: str = "completed"
    diverged: bool = False
    best: float | None = None
    seed_best: list[float | None] = field(default_factory=list)  # per seed, for pooled runs


@dataclass
class SweepResult:
    """Per rate: the best epoch-mean training value, and whether the run diverged (its loss or
    update turned non-finite) before the sweep's end; how the rates were trained, and why not
    side by side when that was chosen but the model cannot be stacked."""

    values: list[float]
    diverged: list[bool]
    mode: str = "sequential"  # how the rates were trained: grouped | vmap | sequential
    note: str = ""  # why a batched form was not used where it was chosen (e.g. vmap cannot run the model)


def train_loop(
    task: Task,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    batches: Any,
    steps: int,
    epoch_steps: int,
    on_epoch: Callable[[int, int, float, float], bool],
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> Run:
    """Train ``model`` for ``steps`` minibatches with any optimizer; after every epoch call
    ``on_epoch(epoch, steps_done, train_value, train_seconds)``, which returns True to stop.

    ``train_value`` is the epoch mean of the task's training metric; ``train_seconds`` the
    wall-clock spent in forward, backward and the optimizer's step so far (evaluation inside
    ``on_epoch`` is not counted). A non-finite loss, or a step an optimizer reports non-finite
    (``last_step_nonfinite``, as GraphOptimizer does), stops the run at once without a value for
    the partial epoch (Keras' TerminateOnNaN).
    """
    run = Run()
    total = torch.zeros((), device=next(model.parameters()).device)
    count = 0
    seconds = 0.0
    for t in range(steps):
        started = time.perf_counter()
        x, y = batches.next()
        with autocast():
            out = model(x)
            loss = task.loss(out, y)
        if not bool(torch.isfinite(loss)):
            run.diverged = True
        else:
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            run.diverged = bool(getattr(opt, "last_step_nonfinite", False))
        if run.diverged:
            run.why = "non-finite loss or update (terminated)"
            break
        run.steps = t + 1
        total += task.batch_train_metric(out.detach(), y, loss.detach()).float()
        count += len(y)
        if (t + 1) % epoch_steps and t + 1 != steps:
            seconds += time.perf_counter() - started
            continue
        value = float(total) / max(1, count)  # synchronises the device: the epoch's work is done
        seconds += time.perf_counter() - started
        total.zero_()
        count = 0
        run.train_curve.append(value)
        if on_epoch(t // epoch_steps, t + 1, value, seconds):
            break
    return run


def train_run(
    s: RunSetup,
    genome: Genome,
    lr: float,
    seed: int,
    *,
    final: bool,
    reporter: Reporter | None = None,
    progress: Progress | None = None,
    report: bool = True,
) -> Run:
    """Train one model at ``lr``: a sweep run (``final=False``: training values only, stopped by
    the run gate) or the final run (validated every epoch, reported to ``reporter``, stopped by
    the floor gate it decides)."""
    p, task = s.preset, s.task
    steps, epoch_steps = (
        (p.final_steps, p.final_epoch_steps) if final else (p.sweep_steps, p.sweep_epoch_steps)
    )
    model = task.model(seed, s.device)
    opt, sched = _optimizer(model, genome, lr, p, seed)
    batches = task.batches(s.data, seed, p.batch_size)
    torch.manual_seed(seed + 1)  # dropout masks
    why: list[str] = []
    val_curve: list[float] = []
    val_steps: list[int] = []

    def on_epoch(epoch: int, done: int, value: float, _seconds: float) -> bool:
        if not final:
            if progress:
                progress("sweep_epoch", {"lrs": [lr], "values": [value], "epoch": epoch})
            return epoch >= p.run_gate_from_epoch and not passes_gate(s, s.gates.run, value)
        val = task.evaluate(model, s.data.val)
        val_curve.append(val)
        val_steps.append(done)
        if reporter is not None and report:
            reporter.report(val, done)
        if progress:
            progress("final_epoch", {"epoch": epoch, "train": value, "val": val})
        if reporter is not None and reporter.gate(FINAL, s.units(value), epoch):
            why.append(f"training {task.train_metric.name} {value:.4g} missed the floor (stopped early)")
            return True
        return False

    run = train_loop(task, model, opt, sched, batches, steps, epoch_steps, on_epoch, s.autocast)
    run.val_curve, run.val_steps = val_curve, val_steps
    if why:
        run.why = why[0]
    return run


def passes_gate(s: RunSetup, threshold: float, value: float) -> bool:
    """Whether a training ``value`` passes ``threshold`` (in the gates' units and direction)."""
    units = s.units(value)
    if not math.isfinite(units):
        return False
    return units >= threshold if s.gates.direction(s.task.train_metric) == "maximize" else units <= threshold


def final_run(
    genome: Genome,
    lr: float,
    task: Task,
    data: TaskData,
    preset: EvalPreset,
    reporter: Reporter,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    setup: RunSetup | None = None,
    report: bool = True,
) -> Run:
    """Train at ``lr`` for the preset's final steps; validation values go to ``reporter`` (unless
    ``report`` is off: several seeds report their mean curve once they are all done)."""
    s = setup or setup_runs(task, data, preset, seed)
    run = train_run(s, genome, lr, seed, final=True, reporter=reporter, progress=progress, report=report)
    run.best = s.task.metric.best(run.val_curve)
    return run


def final_seeds(seed: int, n: int) -> list[int]:
    """The seeds of an evaluation's ``n`` final runs: its own seed first, then derived ones."""
    return [seed] + [(seed * 1_000_003 + j) % 2**31 for j in range(1, n)]


def final_runs(
    genome: Genome,
    lr: float,
    task: Task,
    data: TaskData,
    preset: EvalPreset,
    reporter: Reporter,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    setup: RunSetup | None = None,
) -> Run:
    """The preset's ``seeds`` final runs at ``lr``, pooled: the validation curve is their mean at
    each step (what is reported; a run that stopped early counts as the metric's worst from
    then on), ``best`` the best value of that mean curve (so a trial's value is always what its
    stored curve implies), and ``seed_best`` each run's own best, for the record."""
    s = setup or setup_runs(task, data, preset, seed)
    seeds = final_seeds(seed, max(1, int(preset.seeds)))
    if len(seeds) == 1:
        run = final_run(genome, lr, task, data, preset, reporter, seed, progress, setup=s)
        run.seed_best = [run.best]
        return run
    runs = [
        final_run(genome, lr, task, data, preset, reporter, sd, progress, setup=s, report=False)
        for sd in seeds
    ]
    worst = s.task.metric.worst
    longest = max(runs, key=lambda r: len(r.val_steps))
    pooled = Run(steps=max(r.steps for r in runs), diverged=any(r.diverged for r in runs))
    for i, step in enumerate(longest.val_steps):
        vals = [r.val_curve[i] if len(r.val_curve) > i else worst for r in runs]
        trains = [r.train_curve[i] for r in runs if len(r.train_curve) > i]
        pooled.val_steps.append(step)
        pooled.val_curve.append(sum(vals) / len(vals))
        pooled.train_curve.append(sum(trains) / len(trains))
        reporter.report(pooled.val_curve[-1], step)
    pooled.seed_best = [r.best for r in runs]
    pooled.best = s.task.metric.best(pooled.val_curve)
    stopped = sum(len(r.val_curve) < len(longest.val_curve) for r in runs)
    pooled.why = f"the mean of {len(runs)} seeds" + (
        f"; {stopped} stopped early (counted as {worst:g} from then on)" if stopped else ""
    )
    return pooled


def for_stage(task: Task, preset: EvalPreset | str) -> tuple[Task, EvalPreset]:
    """(the task bound to the stage, the preset it trains with)."""
    p = for_task(get_preset(preset), task)
    return bind_stage(task, p), p
