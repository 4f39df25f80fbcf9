"""One benchmark run: train a task's model with a contender at given hyperparameters.

Tuning runs are scored on the validation split (their best value during training, the same
rule as a search's fitness). Evaluation runs also measure the held-out test split after every
epoch and record, per epoch, the training steps done and the wall-clock seconds spent training
(forward, backward and the optimizer's own step; evaluation excluded), so time-to-target can be
read off afterwards against any target.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from nosplug.baselines.recipes import evaluation_mode, training_mode
from nosplug.benchmark.contenders import Contender
from nosplug.evaluation.presets import EvalPreset
from nosplug.evaluation.runs import train_loop
from nosplug.tasks.base import Task, TaskData


def run(
    contender: Contender,
    task: Task,
    preset: EvalPreset,
    data: TaskData,
    params: Mapping[str, float],
    seed: int,
    *,
    test: bool,
    check: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train once; returns what the trial stores (curves are per epoch, values in the task's metric)."""
    device = data.train.x.device
    model = task.model(seed, device)
    opt, sched = contender.build(model.parameters(), params, preset.final_steps, seed)
    training_mode(opt)  # a schedule-free optimizer trains in train() mode, is evaluated in eval()
    batches = task.batches(data, seed, preset.batch_size)
    curve: dict[str, list[float]] = {"steps": [], "seconds": [], "val": [], "test": [], "train": []}
    untrained = task.evaluate(model, data.test) if test else None
    torch.manual_seed(seed + 1)  # dropout masks

    def on_epoch(epoch: int, done: int, value: float, seconds: float) -> bool:
        curve["steps"].append(done)
        curve["seconds"].append(seconds)
        curve["train"].append(value)
        with evaluation_mode(opt):
            curve["val"].append(task.evaluate(model, data.val))
            if test:
                curve["test"].append(task.evaluate(model, data.test))
        if check:
            check("epoch", {"epoch": epoch})
        return False

    started = time.perf_counter()
    r = train_loop(task, model, opt, sched, batches, preset.final_steps, preset.final_epoch_steps, on_epoch)
    metric = task.metric
    out: dict[str, Any] = {
        "metric": metric.name,
        "curve": curve,
        "steps_run": r.steps,
        "train_seconds": curve["seconds"][-1] if curve["seconds"] else 0.0,
        "duration": time.perf_counter() - started,
        "diverged": r.diverged,
        "best_val": metric.best(curve["val"]),
        "final_val": _last(curve["val"]),
    }
    if test:
        out["untrained_test"] = untrained
        out["best_test"] = metric.best(curve["test"])
        # a run that diverged did not train a model: its final quality is the untrained model's
        # (finite, so statistics can use it, and never better than having trained at all); so does
        # one whose model ends without a finite test value (e.g. a perplexity past the float range)
        last = _last(curve["test"])
        out["final_test"] = untrained if r.diverged or last is None else last
    # what the trial's value is: tuning by the best validation value, evaluation by the final test value
    out["value"] = out["final_test"] if test else out["best_val"]
    out["reason"] = "diverged (non-finite loss or update)" if r.diverged else "completed"
    return out


def _last(values: list[float]) -> float | None:
    v = values[-1] if values else None
    return v if v is not None and math.isfinite(v) else None
