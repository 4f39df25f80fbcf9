"""Amalgamation speed on 2 CPU cores: meta-training inner steps and the trained student's step.

    python benchmarks/bench_amalgamation.py          # about a minute

(a) milliseconds per inner unroll step of meta-training (student + K teachers in lockstep, with
    the backward pass of the truncation amortised over its steps), for the MNIST-5k MLP
    (784-20-10, as in the reference timings) and the Train CNN, unroll 20 and 100;
    the reference implementation measured 31-52 ms (MLP) and 77 ms (CNN) per inner step on 2 cores;
(b) the trained student as a torch optimizer (StudentOptimizer) against torch.optim.Adam(foreach=True)
    on the same model: milliseconds per optimizer step and the ratio (the reference: about 10x Adam).
"""

from __future__ import annotations

import statistics
import time

import torch

from nosplug.amalgamation.problems import get_problem, new_instance, problem_data
from nosplug.amalgamation.student import RNNProp, StudentOptimizer
from nosplug.amalgamation.teachers import resolve_teacher
from nosplug.amalgamation.train import MetaConfig, MetaTrainer
from nosplug.primitives.registry import registry


def inner_step_ms(problem: str, unroll: int, teachers: list[str], repeats: int = 3) -> float:
    cfg = MetaConfig(unroll=unroll, warmup_steps=2, random_scaling=True)
    loss = registry().get("amalgamation_losses", "minmax")
    trainer = MetaTrainer(RNNProp(), [resolve_teacher(t) for t in teachers], loss, cfg, get_problem(problem))
    gen = torch.Generator().manual_seed(0)
    model, s, student, tstates = trainer.unroller.start(0, gen)
    batches = trainer.unroller.batches(gen)
    trainer._meta_step(model, s, student, tstates, batches, 0.2)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = trainer._meta_step(model, s, student, tstates, batches, 0.2)
        times.append((time.perf_counter() - t0) * 1000 / unroll)
        student, tstates = res.student, res.teachers
    return statistics.median(times)


def optimizer_step_ms(problem: str, steps: int = 200) -> tuple[float, float]:
    data = problem_data(get_problem(problem).dataset, 0)
    x, y = data.train_x[:128], data.train_y[:128]
    out = []
    for make in (
        lambda ps: StudentOptimizer(ps, RNNProp(), warmup=0),
        lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
    ):
        module = new_instance(get_problem(problem), 0).module
        opt = make(list(module.parameters()))
        loss = torch.nn.functional.cross_entropy(module(x), y)
        loss.backward()
        for _ in range(10):
            opt.step()
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()  # the same gradients every step: times the optimizer alone
        out.append((time.perf_counter() - t0) * 1000 / steps)
    return out[0], out[1]


def main() -> None:
    torch.set_num_threads(2)
    print("(a) meta-training, ms per inner step (student + teachers, min-max, random scaling)")
    print(f"{'problem':<12} {'unroll':>6} {'teachers':>9} {'ms/step':>8} {'reference':>10} {'speed-up':>9}")
    reference = {("mlp", 20): 52.0, ("mlp", 100): 31.0, ("conv_train", 100): 77.0}
    for problem, unroll in (("mlp", 20), ("mlp", 100), ("conv_train", 20), ("conv_train", 100)):
        ms = inner_step_ms(problem, unroll, ["adam", "rmsprop"])
        ref = reference.get((problem, unroll))
        speed = f"{ref / ms:.1f}x" if ref else "-"
        print(f"{problem:<12} {unroll:>6} {2:>9} {ms:>8.1f} {ref or '-':>10} {speed:>9}")
    print("\n(b) optimizer step alone, ms (same model and gradients)")
    print(f"{'problem':<12} {'student':>8} {'Adam(foreach)':>14} {'ratio':>6}")
    for problem in ("mlp", "conv_train"):
        student, adam = optimizer_step_ms(problem)
        print(f"{problem:<12} {student:>8.3f} {adam:>14.3f} {student / adam:>5.1f}x")


if __name__ == "__main__":
    main()
