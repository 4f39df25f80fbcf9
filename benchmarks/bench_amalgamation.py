"""Amalgamation speed on CPU: meta-training inner steps (first and second order) and the trained
student's optimizer step against ``torch.optim.Adam(foreach=True)``.

    python benchmarks/bench_amalgamation.py [--threads 2]     # about two minutes on 2 cores

(a) milliseconds per inner unroll step of meta-training (student + 2 teachers in lockstep, min-max,
    random scaling, the truncation's backward pass amortised over its steps), first-order and
    second-order meta-gradients (``meta.second_order``: the inner gradients are differentiated
    through, ``create_graph=True``, as in the reference, spec §4.2); the reference implementation
    measured 31-52 ms (MLP) and 77 ms (CNN) per inner step on 2 cores (spec §7);
(b) the trained student as a torch optimizer on the MLP problem (15,910 parameters) and the Train
    CNN: the training module's step and the fast inference step
    (:mod:`nosplug.amalgamation.fast`), each against Adam(foreach) on the same model and gradients
    in the same run; target: fast step <= 10x Adam. Where the fast step's time goes is measured
    with the torch profiler (GEMMs against element-wise work).

Progress is printed as it goes; the tables come at the end. Timings need a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_bench.py

from nosplug.amalgamation.fast import FastRNNProp
from nosplug.amalgamation.problems import get_problem, new_instance, problem_data
from nosplug.amalgamation.student import RNNProp, StudentOptimizer
from nosplug.amalgamation.teachers import resolve_teacher
from nosplug.amalgamation.train import MetaConfig, MetaTrainer
from nosplug.primitives.registry import registry

TARGET = 10.0
REFERENCE = {("mlp", 20): 52.0, ("mlp", 100): 31.0, ("conv_train", 100): 77.0}


def progress(text: str) -> None:
    print(f"  ... {text}", flush=True)


def inner_step_ms(problem: str, unroll: int, second_order: bool, repeats: int = 3) -> float:
    cfg = MetaConfig(unroll=unroll, warmup_steps=2, random_scaling=True, second_order=second_order)
    loss = registry().get("amalgamation_losses", "minmax")
    teachers = [resolve_teacher(t) for t in ("adam", "rmsprop")]
    trainer = MetaTrainer(RNNProp(), teachers, loss, cfg, get_problem(problem))
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


def _median_ms(fn, steps: int, rounds: int = 5) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        times.append((time.perf_counter() - t0) * 1000 / steps)
    return statistics.median(times)


def optimizer_step_ms(problem: str, steps: int = 100) -> dict[str, float]:
    """ms per step: Adam(foreach), the student's module step and its fast step (same gradients)."""
    data = problem_data(get_problem(problem).dataset, 0)
    x, y = data.train_x[:128], data.train_y[:128]
    torch.manual_seed(0)
    learned = RNNProp()
    makers = {
        "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "module": lambda ps: StudentOptimizer(ps, learned, warmup=0, fast=False),
        "fast": lambda ps: StudentOptimizer(ps, learned, warmup=0),
    }
    out = {}
    for name, make in makers.items():
        module = new_instance(get_problem(problem), 0).module
        opt = make(list(module.parameters()))
        torch.nn.functional.cross_entropy(module(x), y).backward()
        out[name] = _median_ms(opt.step, steps)  # the same gradients every step: the optimizer alone
    return out


