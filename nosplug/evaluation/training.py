"""Turn a genome into a fitness (spec §6-8): integrity check, batched LR sweep, final run.

Stages, each gate decided by the trial's pruner (see :mod:`nosplug.evaluation.pruners`):

1. integrity check (shifted sphere + decay check); a failure rejects the candidate (``pruned``
   at stage ``integrity``);
2. pre-screen: the preset's pre-screen rates trained side by side in one grouped model; pruned
   when their best training accuracy is below ``prescreen_gate`` (``nonfinite`` instead when
   every rate diverged);
3. sweep: the remaining rates likewise; pruned when the best of all rates is below
   ``sweep_gate``; the best rate is chosen;
4. final run at that rate with GraphOptimizer and the paper's schedule. The validation accuracy
   after each epoch is reported as the trial's intermediate value at that training step (the
   curve optuna-dashboard plots; fitness is its maximum); the epoch-mean training accuracy is
   kept in ``train_curve``. When the training floor gate says stop, or the loss or an update
   turns non-finite (Keras' TerminateOnNaN in the paper), training stops but the candidate is
   *not* rejected: fitness is the best validation accuracy so far. Only a run that diverges
   before its first validation has no fitness (``nonfinite``).

An exception is not an outcome of the candidate: it propagates to the caller (a study worker
records it as a crash and retries).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch
from torch import nn

from nosplug.evaluation.batched import BatchedProgramOptimizer, GroupedConvNet, GroupedMLP
from nosplug.evaluation.presets import EvalPreset, get_preset
from nosplug.evaluation.pruners import FINAL, PRESCREEN, SWEEP, gate, pruner_for
from nosplug.genome.model import Genome
from nosplug.optim.graph_optimizer import GraphOptimizer
from nosplug.optim.program import compile_genome
from nosplug.optim.schedules import WarmupHoldCosine, cycled_momentum, warmup_hold_cosine_factor

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class EvalResult:
    """Everything an evaluation learned; stored as trial user attributes by studies."""

    status: str  # "complete" | "pruned" (a gate rejected it) | "nonfinite" (diverged, no fitness)
    fitness: float | None
    stage: str  # last stage reached: integrity | prescreen | sweep | final
    reason: str
    integrity: dict[str, Any] | None = None
    lr_accuracies: dict[str, float] = field(default_factory=dict)
    chosen_lr: float | None = None
    val_curve: list[float] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)  # training steps done at each validation
    train_curve: list[float] = field(default_factory=list)
    final_steps_run: int = 0
    flip: bool = False
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------- models
def build_single(preset: EvalPreset, input_shape: Sequence[int], num_classes: int, seed: int) -> nn.Module:
    from nosplug.evaluation.surrogates import build_surrogate

    torch.manual_seed(seed)
    return build_surrogate(preset.surrogate, tuple(input_shape), num_classes, **preset.surrogate_options)


def build_grouped(preset: EvalPreset, single: nn.Module, k: int, num_classes: int) -> nn.Module | None:
    """K copies of ``single`` as one grouped model, or None if the surrogate has no grouped form."""
    if preset.surrogate == "convnet":
        base = int(preset.surrogate_options.get("base", 32))
        bn = next(m for m in single.modules() if isinstance(m, nn.BatchNorm2d))
        drop = next((m.p for m in single.modules() if isinstance(m, nn.Dropout)), 0.2)
        return GroupedConvNet.from_models(
            [single] * k, num_classes, base, dropout=drop, bn_momentum=bn.momentum, bn_eps=bn.eps
        )
    if preset.surrogate == "mlp":
        linears = [m for m in single.modules() if isinstance(m, nn.Linear)]
        sizes = [linears[0].in_features] + [m.out_features for m in linears]
        grouped = GroupedMLP(k, sizes, activation=preset.surrogate_options.get("activation", "relu"))
        with torch.no_grad():
            for w, b, lin in zip(grouped.weights, grouped.biases, linears):
                w.copy_(lin.weight.t().unsqueeze(0).expand_as(w))
                b.copy_(lin.bias.unsqueeze(0).expand_as(b))
        return grouped
    return None


def _batches(data, preset: EvalPreset, seed: int):
    from nosplug.evaluation.datasets import Augment, Batches

    aug = Augment.paper() if preset.augment else None
    return Batches(data.train_x, data.train_y, preset.batch_size, seed=seed, augment=aug)


@torch.no_grad()
def validation_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1000) -> float:
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), chunk):
        correct += (model(x[i : i + chunk]).argmax(-1) == y[i : i + chunk]).sum().item()
    model.train(was)
    return correct / max(1, len(x))


# ----------------------------------------------------------------------------------- sweep
#: Widest ConvNet for which the grouped sweep beats separate runs on CPU (benchmarks/).
BATCHED_MAX_BASE = 8


@dataclass
class SweepResult:
    """Per rate: the best epoch-mean training accuracy, and whether the run diverged (its loss
    or update turned non-finite) before the sweep's end."""

    accuracies: list[float]
    diverged: list[bool]


