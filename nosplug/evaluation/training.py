"""Turn a genome into a fitness (spec §6-8): integrity check, batched LR sweep, final run.

Stages, each decided by the trial's pruner (see :mod:`nosplug.evaluation.pruners`):

1. integrity check (shifted sphere + decay check); a failure ends the evaluation;
2. pre-screen: the preset's pre-screen rates trained side by side in one grouped model;
   reported at step 0 (best training accuracy), pruned below ``prescreen_gate``;
3. sweep: the remaining rates likewise; the best of all rates is reported at step 1 and pruned
   below ``sweep_gate``; the best rate is chosen;
4. final run at that rate with GraphOptimizer and the paper's schedule; epoch-mean training
   accuracy reported from step 2 on; when the pruner says stop (the training floor, or NaN),
   training stops but the trial is *not* rejected: fitness is the best validation accuracy.
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
from nosplug.evaluation.pruners import STEP_FINAL0, STEP_PRESCREEN, STEP_SWEEP, pruner_for
from nosplug.genome.model import Genome
from nosplug.optim.graph_optimizer import GraphOptimizer
from nosplug.optim.program import compile_genome
from nosplug.optim.schedules import WarmupHoldCosine, cycled_momentum, warmup_hold_cosine_factor

Progress = Callable[[str, dict[str, Any]], None]


@dataclass
class EvalResult:
    """Everything an evaluation learned; stored as trial user attributes by studies."""

    status: str  # "complete" | "pruned" | "failed"
    fitness: float | None
    stage: str  # last stage reached: integrity | prescreen | sweep | final
    reason: str
    integrity: dict[str, Any] | None = None
    lr_accuracies: dict[str, float] = field(default_factory=dict)
    chosen_lr: float | None = None
    val_curve: list[float] = field(default_factory=list)
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


def sweep(
    genome: Genome,
    lrs: Sequence[float],
    data,
    preset: EvalPreset,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[float]:
    """The sweep in the preset's mode; both modes give the same result per rate (tested)."""
    mode = preset.sweep_mode
    if mode == "auto":
        base = int(preset.surrogate_options.get("base", 32))
        mode = "batched" if preset.surrogate != "convnet" or base <= BATCHED_MAX_BASE else "sequential"
    if mode == "batched":
        return sweep_batched(genome, lrs, data, preset, seed, progress)
    return [sweep_single(genome, lr, data, preset, seed) for lr in lrs]


def sweep_batched(
    genome: Genome,
    lrs: Sequence[float],
    data,
    preset: EvalPreset,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[float]:
    """Best epoch-mean training accuracy of each rate, all rates trained as one grouped model."""
    k = len(lrs)
    single = build_single(preset, data.input_shape, data.num_classes, seed)
    grouped = build_grouped(preset, single, k, data.num_classes)
    if grouped is None:
        return [sweep_single(genome, lr, data, preset, seed) for lr in lrs]
    program = compile_genome(genome)
    gen = torch.Generator().manual_seed(seed)
    opt = BatchedProgramOptimizer(list(grouped.parameters()), program, lrs, preset.schedule_steps, gen)
    batches = _batches(data, preset, seed)
    best = [0.0] * k
    stopped = [False] * k
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
        for i in torch.nonzero(~finite).flatten().tolist():
            opt.freeze(i)
        opt.step(
            warmup_hold_cosine_factor(t, preset.schedule_steps, preset.warmup_steps, preset.hold_steps),
            cycled_momentum(t, preset.schedule_steps, preset.warmup_steps, preset.hold_steps)
            if preset.cycle_momentum
            else 0.9,
        )
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
    return best


def sweep_single(genome: Genome, lr: float, data, preset: EvalPreset, seed: int = 0) -> float:
    """One sweep run on its own (the reference the batched sweep is tested against)."""
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
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if opt.last_step_nonfinite:
            break
        correct += (logits.argmax(-1) == y).float().sum().item()
        seen += len(y)
        if (t + 1) % preset.sweep_epoch_steps == 0 or t + 1 == preset.sweep_steps:
            acc = correct / max(1, seen)
            best = max(best, acc)
            correct, seen = 0.0, 0
            if t // preset.sweep_epoch_steps >= preset.run_gate_from_epoch and acc < preset.run_gate:
                break
    return best


# ----------------------------------------------------------------------------------- final run
def final_run(
    genome: Genome,
    lr: float,
    data,
    preset: EvalPreset,
    trial: optuna.Trial,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[float, list[float], list[float], int, str]:
    """Train at ``lr``; returns (best val acc, val curve, train curve, steps, why it stopped)."""
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
    val_curve: list[float] = []
    train_curve: list[float] = []
    correct, seen = 0.0, 0
    why = "completed"
    torch.manual_seed(seed + 1)
    t = 0
    for t in range(preset.final_steps):
        x, y = batches.next()
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        nan = not math.isfinite(loss.item())
        if not nan:
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            nan = opt.last_step_nonfinite
            correct += (logits.argmax(-1) == y).float().sum().item()
            seen += len(y)
        end_of_epoch = (t + 1) % preset.final_epoch_steps == 0 or t + 1 == preset.final_steps
        if nan or end_of_epoch:
            epoch = t // preset.final_epoch_steps
            acc = float("nan") if nan else correct / max(1, seen)
            train_curve.append(acc)
            val_curve.append(validation_accuracy(model, data.val_x, data.val_y))
            correct, seen = 0.0, 0
            trial.report(acc, STEP_FINAL0 + epoch)
            if progress:
                progress("final_epoch", {"epoch": epoch, "train_acc": acc, "val_acc": val_curve[-1]})
            if nan:
                why = "non-finite loss or update (terminated)"
                break
            if trial.should_prune():
                why = f"training accuracy {acc:.3f} below the floor {preset.final_floor} (stopped early)"
                break
    best = max((v for v in val_curve if math.isfinite(v)), default=0.0)
    return best, val_curve, train_curve, t + 1, why


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
        )
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
            return EvalResult("failed", None, "integrity", f"integrity check: {check.reason}", integrity)
        flip = check.flip
        genome = apply_flip(genome, check)
    accs: dict[str, float] = {}
    pre = sweep(genome, preset.prescreen_lrs, data, preset, seed, progress)
    accs.update({repr(lr): a for lr, a in zip(preset.prescreen_lrs, pre)})
    trial.report(max(pre), STEP_PRESCREEN)
    if trial.should_prune():
        return EvalResult(
            "pruned",
            None,
            "prescreen",
            f"pre-screen: best training accuracy {max(pre):.3f} < {preset.prescreen_gate}",
            integrity,
            accs,
            flip=flip,
        )
    rest = sweep(genome, preset.sweep_lrs, data, preset, seed, progress) if preset.sweep_lrs else []
    accs.update({repr(lr): a for lr, a in zip(preset.sweep_lrs, rest)})
    all_lrs, all_accs = list(preset.all_lrs), [*pre, *rest]
    best_i = max(range(len(all_accs)), key=lambda i: all_accs[i])
    trial.report(all_accs[best_i], STEP_SWEEP)
    if trial.should_prune():
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
    fitness, val_curve, train_curve, steps, why = final_run(genome, lr, data, preset, trial, seed, progress)
    return EvalResult(
        "complete", fitness, "final", why, integrity, accs, lr, val_curve, train_curve, steps, flip
    )
