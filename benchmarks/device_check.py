"""Check every accelerator against the CPU: one evaluation, one batched sweep, one meta-step.

    python benchmarks/device_check.py [--threads N]

On every accelerator that ``nosplug.tasks.devices.accelerators()`` finds (each CUDA device, then
MPS) it runs three computations and the same three on the CPU, compares the results within the
tolerances below and prints the step-time ratio accelerator / CPU of each (both sides timed on a
second run, after an untimed warm-up run; the same steps on both, so the ratio of wall times is
the ratio of step times):

(a) evaluation: ``evaluate_genome(adam, diabetes-mlp, ...)`` with the ``task`` preset's gates and
    a reduced budget (30 sweep steps per rate, 90 final steps): the whole path a search trial
    takes (integrity check, pre-screen, sweep, learning-rate choice, final run, validation);
(b) batched sweep: ``sweep(adam, 3 rates, charlm, ..., mode="vmap")`` on a tiny character
    Transformer (context 32, width 32, one layer), 20 steps per rate: stacked parameters through
    ``torch.func.functional_call`` + ``vmap``;
(c) amalgamation meta-step: one truncation of ``MetaTrainer`` (RNNProp student, Adam and RMSProp
    teachers, min-max loss, random scaling and random perturbation, 20 inner steps on the MNIST-5k
    MLP), its meta-gradient, the meta-Adam step and a one-truncation validation.

Tolerances (relative; a device computes the same thing with other kernels and summation orders,
and rounding differences grow over the steps of a training run):

* evaluation: the same status, stage and chosen learning rate; fitness and every value of the
  validation curve within 1e-2 (hundreds of training steps, each amplifying rounding a little);
* sweep: the same divergence flags; each rate's best training loss within 1e-3 (20 steps);
* meta-step: truncation loss and validation loss within 1e-3; the meta-gradient and the student's
  weight update within 1e-3 in relative L2 norm (‖a − b‖ / ‖b‖).

Every random draw in these computations (data splits, minibatches, initial weights, scaling,
perturbation noise) comes from seeded CPU generators, so both sides see the same numbers and
only float rounding can differ. On a machine without an accelerator the script says so, runs
the CPU side once (so the script itself stays exercised) and exits 0. Exit status 1 when an
accelerator result is outside its tolerance.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

#: relative tolerances, accelerator against CPU (see the module docstring)
TOLERANCES = {"evaluation": 1e-2, "sweep": 1e-3, "meta-step": 1e-3}


@dataclass
class Outcome:
    """One computation's result on one device: exact values (must be equal), numbers and vectors
    (compared within the tolerance) and the wall time."""

    seconds: float
    exact: dict[str, object] = field(default_factory=dict)
    numbers: dict[str, list[float]] = field(default_factory=dict)
    vectors: dict[str, torch.Tensor] = field(default_factory=dict)

    def summary(self) -> str:
        shown = [f"{k} {v}" for k, v in self.exact.items()]
        shown += [f"{k} {', '.join(f'{x:.6g}' for x in v)}" for k, v in self.numbers.items() if len(v) <= 3]
        return "; ".join(shown)


def _sync(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock time covers the work it claims to."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ----------------------------------------------------------------------------- the computations
def evaluation(device: torch.device) -> Outcome:
    """(a) one evaluation of Adam on diabetes-mlp with the task preset's gates, reduced steps."""
    import nosplug
    from nosplug.evaluation.evaluate import evaluate_genome
    from nosplug.evaluation.runs import for_stage
    from nosplug.tasks import resolve_task

    task, preset = for_stage(resolve_task("diabetes-mlp"), "task")
    # renamed: a preset called "task" would take the task's own (larger) budget back
    preset = preset.with_overrides(
        {"name": "device-check", "sweep_steps": 30, "sweep_epoch_steps": 10, "final_steps": 90,
         "final_epoch_steps": 30, "schedule_steps": 120, "warmup_steps": 10}
    )  # fmt: skip
    data = task.load(0).to(device)
    t0 = time.perf_counter()
    res = evaluate_genome(nosplug.zoo.load("adam"), task, data, preset, seed=0)
    _sync(device)
    seconds = time.perf_counter() - t0
    return Outcome(
        seconds,
        exact={"status": res.status, "stage": res.stage, "lr": res.chosen_lr},
        numbers={"fitness": [math.nan if res.fitness is None else res.fitness], "val_curve": res.val_curve},
    )


def batched_sweep(device: torch.device) -> Outcome:
    """(b) one vmap learning-rate sweep of Adam on a tiny charlm, 3 rates x 20 steps."""
    import nosplug
    from nosplug.evaluation.runs import for_stage
    from nosplug.evaluation.sweep import sweep
    from nosplug.tasks import resolve_task

    task, preset = for_stage(resolve_task("charlm", {"context": 32, "dim": 32, "layers": 1}), "task")
    preset = preset.with_overrides({"sweep_steps": 20, "sweep_epoch_steps": 10})
    data = task.load(0).to(device)
    t0 = time.perf_counter()
    res = sweep(nosplug.zoo.load("adam"), [0.03, 0.003, 3e-4], task, data, preset, seed=1, mode="vmap")
    _sync(device)
    seconds = time.perf_counter() - t0
    return Outcome(seconds, exact={"diverged": res.diverged}, numbers={"best train loss": list(res.values)})


