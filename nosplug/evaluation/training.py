"""Turn a genome into a fitness on a task (spec §6-8): integrity check, LR sweep, gates, final run.

Everything here is written against :class:`~nosplug.tasks.Task`: its model, data splits, loss,
training metric (what the gates read) and metric (what fitness is read from, with its
direction). Stages, each gate decided by the trial's pruner (:mod:`nosplug.evaluation.pruners`):

1. integrity check (shifted sphere + decay check); a failure rejects the candidate (``pruned``
   at stage ``integrity``);
2. pre-screen: the preset's pre-screen rates, trained side by side where a batched form pays;
   pruned when their best training value misses ``prescreen_gate`` (``nonfinite`` instead when
   every rate diverged);
3. sweep: the remaining rates likewise; pruned when the best of all rates misses ``sweep_gate``;
   the best rate is chosen. Sweep and selection read the *training* split only;
4. final run at that rate with GraphOptimizer and the paper's schedule. The validation metric
   after each epoch is reported as the trial's intermediate value at that training step (the
   curve optuna-dashboard plots; fitness is its best value); the epoch-mean training value is
   kept in ``train_curve``. When the training floor gate says stop, or the loss or an update
   turns non-finite (Keras' TerminateOnNaN in the paper), training stops but the candidate is
   *not* rejected: fitness is the best validation value so far. Only a run that diverges before
   its first validation has no fitness (``nonfinite``).

The test split is never read here. An exception is not an outcome of the candidate: it
propagates to the caller (a study worker records it as a crash and retries).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from nosplug.evaluation.batched import BatchedProgramOptimizer
from nosplug.evaluation.presets import EvalPreset, for_task, get_preset
from nosplug.evaluation.pruners import FINAL, PRESCREEN, SWEEP, gate, pruner_for, stage_gates
from nosplug.genome.model import Genome
from nosplug.optim.graph_optimizer import GraphOptimizer
from nosplug.optim.program import compile_genome
from nosplug.optim.schedules import WarmupHoldCosine, cycled_momentum, warmup_hold_cosine_factor
from nosplug.tasks.base import Gates, Task, TaskData

Progress = Callable[[str, dict[str, Any]], None]


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------- the stage
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
class _Setup:
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


def _setup(task: Task, data: TaskData, preset: EvalPreset, seed: int) -> _Setup:
    gates = stage_gates(task, preset)
    device = data.train.x.device
    l0 = _untrained_loss(task, data, preset, seed, device) if gates.scale == "relative" else None
    return _Setup(task, data, preset, gates, l0, device)


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


# ----------------------------------------------------------------------------------- one run
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


def _run(
    s: _Setup,
    genome: Genome,
    lr: float,
    seed: int,
    *,
    final: bool,
    trial: optuna.Trial | None = None,
    progress: Progress | None = None,
    report: bool = True,
) -> Run:
    """Train one model at ``lr``: a sweep run (``final=False``: training values only, stopped by
    the run gate) or the final run (validated every epoch, reported to ``trial``, stopped by the
    floor gate through the pruner)."""
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
            return epoch >= p.run_gate_from_epoch and not _passes(s, s.gates.run, value)
        val = task.evaluate(model, s.data.val)
        val_curve.append(val)
        val_steps.append(done)
        if trial is not None and report:
            trial.report(val, done)
        if progress:
            progress("final_epoch", {"epoch": epoch, "train": value, "val": val})
        if trial is not None and gate(trial, FINAL, s.units(value), epoch):
            why.append(f"training {task.train_metric.name} {value:.4g} missed the floor (stopped early)")
            return True
        return False

    run = train_loop(task, model, opt, sched, batches, steps, epoch_steps, on_epoch, s.autocast)
    run.val_curve, run.val_steps = val_curve, val_steps
    if why:
        run.why = why[0]
    return run


def _passes(s: _Setup, threshold: float, value: float) -> bool:
    units = s.units(value)
    if not math.isfinite(units):
        return False
    return units >= threshold if s.gates.direction(s.task.train_metric) == "maximize" else units <= threshold


# ----------------------------------------------------------------------------------- sweep
#: Widest ConvNet for which the grouped sweep beats separate runs on CPU (benchmarks/).
BATCHED_MAX_BASE = 8


@dataclass
class SweepResult:
    """Per rate: the best epoch-mean training value, and whether the run diverged (its loss or
    update turned non-finite) before the sweep's end."""

    values: list[float]
    diverged: list[bool]


