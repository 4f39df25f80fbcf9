"""The learning-rate sweep (spec §8): every rate of a list trained for the preset's sweep steps.

Three ways give the same result per rate as a single run of that rate (tested): separate runs,
one run of a task's *grouped* model (K copies as grouped convolutions or batched matrix products,
:mod:`nosplug.evaluation.sweep_batched`), or the model's parameters stacked K times under
``torch.func.vmap``. :func:`sweep_mode` picks the fastest that the task and device allow.

A user's model may be one ``vmap`` cannot run (a GRU, a custom autograd function, in-place
updates, control flow on the data): before the first ``vmap`` sweep of a task and model, one
forward and backward of two stacked copies is tried (:func:`vmap_fallback`); when it fails, that
task's sweeps train their rates one after the other, a :class:`SweepFallbackWarning` says so once,
and every evaluation records it (``EvalResult.sweep_mode`` and ``sweep_note``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from nosplug.evaluation.presets import EvalPreset
from nosplug.evaluation.runs import Progress, Run, RunSetup, SweepResult, setup_runs, train_run
from nosplug.evaluation.sweep_batched import plain_probe, sweep_batched, vmap_probe
from nosplug.genome.model import Genome
from nosplug.tasks.base import Task, TaskData

#: Widest ConvNet for which the grouped sweep beats separate runs on CPU (benchmarks/).
BATCHED_MAX_BASE = 8

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


class SweepFallbackWarning(UserWarning):
    """The sweep chose to stack the model under ``vmap`` but the model cannot be stacked: its
    rates train one after the other instead (said once per task and model)."""


#: (task, its options, device, precision) -> why ``vmap`` cannot run the task's model ("" when
#: it can); each task and model is probed once per process.
_VMAP_PROBES: dict[tuple, str] = {}


def vmap_fallback(s: RunSetup, seed: int) -> str:
    """Why the sweep's ``vmap`` form cannot train this task's model ("" when it can): probed
    once per task and model with one forward and backward of two stacked copies; the first
    failure is said once (a :class:`SweepFallbackWarning`)."""
    task = s.task
    key = (
        type(task).__module__,
        type(task).__qualname__,
        task.name,
        task.describe(),
        repr(sorted((k, repr(v)) for k, v in getattr(task, "options", {}).items())),
        str(s.device),
        s.preset.precision,
    )
    if key not in _VMAP_PROBES:
        plain_probe(s, seed)  # a model that fails by itself fails here, as it would in any sweep
        try:
            vmap_probe(s, seed)
            _VMAP_PROBES[key] = ""
        except Exception as exc:  # any failure of the user's model under vmap: separate runs
            _VMAP_PROBES[key] = _fallback_note(task, exc)
            warnings.warn(_VMAP_PROBES[key], SweepFallbackWarning, stacklevel=2)
    return _VMAP_PROBES[key]


def _fallback_note(task: Task, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return (
        f"task {task.name}: the learning-rate sweep trains its rates one after the other, because "
        f"torch.func.vmap cannot run this model ({type(exc).__name__}: {first}); "
        'sweep_mode = "sequential" says so up front'
    )


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
    setup: RunSetup | None = None,
) -> SweepResult:
    """Train each rate of ``lrs`` for the preset's sweep steps; every path gives the same result
    per rate as a single run of that rate (tested)."""
    s = setup or setup_runs(task, data, preset, seed)
    mode = mode or sweep_mode(s.task, preset, s.device)
    note = ""
    if mode == "vmap" and len(lrs) >= 2:
        note = vmap_fallback(s, seed)
        mode = "sequential" if note else mode
    if mode == "sequential" or len(lrs) < 2:
        runs = [train_run(s, genome, lr, seed, final=False, progress=progress) for lr in lrs]
        return SweepResult([_best_train(s, r) for r in runs], [r.diverged for r in runs], "sequential", note)
    return sweep_batched(s, genome, lrs, seed, progress, mode)


def _best_train(s: RunSetup, run: Run) -> float:
    best = s.task.train_metric.best(run.train_curve)
    return s.task.train_metric.worst if best is None else best