def where_the_time_goes(n: int, steps: int = 50) -> dict[str, float]:
    """Per fast step, ms in GEMMs (addmm) and in everything else, from the torch profiler."""
    from torch.profiler import profile

    fast = FastRNNProp(RNNProp(), n)
    g = torch.randn(n) * 1e-2
    for _ in range(10):
        fast.step(g)
    with profile() as prof:
        for _ in range(steps):
            fast.step(g)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1000 / steps
    gemm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::addmm", "aten::mm")) / 1000 / steps
    act = (
        sum(e.self_cpu_time_total for e in events if e.key in ("aten::sigmoid", "aten::tanh_")) / 1000 / steps
    )
    return {"total": total, "gemm": gemm, "activations": act, "other": total - gemm - act}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fast", action="store_true", help="smoke budgets for CI (run_all.py --fast)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {args.threads} thread(s)", flush=True)
    inner = []
    unrolls = (("mlp", 3),) if args.fast else (("mlp", 20), ("mlp", 100), ("conv_train", 20))
    for problem, unroll in unrolls:
        for second in (False, True):
            progress(f"meta-training {problem}, unroll {unroll}, {'second' if second else 'first'} order")
            inner.append(
                (problem, unroll, second, inner_step_ms(problem, unroll, second, 1 if args.fast else 3))
            )
    steps = {}
    for problem in ("mlp",) if args.fast else ("mlp", "conv_train"):
        progress(f"optimizer steps on {problem}")
        steps[problem] = optimizer_step_ms(problem, 3 if args.fast else 100)
    progress("profiling the fast step on the MLP's 15,910 coordinates")
    split = where_the_time_goes(15_910, 3 if args.fast else 50)

    print("\n(a) meta-training, ms per inner step (student + adam + rmsprop, min-max, random scaling)")
    print(f"{'problem':<12} {'unroll':>6} {'order':>7} {'ms/step':>8} {'reference':>10}")
    for problem, unroll, second, ms in inner:
        ref = REFERENCE.get((problem, unroll))
        print(f"{problem:<12} {unroll:>6} {'second' if second else 'first':>7} {ms:>8.1f} {ref or '-':>10}")
    for problem, unroll in {(p, u) for p, u, _, _ in inner}:
        first = next(ms for p, u, s, ms in inner if (p, u, s) == (problem, unroll, False))
        second = next(ms for p, u, s, ms in inner if (p, u, s) == (problem, unroll, True))
        print(f"  second/first order on {problem}, unroll {unroll}: {second / first:.2f}x")

    print(f"\n(b) optimizer step alone, ms (same model and gradients); target: fast <= {TARGET:g}x Adam")
    print(f"{'problem':<12} {'Adam':>7} {'module':>8} {'ratio':>6} {'fast':>7} {'ratio':>6}  target")
    for problem, t in steps.items():
        ratio = t["fast"] / t["adam"]
        verdict = "met" if ratio <= TARGET else f"missed ({ratio:.1f}x)"
        print(
            f"{problem:<12} {t['adam']:>7.3f} {t['module']:>8.3f} {t['module'] / t['adam']:>5.1f}x "
            f"{t['fast']:>7.3f} {ratio:>5.1f}x  {verdict}"
        )
    print(
        f"\nwhere the fast step's time goes (MLP, profiler, {split['total']:.2f} ms/step): GEMMs "
        f"{split['gemm']:.2f} ms ({100 * split['gemm'] / split['total']:.0f} %), sigmoid/tanh "
        f"{split['activations']:.2f} ms, other element-wise and bookkeeping {split['other']:.2f} ms"
    )
    print(
        "  the GEMMs are 15,910 x 80 gates from 22 (layer 1) and 40 (layer 2) inputs: 79 M multiply-adds "
        "per step, about 80x Adam's arithmetic per parameter"
    )
    _emit(inner, steps, split, args.fast)


def _emit(inner: list, steps: dict, split: dict, fast: bool) -> None:
    """The tables as data for benchmarks/run_all.py (its result-line protocol, benchmarks/_bench.py)."""
    from _bench import emit, table

    meta = [
        [p, str(u), "second" if s else "first", f"{ms:.1f}", str(REFERENCE.get((p, u), "–"))]
        for p, u, s, ms in inner
    ]
    opt = [
        [p, f"{t['adam']:.3f}", f"{t['module']:.3f}", f"{t['module'] / t['adam']:.1f}×", f"{t['fast']:.3f}",
         f"**{t['fast'] / t['adam']:.1f}×**"]
        for p, t in steps.items()
    ]  # fmt: skip
    note = (
        f"Where the fast step's time goes (MLP, profiler, {split['total']:.2f} ms/step): "
        f"GEMMs {split['gemm']:.2f} ms, sigmoid/tanh {split['activations']:.2f} ms, "
        f"other {split['other']:.2f} ms. Target: fast step ≤ {TARGET:g}× Adam(foreach)."
    )
    emit(
        "amalgamation",
        [
            table(
                "amalgamation-meta",
                "(a) meta-training, ms per inner unroll step",
                ["problem", "unroll", "meta-gradient", "ms/step", "reference (ms)"],
                meta,
            ),
            table(
                "amalgamation-step",
                "(b) the trained student as an optimizer, ms per step (same model and gradients)",
                ["problem", "Adam(foreach)", "training module", "ratio", "fast step", "ratio"],
                opt,
                note,
            ),
        ],
        fast,
    )


if __name__ == "__main__":
    main()