#: On the CPU, ``vmap`` beats separate runs only for small models (measured with one thread,
#: benchmarks/bench_evaluation.py (d) and docs/performance.md: a 4.9 k-parameter MLP 0.47x, 18 k
#: 0.77x, 69 k 2.45x, the 117 k charlm Transformer 1.18x, the 419 k autoencoder 2.4x the time of
#: sequential runs): stacking pays where per-op overhead dominates, not where the arithmetic does.
VMAP_CPU_MAX_PARAMS = 20_000


def sweep_mode(task: Task, preset: EvalPreset, device: torch.device) -> str:
    """Which way the sweep trains its rates: ``grouped`` (a task's grouped model), ``vmap``
    (parameters stacked, ``torch.func``), or ``sequential``.

    ``auto`` batches on accelerators whenever the task can be batched. On CPU it batches where
    that measured faster (benchmarks/bench_evaluation.py): grouped ConvNets up to base 8 and
    grouped MLPs, ``vmap`` for models of at most :data:`VMAP_CPU_MAX_PARAMS` parameters; separate
    runs otherwise (wider grouped convolutions and ``vmap`` of larger models do not beat one
    model at a time on 2 CPU cores).
    """
    from nosplug.tasks.classification import ClassificationTask

    mode = preset.sweep_mode
    if mode == "sequential":
        return "sequential"
    grouped = isinstance(task, ClassificationTask) and task.settings.surrogate in ("convnet", "mlp")
    if mode == "batched" or device.type != "cpu":
        return "grouped" if grouped else ("vmap" if _vmap_size(task) is not None else "sequential")
    small = grouped and (
        task.settings.surrogate == "mlp" or int(task.settings.options.get("base", 32)) <= BATCHED_MAX_BASE
    )
    if small:
        return "grouped"
    size = None if grouped else _vmap_size(task)
    return "vmap" if size is not None and size <= VMAP_CPU_MAX_PARAMS else "sequential"


def _vmap_size(task: Task) -> int | None:
    """The model's parameter count, or None when it cannot be stacked (BatchNorm updates its
    running statistics in place)."""
    model = task.build_model(0)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return None
    return sum(p.numel() for p in model.parameters())


def sweep(
    genome: Genome,
    lrs: Sequence[float],
    task: Task,
    data: TaskData,
    preset: EvalPreset,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    mode: str | None = None,
    setup: _Setup | None = None,
) -> SweepResult:
    """Train each rate of ``lrs`` for the preset's sweep steps; every path gives the same result
    per rate as a single run of that rate (tested)."""
    s = setup or _setup(task, data, preset, seed)
    mode = mode or sweep_mode(s.task, preset, s.device)
    if mode == "sequential" or len(lrs) < 2:
        runs = [_run(s, genome, lr, seed, final=False, progress=progress) for lr in lrs]
        return SweepResult([_best_train(s, r) for r in runs], [r.diverged for r in runs])
    return _sweep_batched(s, genome, lrs, seed, progress, mode)


def _best_train(s: _Setup, run: Run) -> float:
    best = s.task.train_metric.best(run.train_curve)
    return s.task.train_metric.worst if best is None else best