def sweep(
    genome: Genome,
    lrs: Sequence[float],
    data,
    preset: EvalPreset,
    seed: int = 0,
    progress: Progress | None = None,
) -> SweepResult:
    """The sweep in the preset's mode; both modes give the same result per rate (tested)."""
    mode = preset.sweep_mode
    if mode == "auto":
        base = int(preset.surrogate_options.get("base", 32))
        mode = "batched" if preset.surrogate != "convnet" or base <= BATCHED_MAX_BASE else "sequential"
    if mode == "batched":
        return sweep_batched(genome, lrs, data, preset, seed, progress)
    return _sequential(genome, lrs, data, preset, seed, progress)


def _sequential(genome, lrs, data, preset, seed, progress) -> SweepResult:
    runs = [sweep_single(genome, lr, data, preset, seed, progress) for lr in lrs]
    return SweepResult([a for a, _ in runs], [d for _, d in runs])


def sweep_batched(
    genome: Genome,
    lrs: Sequence[float],
    data,
    preset: EvalPreset,
    seed: int = 0,
    progress: Progress | None = None,
) -> SweepResult:
    """Best epoch-mean training accuracy of each rate, all rates trained as one grouped model."""
    k = len(lrs)
    single = build_single(preset, data.input_shape, data.num_classes, seed)
    grouped = build_grouped(preset, single, k, data.num_classes)
    if grouped is None:
        return _sequential(genome, lrs, data, preset, seed, progress)
    program = compile_genome(genome)
    gen = torch.Generator().manual_seed(seed)
    opt = BatchedProgramOptimizer(list(grouped.parameters()), program, lrs, preset.schedule_steps, gen)
    batches = _batches(data, preset, seed)
    best = [0.0] * k
    stopped = [False] * k
    diverged = [False] * k
    correct = torch.zeros(k)
    seen = 0
    torch.manual_seed(seed + 1)  # dropout masks
    for t in range(preset.sweep_steps):
        x, y = batches.next()
        logits = grouped(x)  # (B, K, C)
        losses = nn.functional.cross_entropy(
            logits.permute(0, 2, 1), y.unsqueeze(1).expand(-1, k), reduction="none"
        ).mean(0)
        finite = torch.isfinite(losses) & opt.alive
        opt.zero_grad()
        torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
        with torch.no_grad():
            correct += (logits.argmax(-1) == y.unsqueeze(1)).float().sum(0)
            seen += len(y)
        for i in torch.nonzero(~torch.isfinite(losses) & opt.alive).flatten().tolist():
            diverged[i] = True
        for i in torch.nonzero(~finite).flatten().tolist():
            opt.freeze(i)
        alive_before = opt.alive.clone()
        opt.step(
            warmup_hold_cosine_factor(t, preset.schedule_steps, preset.warmup_steps, preset.hold_steps),
            cycled_momentum(t, preset.schedule_steps, preset.warmup_steps, preset.hold_steps)
            if preset.cycle_momentum
            else 0.9,
        )
        for i in torch.nonzero(alive_before & ~opt.alive).flatten().tolist():
            diverged[i] = True  # the step froze it: its update turned non-finite
        if (t + 1) % preset.sweep_epoch_steps == 0 or t + 1 == preset.sweep_steps:
            epoch = t // preset.sweep_epoch_steps
            accs = (correct / max(1, seen)).tolist()
            for i in range(k):
                if stopped[i]:
                    continue
                if not bool(opt.alive[i]):
                    stopped[i] = True
                    continue
                best[i] = max(best[i], accs[i])
                if epoch >= preset.run_gate_from_epoch and accs[i] < preset.run_gate:
                    stopped[i] = True
                    opt.freeze(i)
            correct.zero_()
            seen = 0
            if progress:
                progress("sweep_epoch", {"lrs": list(lrs), "accuracies": accs, "epoch": epoch})
            if all(stopped):
                break
    return SweepResult(best, diverged)