def meta_step(device: torch.device) -> Outcome:
    """(c) one amalgamation meta-step (one truncation of MetaTrainer) and its validation."""
    from nosplug.amalgamation.problems import get_problem
    from nosplug.amalgamation.student import RNNProp
    from nosplug.amalgamation.teachers import resolve_teacher
    from nosplug.amalgamation.train import MetaConfig, MetaTrainer
    from nosplug.primitives.registry import registry

    cfg = MetaConfig(unroll=20, warmup_steps=5, depths=(1,), val_depths=(1,), instances=1, val_instances=1,
                     perturbation="random")  # fmt: skip
    torch.manual_seed(0)  # the student's initial weights, drawn on the CPU
    learned = RNNProp()
    before = {k: v.detach().clone() for k, v in learned.named_parameters()}
    teachers = [resolve_teacher("adam"), resolve_teacher("rmsprop")]
    loss = registry().get("amalgamation_losses", "minmax")
    trainer = MetaTrainer(learned, teachers, loss, cfg, get_problem("mlp"), seed=0, device=device)
    t0 = time.perf_counter()
    res = trainer.period(0)
    _sync(device)
    seconds = time.perf_counter() - t0
    params = dict(trainer.learned.named_parameters())
    grad = torch.cat([p.grad.detach().reshape(-1).cpu() for p in params.values()])
    update = torch.cat([(p.detach().cpu() - before[k]).reshape(-1) for k, p in params.items()])
    return Outcome(
        seconds,
        exact={"meta-steps": res.meta_steps, "diverged instances": res.diverged_instances},
        numbers={"truncation loss": [res.train_loss], "validation loss": [res.val_loss]},
        vectors={"meta-gradient": grad, "weight update": update},
    )


CHECKS: dict[str, Callable[[torch.device], Outcome]] = {
    "evaluation": evaluation,
    "sweep": batched_sweep,
    "meta-step": meta_step,
}
LABELS = {
    "evaluation": "(a) evaluation, adam on diabetes-mlp (task preset, 30 sweep + 90 final steps)",
    "sweep": "(b) batched sweep (vmap), adam x 3 rates x 20 steps on charlm (context 32, width 32)",
    "meta-step": "(c) amalgamation meta-step, RNNProp vs adam+rmsprop, 20 inner steps on the MNIST-5k MLP",
}


# ----------------------------------------------------------------------------- comparison
def _rel(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    return abs(a - b) / max(abs(b), 1e-12)


def compare(cpu: Outcome, acc: Outcome, rtol: float) -> tuple[float, list[str]]:
    """The largest relative difference and every way ``acc`` falls outside ``rtol`` of ``cpu``."""
    problems: list[str] = []
    worst = 0.0
    for k, v in cpu.exact.items():
        if acc.exact.get(k) != v:
            problems.append(f"{k}: {acc.exact.get(k)!r} here, {v!r} on the CPU")
    for k, ref in cpu.numbers.items():
        got = acc.numbers.get(k, [])
        if len(got) != len(ref):
            problems.append(f"{k}: {len(got)} values here, {len(ref)} on the CPU")
            continue
        for i, (a, b) in enumerate(zip(got, ref)):
            d = _rel(a, b)
            worst = max(worst, d)
            if not d <= rtol:
                problems.append(f"{k}[{i}]: {a:.8g} here, {b:.8g} on the CPU (relative {d:.2e} > {rtol:g})")
    for k, ref in cpu.vectors.items():
        got = acc.vectors[k]
        d = float((got - ref).norm() / ref.norm().clamp_min(1e-12))
        worst = max(worst, d)
        if not d <= rtol:
            problems.append(f"{k}: relative L2 difference {d:.2e} > {rtol:g}")
    return worst, problems


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    from nosplug.tasks.devices import accelerators

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = accelerators()
    cpu = torch.device("cpu")
    _say(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    _say("tolerances (relative): " + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items()))
    if not devices:
        _say(
            "no accelerator present on this machine (CUDA: not available, MPS: not available); "
            "running the CPU side once so the script is exercised, nothing to compare"
        )
    else:
        _say("accelerators: " + ", ".join(str(d) for d in devices))
    failures = 0
    rows: list[tuple[str, str, float, float, float, str]] = []
    for name, check in CHECKS.items():
        _say(f"{LABELS[name]}")
        if devices:  # timed like the accelerators: first calls fill caches (lowering, allocator)
            _say("  cpu: warm-up run ...")
            check(cpu)
        _say("  cpu ...")
        ref = check(cpu)
        _say(f"  cpu: {ref.seconds:.2f} s; {ref.summary()}")
        for dev in devices:
            _say(f"  {dev}: warm-up run ...")
            check(dev)  # kernels compiled, caches and handles created: not in the timing
            _say(f"  {dev}: timed run ...")
            got = check(dev)
            worst, problems = compare(ref, got, TOLERANCES[name])
            verdict = "ok" if not problems else "MISMATCH"
            failures += bool(problems)
            _say(f"  {dev}: {got.seconds:.2f} s; {got.summary()}")
            tol = TOLERANCES[name]
            _say(f"  {dev}: {verdict}, largest relative difference {worst:.2e} (tolerance {tol:g})")
            for p in problems:
                _say(f"    {p}")
            rows.append((name, str(dev), got.seconds, ref.seconds, worst, verdict))
    if rows:
        _say("\ncheck       device    accelerator s   CPU s   ratio acc/CPU   largest rel. diff   result")
        for name, dev, acc_s, cpu_s, worst, verdict in rows:
            _say(
                f"{name:<11} {dev:<9} {acc_s:>13.3f} {cpu_s:>7.3f} {acc_s / cpu_s:>15.3f} "
                f"{worst:>19.2e}   {verdict}"
            )
    if not devices:
        _say("done: the CPU side ran; no accelerator present, so nothing was compared")
        return 0
    _say("done: every accelerator agrees with the CPU" if not failures else f"done: {failures} mismatch(es)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