class _Copies:
    """K copies of one freshly initialised model: per-copy losses and training-metric sums."""

    def __init__(self, s: _Setup, seed: int, k: int, mode: str) -> None:
        self.task, self.k = s.task, k
        model = s.task.model(seed, s.device)
        if mode == "grouped":
            self.grouped = s.task.grouped_model(model, k)
            if self.grouped is None:
                raise ValueError(f"task {s.task.name} has no grouped model")
            self.params = [q for q in self.grouped.parameters() if q.requires_grad]
            return
        from torch.func import functional_call, vmap

        self.grouped = None
        self.stacked = {n: q.detach().expand(k, *q.shape).clone().requires_grad_(q.requires_grad)
                        for n, q in model.named_parameters()}  # fmt: skip
        self.buffers = {n: b.expand(k, *b.shape).clone() for n, b in model.named_buffers()}
        self.params = [q for q in self.stacked.values() if q.requires_grad]

        def one(params, buffers, x, y):
            out = functional_call(model, (params, buffers), (x,))
            loss = self.task.loss(out, y)
            return loss, self.task.batch_train_metric(out, y, loss).float()

        self._vmapped = vmap(one, in_dims=(0, 0, None, None), randomness="different")

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.grouped is not None:
            out = self.grouped(x)  # (batch, K, ...)
            losses = torch.stack([self.task.loss(out[:, i], y) for i in range(self.k)])
            sums = torch.stack(
                [
                    self.task.batch_train_metric(out[:, i].detach(), y, losses[i].detach()).float()
                    for i in range(self.k)
                ]
            )
            return losses, sums
        losses, sums = self._vmapped(self.stacked, self.buffers, x, y)
        return losses, sums.detach()


def _sweep_batched(
    s: _Setup, genome: Genome, lrs: Sequence[float], seed: int, progress, mode: str
) -> SweepResult:
    p, k = s.preset, len(lrs)
    copies = _Copies(s, seed, k, mode)
    gen = torch.Generator().manual_seed(seed)
    opt = BatchedProgramOptimizer(copies.params, compile_genome(genome), lrs, p.schedule_steps, gen)
    batches = s.task.batches(s.data, seed, p.batch_size)
    best: list[float | None] = [None] * k
    stopped, diverged = [False] * k, [False] * k
    totals = torch.zeros(k, device=s.device)
    count = 0
    torch.manual_seed(seed + 1)  # dropout masks
    for t in range(p.sweep_steps):
        x, y = batches.next()
        with s.autocast():
            losses, sums = copies.forward(x, y)
        bad = ~torch.isfinite(losses) & opt.alive
        for i in torch.nonzero(bad).flatten().tolist():
            diverged[i] = True
        finite = torch.isfinite(losses) & opt.alive
        opt.zero_grad()
        torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
        totals += torch.where(finite, sums, torch.zeros_like(sums))
        count += len(y)
        for i in torch.nonzero(~finite).flatten().tolist():
            opt.freeze(i)
        alive_before = opt.alive.clone()
        opt.step(*s.schedule(t))
        for i in torch.nonzero(alive_before & ~opt.alive).flatten().tolist():
            diverged[i] = True  # the step froze it: its update turned non-finite
        if (t + 1) % p.sweep_epoch_steps and t + 1 != p.sweep_steps:
            continue
        epoch = t // p.sweep_epoch_steps
        values = (totals / max(1, count)).tolist()
        totals.zero_()
        count = 0
        for i in range(k):
            if stopped[i]:
                continue
            if not bool(opt.alive[i]):
                stopped[i] = True
                continue
            if best[i] is None or s.task.train_metric.better(values[i], best[i]):  # type: ignore[arg-type]
                best[i] = values[i]
            if epoch >= p.run_gate_from_epoch and not _passes(s, s.gates.run, values[i]):
                stopped[i] = True
                opt.freeze(i)
        if progress:
            progress("sweep_epoch", {"lrs": list(lrs), "values": values, "epoch": epoch})
        if all(stopped):
            break
    worst = s.task.train_metric.worst
    return SweepResult([worst if b is None else b for b in best], diverged)