def sweep_single(
    genome: Genome, lr: float, data, preset: EvalPreset, seed: int = 0, progress: Progress | None = None
) -> tuple[float, bool]:
    """One sweep run on its own (the reference the batched sweep is tested against):
    (best epoch-mean training accuracy, whether it diverged)."""
    model = build_single(preset, data.input_shape, data.num_classes, seed)
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
    batches = _batches(data, preset, seed)
    best, correct, seen = 0.0, 0.0, 0
    torch.manual_seed(seed + 1)
    for t in range(preset.sweep_steps):
        x, y = batches.next()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        if not math.isfinite(loss.item()):
            return best, True
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if opt.last_step_nonfinite:
            return best, True
        correct += (logits.argmax(-1) == y).float().sum().item()
        seen += len(y)
        if (t + 1) % preset.sweep_epoch_steps == 0 or t + 1 == preset.sweep_steps:
            epoch = t // preset.sweep_epoch_steps
            acc = correct / max(1, seen)
            best = max(best, acc)
            correct, seen = 0.0, 0
            if progress:
                progress("sweep_epoch", {"lrs": [lr], "accuracies": [acc], "epoch": epoch})
            if epoch >= preset.run_gate_from_epoch and acc < preset.run_gate:
                break
    return best, False


# ----------------------------------------------------------------------------------- final run
@dataclass
class FinalRun:
    """A final training run: validation accuracy after each epoch (and the training step it was
    taken at), epoch-mean training accuracy, steps trained, and why it stopped."""

    val_curve: list[float]
    val_steps: list[int]
    train_curve: list[float]
    steps: int
    why: str
    diverged: bool

    @property
    def best(self) -> float | None:
        """Fitness: the best validation accuracy, None when the run diverged before any."""
        finite = [v for v in self.val_curve if math.isfinite(v)]
        return max(finite) if finite else None


