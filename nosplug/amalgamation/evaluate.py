"""Evaluation protocol (spec §6.1): problems x runs, best log validation loss and stability, oracle.

Every optimizer (the trained student and each teacher) trains a fresh model per problem and run
(the run index seeds the initialisation and the batch order, identically for every optimizer),
for ``epochs`` epochs, recording the validation loss after each epoch. Metrics per run:

* ``best_log_val``: log of the lowest validation loss (the headline metric);
* ``last_log_val``: log of the final validation loss;
* ``mean_log_val``: mean over epochs of the log validation loss;
* ``stability``: std over epochs of log(G_2 * val) − log(val), G_2 a Gaussian filter with σ = 2
  epochs and nearest-edge padding (``scipy.ndimage.gaussian_filter1d``, mode ``nearest``): the
  epoch-to-epoch jitter around the smoothed curve.

On a DP problem the optimizers see privatised gradients (:mod:`nosplug.amalgamation.dp`) whose
noise stream is seeded by the run index too, so every optimizer gets the same draws as long as
their trajectories agree.

The *oracle* of a problem is the teacher with the best mean ``best_log_val`` on it.

Devices: ``device`` (default the CPU) is where the models, the data (moved once) and the
optimizers' states live; the batch order and the DP noise come from CPU generators, so every
device sees the same batches and noise draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import Tensor, nn

from nosplug.amalgamation.problems import (
    Problem,
    device_data,
    get_problem,
    gradient,
    new_instance,
    problem_data,
)
from nosplug.amalgamation.teachers import Teacher


def stability(val: list[float], sigma: float = 2.0) -> float:
    """Optimization stability (spec §6.1): std over epochs of log(G_σ * val) − log(val); NaN for a
    curve shorter than two epochs or with a non-finite value (there is no jitter to measure)."""
    v = np.asarray(val, dtype=np.float64)
    if len(v) < 2 or not np.isfinite(v).all() or (v <= 0).any():
        return math.nan
    smooth = gaussian_filter1d(v, sigma, mode="nearest")
    return float(np.std(np.log(smooth) - np.log(v)))


def run_metrics(vals: list[float]) -> dict[str, float]:
    """best / last / mean log validation loss and stability of one run's per-epoch curve (+inf for
    a loss that never was finite: a diverged run is the worst result, never a missing one)."""
    finite = [v for v in vals if math.isfinite(v) and v > 0]
    diverged = len(finite) < len(vals) or not vals
    return {
        "best_log_val": math.log(min(finite)) if finite else math.inf,
        "last_log_val": math.inf if diverged else math.log(vals[-1]),
        "mean_log_val": math.inf if diverged else float(np.mean(np.log(vals))),
        "stability": stability(vals),
    }


@dataclass
class RunResult:
    optimizer: str
    problem: str
    run: int
    val_losses: list[float]
    best_log_val: float
    last_log_val: float
    stability: float
    seconds: float
    mean_log_val: float = math.nan


Stepper = Callable[[Tensor, Tensor], Tensor]  # (grad, theta) -> new theta


def train_problem(
    problem: Problem,
    make_step: Callable[[Tensor], Stepper],
    run: int,
    epochs: int,
    device: torch.device | str = "cpu",
) -> list[float]:
    """Train a fresh instance on ``device``; returns the validation loss after every epoch."""
    data = device_data(problem.dataset, 0, device)
    model = new_instance(problem, 1000 + run, device)
    theta = model.vector()
    step = make_step(theta)
    gen = torch.Generator().manual_seed(2000 + run)
    noise_gen = torch.Generator().manual_seed(3000 + run)  # DP noise only
    n = len(data.train_y)
    per_epoch = steps_per_epoch(problem)
    vals = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(data.train_y.device)  # the CPU stream, moved
        for b in range(per_epoch):
            idx = order[b * problem.batch_size : (b + 1) * problem.batch_size]
            g = gradient(problem, model, theta, data.train_x[idx], data.train_y[idx], noise_gen)
            theta = step(g, theta.detach())
        with torch.no_grad():
            logits = torch.func.functional_call(model.module, model.params(theta), (data.val_x,))
            vals.append(float(nn.functional.cross_entropy(logits, data.val_y)))
        if not math.isfinite(vals[-1]):
            break
    return vals


def steps_per_epoch(problem: Problem) -> int:
    """Minibatch steps of one training epoch of ``problem`` (whole batches only)."""
    return max(1, len(problem_data(problem.dataset, 0).train_y) // problem.batch_size)


def teacher_stepper(teacher: Teacher) -> Callable[[Tensor], Stepper]:
    def make(theta0: Tensor) -> Stepper:
        state = {"s": teacher.init(theta0)}

        def step(g: Tensor, theta: Tensor) -> Tensor:
            with torch.no_grad():
                d, state["s"] = teacher.step(g, state["s"], theta)
            return theta - d

        return step

    return make


def learned_stepper(
    learned: nn.Module, warmup: int = 100, warmup_lr: float = 0.05
) -> Callable[[Tensor], Stepper]:
    """The student as at evaluation time in the reference: ``warmup`` SGD steps, then its own."""

    from nosplug.amalgamation.fast import FastRNNProp
    from nosplug.amalgamation.student import RNNProp

    def make(theta0: Tensor) -> Stepper:
        learned.to(theta0.device)  # the student steps where the model trains
        state = {"s": learned.init_state(theta0.numel(), theta0), "t": 0}
        fast = FastRNNProp(learned, theta0.numel(), theta0.device) if isinstance(learned, RNNProp) else None

        def step(g: Tensor, theta: Tensor) -> Tensor:
            with torch.no_grad():
                frozen = state["t"] < warmup
                state["t"] += 1
                if fast is not None:  # the same updates up to float rounding, faster
                    if frozen:
                        fast.moments(g)
                        return theta - warmup_lr * g
                    return theta - fast.step(g)
                d, state["s"] = learned(g, state["s"], frozen=frozen)
                return theta - (warmup_lr * g if frozen else d)

        return step

    return make


def evaluate(
    optimizers: dict[str, Callable[[Tensor], Stepper]],
    problems: list[str],
    runs: int,
    epochs: int,
    on_result: Callable[[RunResult], None] | None = None,
    device: torch.device | str = "cpu",
) -> list[RunResult]:
    """Train every optimizer on every problem ``runs`` times on ``device``, in that nesting."""
    import time

    out = []
    for pname in problems:
        problem = get_problem(pname)
        for run in range(runs):
            for oname, make in optimizers.items():
                t0 = time.perf_counter()
                vals = train_problem(problem, make, run, epochs, device)
                m = run_metrics(vals)
                res = RunResult(
                    oname,
                    pname,
                    run,
                    vals,
                    m["best_log_val"],
                    m["last_log_val"],
                    m["stability"],
                    time.perf_counter() - t0,
                    m["mean_log_val"],
                )
                out.append(res)
                if on_result:
                    on_result(res)
    return out


def summarise(results: list[RunResult], student: str, teachers: list[str]) -> list[dict]:
    """Mean ± std per optimizer and problem, plus the per-problem oracle (best teacher)."""
    rows = []
    problems = sorted({r.problem for r in results}, key=[r.problem for r in results].index)
    for p in problems:
        by_opt: dict[str, list[RunResult]] = {}
        for r in results:
            if r.problem == p:
                by_opt.setdefault(r.optimizer, []).append(r)
        means = {o: float(np.mean([r.best_log_val for r in rs])) for o, rs in by_opt.items()}
        oracle = min((t for t in teachers if t in means), key=lambda t: means[t], default=None)
        for o, rs in by_opt.items():
            vals = [r.best_log_val for r in rs]
            rows.append(
                {
                    "problem": p,
                    "optimizer": o,
                    "best_log_val_mean": float(np.mean(vals)),
                    "best_log_val_std": float(np.std(vals)),
                    "stability_mean": float(np.nanmean([r.stability for r in rs])),
                    "is_oracle": o == oracle,
                    "is_student": o == student,
                    "oracle": oracle,
                    "vs_oracle": float(np.mean(vals)) - means[oracle] if oracle else math.nan,
                }
            )
    return rows