# ----------------------------------------------------------------------------------- final run
def final_run(
    genome: Genome,
    lr: float,
    task: Task,
    data: TaskData,
    preset: EvalPreset,
    trial: optuna.Trial,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    setup: _Setup | None = None,
    report: bool = True,
) -> Run:
    """Train at ``lr`` for the preset's final steps; validation values go to ``trial`` (unless
    ``report`` is off: several seeds report their mean curve once they are all done)."""
    s = setup or _setup(task, data, preset, seed)
    run = _run(s, genome, lr, seed, final=True, trial=trial, progress=progress, report=report)
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
    trial: optuna.Trial,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    setup: _Setup | None = None,
) -> Run:
    """The preset's ``seeds`` final runs at ``lr``, pooled: the validation curve is their mean at
    each step (what the trial stores; a run that stopped early counts as the metric's worst from
    then on), ``best`` the best value of that mean curve (so a trial's value is always what its
    stored curve implies), and ``seed_best`` each run's own best, for the record."""
    s = setup or _setup(task, data, preset, seed)
    seeds = final_seeds(seed, max(1, int(preset.seeds)))
    if len(seeds) == 1:
        run = final_run(genome, lr, task, data, preset, trial, seed, progress, setup=s)
        run.seed_best = [run.best]
        return run
    runs = [
        final_run(genome, lr, task, data, preset, trial, sd, progress, setup=s, report=False) for sd in seeds
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
        trial.report(pooled.val_curve[-1], step)
    pooled.seed_best = [r.best for r in runs]
    pooled.best = s.task.metric.best(pooled.val_curve)
    stopped = sum(len(r.val_curve) < len(longest.val_curve) for r in runs)
    pooled.why = f"the mean of {len(runs)} seeds" + (
        f"; {stopped} stopped early (counted as {worst:g} from then on)" if stopped else ""
    )
    return pooled


# ----------------------------------------------------------------------------------- entry point
def for_stage(task: Task, preset: EvalPreset | str) -> tuple[Task, EvalPreset]:
    """(the task bound to the stage, the preset it trains with)."""
    p = for_task(get_preset(preset), task)
    return bind_stage(task, p), p


def evaluate_genome(
    genome: Genome,
    task: Task,
    data: TaskData,
    preset: EvalPreset | str = "task",
    *,
    trial: optuna.Trial | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate ``genome`` on ``task`` with ``data`` (its splits, on the device to train on).

    Without ``trial`` an in-memory Optuna study with the stage's pruner is created, so the gate
    decisions go through exactly the same pruner code as inside a study.
    """
    task, preset = for_stage(task, preset)
    own_study = None
    if trial is None:
        own_study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(),
            direction=task.metric.direction,
            pruner=pruner_for(task, preset),
        )
        trial = own_study.ask()
    start = time.perf_counter()
    result = _evaluate(genome, task, data, preset, trial, seed, progress)
    result.duration = time.perf_counter() - start
    if own_study is not None:
        state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}.get(
            result.status, optuna.trial.TrialState.FAIL
        )  # the same mapping as nosplug.study.trials.state_for
        own_study.tell(
            trial, result.fitness if state == optuna.trial.TrialState.COMPLETE else None, state=state
        )
    return result


def _evaluate(
    genome: Genome,
    task: Task,
    data: TaskData,
    preset: EvalPreset,
    trial: optuna.Trial,
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
    s = _setup(task, data, preset, seed)
    result = EvalResult("pruned", None, "prescreen", "", integrity, flip=flip, metric=task.metric.name,
                        untrained_loss=s.untrained_loss)  # fmt: skip
    pre = sweep(genome, preset.prescreen_lrs, task, data, preset, seed, progress, setup=s)
    result.lr_scores.update({repr(lr): v for lr, v in zip(preset.prescreen_lrs, pre.values)})
    best_pre = _best_of(task, pre.values)
    if gate(trial, PRESCREEN, s.units(best_pre)):
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
    all_lrs, values = list(preset.all_lrs), [*pre.values, *(rest.values if rest else [])]
    best_i = min(range(len(values)), key=lambda i: (task.train_metric.key(values[i]), i))
    if gate(trial, SWEEP, s.units(values[best_i])):
        result.stage = "sweep"
        result.reason = "sweep: " + _missed(s, values[best_i], s.gates.sweep)
        return result
    lr = all_lrs[best_i]
    run = final_runs(genome, lr, task, data, preset, trial, seed, progress, setup=s)
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


def _missed(s: _Setup, value: float, threshold: float) -> str:
    """Why a gate rejected: the value against the threshold, in words a reader can check."""
    name = f"best training {s.task.train_metric.name}"
    if s.gates.scale == "relative":
        l0 = s.untrained_loss or math.nan
        return f"{name} {value:.4g} = {value / l0:.2f} x the untrained {l0:.4g}, above {threshold:g} x"
    sign = "<" if s.gates.direction(s.task.train_metric) == "maximize" else ">"
    return f"{name} {value:.3f} {sign} {threshold:g}"