def final_run(
    genome: Genome,
    lr: float,
    data,
    preset: EvalPreset,
    trial: optuna.Trial,
    seed: int = 0,
    progress: Progress | None = None,
) -> FinalRun:
    """Train at ``lr``; validation accuracy goes to ``trial`` as the intermediate value at each
    epoch's training step, and the floor gate is asked after every epoch."""
    model = build_single(preset, data.input_shape, data.num_classes, seed)
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
    batches = _batches(data, preset, seed)
    run = FinalRun([], [], [], 0, "completed", False)
    correct, seen = 0.0, 0
    torch.manual_seed(seed + 1)
    for t in range(preset.final_steps):
        x, y = batches.next()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        if not math.isfinite(loss.item()):
            run.diverged = True
        else:
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            run.diverged = opt.last_step_nonfinite
        if run.diverged:  # as TerminateOnNaN: stop at once, no validation of the partial epoch
            run.steps = t
            run.why = "non-finite loss or update (terminated)"
            break
        run.steps = t + 1
        correct += (logits.argmax(-1) == y).float().sum().item()
        seen += len(y)
        if (t + 1) % preset.final_epoch_steps == 0 or t + 1 == preset.final_steps:
            epoch = t // preset.final_epoch_steps
            acc = correct / max(1, seen)
            val = validation_accuracy(model, data.val_x, data.val_y)
            run.train_curve.append(acc)
            run.val_curve.append(val)
            run.val_steps.append(t + 1)
            correct, seen = 0.0, 0
            trial.report(val, t + 1)
            if progress:
                progress("final_epoch", {"epoch": epoch, "train_acc": acc, "val_acc": val})
            if gate(trial, FINAL, acc, epoch):
                run.why = f"training accuracy {acc:.3f} below the floor {preset.final_floor} (stopped early)"
                break
    return run


# ----------------------------------------------------------------------------------- entry point
def evaluate_genome(
    genome: Genome,
    data,
    preset: EvalPreset | str = "quick",
    *,
    trial: optuna.Trial | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> EvalResult:
    """Evaluate ``genome`` on ``data`` (a :class:`~nosplug.evaluation.datasets.Splits`).

    Without ``trial`` an in-memory Optuna study with the preset's pruner is created, so the
    gate decisions go through exactly the same pruner code as inside a study.
    """
    preset = get_preset(preset)
    own_study = None
    if trial is None:
        own_study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(), direction="maximize", pruner=pruner_for(preset)
        )
        trial = own_study.ask()
    start = time.perf_counter()
    result = _evaluate(genome, data, preset, trial, seed, progress)
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
    genome: Genome, data, preset: EvalPreset, trial: optuna.Trial, seed: int, progress: Progress | None
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
            return EvalResult("pruned", None, "integrity", f"integrity check: {check.reason}", integrity)
        flip = check.flip
        genome = apply_flip(genome, check)
    accs: dict[str, float] = {}
    pre = sweep(genome, preset.prescreen_lrs, data, preset, seed, progress)
    accs.update({repr(lr): a for lr, a in zip(preset.prescreen_lrs, pre.accuracies)})
    best_pre = max(pre.accuracies)
    if gate(trial, PRESCREEN, best_pre):
        if all(pre.diverged):
            status, why = "nonfinite", "pre-screen: every rate diverged (non-finite loss or update)"
        else:
            status = "pruned"
            why = f"pre-screen: best training accuracy {best_pre:.3f} < {preset.prescreen_gate}"
        return EvalResult(status, None, "prescreen", why, integrity, accs, flip=flip)
    rest = sweep(genome, preset.sweep_lrs, data, preset, seed, progress) if preset.sweep_lrs else None
    if rest is not None:
        accs.update({repr(lr): a for lr, a in zip(preset.sweep_lrs, rest.accuracies)})
    all_lrs, all_accs = list(preset.all_lrs), [*pre.accuracies, *(rest.accuracies if rest else [])]
    best_i = max(range(len(all_accs)), key=lambda i: all_accs[i])
    if gate(trial, SWEEP, all_accs[best_i]):
        return EvalResult(
            "pruned",
            None,
            "sweep",
            f"sweep: best training accuracy {all_accs[best_i]:.3f} < {preset.sweep_gate}",
            integrity,
            accs,
            flip=flip,
        )
    lr = all_lrs[best_i]
    run = final_run(genome, lr, data, preset, trial, seed, progress)
    status = "complete" if run.best is not None else "nonfinite"
    why = run.why if run.best is not None else "final run: diverged before its first validation"
    return EvalResult(
        status,
        run.best,
        "final",
        why,
        integrity,
        accs,
        lr,
        run.val_curve,
        run.val_steps,
        run.train_curve,
        run.steps,
        flip,
    )
