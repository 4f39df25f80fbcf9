"""Optimizer step time on 2 CPU cores: GraphOptimizer against torch.optim, in one run.

Prints a table; every ratio compares against a baseline measured in the same run, on the same
model and the same gradients.

    python benchmarks/bench_optimizer.py            # ~1 minute
    python benchmarks/bench_optimizer.py --fast     # smaller budgets, for a smoke run

The model has about 1M parameters in many tensors (a stack of small linear layers with biases
and LayerNorms, 192 tensors), which is the case where per-tensor Python loops hurt and
multi-tensor (foreach) or flat-buffer execution pays. Rows:

* GraphOptimizer("adam") vs ``torch.optim.Adam(foreach=True)`` (target <= 1.3x) and
  ``Adam(fused=True)``;
* GraphOptimizer("sgd"/"momentum"/"nesterov") vs ``torch.optim.SGD(foreach=True)`` with the
  matching momentum settings;
* a discovered genome (opt6, with decay functions) and a decay-free one (a1), against
  Adam(foreach), to show what a genome of the search space costs;
* the same with ``compile=True`` (the genome's arithmetic as one ``torch.compile``d function;
  compilation happens during the warm-up steps and is not timed: it is printed separately).

Timings are medians over repeats of ``steps`` steps each, after warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import nosplug


def many_tensor_model(width: int = 96, blocks: int = 32) -> nn.Module:
    """About 1.2M parameters in 6 tensors per block (two Linear layers and a LayerNorm)."""
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(width, width * 2), nn.LayerNorm(width * 2), nn.Linear(width * 2, width)]
    return nn.Sequential(*layers)


Factory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


def time_steps(make: Factory, steps: int, repeats: int) -> float:
    """Median milliseconds per ``step()`` on fixed random gradients."""
    torch.manual_seed(0)
    model = many_tensor_model()
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    opt = make(params)
    t0 = time.perf_counter()
    for _ in range(5):
        opt.step()
    warmup_s = time.perf_counter() - t0
    if warmup_s > 1.0:
        print(f"  (warm-up incl. compilation: {warmup_s:.1f} s)", flush=True)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        runs.append((time.perf_counter() - t0) / steps * 1e3)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps, repeats = (20, 3) if args.fast else (100, 5)
    model = many_tensor_model()
    n_params = sum(p.numel() for p in model.parameters())
    n_tensors = len(list(model.parameters()))
    print(f"model: {n_params:,} parameters in {n_tensors} tensors; {args.threads} threads")
    print(f"torch {torch.__version__}")

    def graph(name: str, **kw) -> Factory:
        return lambda ps: nosplug.GraphOptimizer(ps, name, lr=1e-3, **kw)

    cases: list[tuple[str, Factory, str, Factory]] = [
        ("adam", graph("adam"), "Adam(foreach=True)", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
        ("adam", graph("adam"), "Adam(fused=True)", lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)),
        (
            "adam",
            graph("adam"),
            "Adam() per-tensor loop",
            lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
        ),
        ("sgd", graph("sgd"), "SGD(foreach=True)", lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=True)),
        (
            "momentum",
            graph("momentum"),
            "SGD(momentum=0.9, foreach=True)",
            lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True),
        ),
        (
            "nesterov",
            graph("nesterov"),
            "SGD(nesterov, foreach=True)",
            lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True, foreach=True),
        ),
        ("a1", graph("a1"), "Adam(foreach=True)", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
        (
            "opt6",
            graph("opt6", total_steps=10_000),
            "Adam(foreach=True)",
            lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        ),
    ]
    # compiled execution: the same genomes with compile=True (compilation happens in warm-up)
    cases += [
        (f"{name}, compile", graph(name, compile=True, **kw), base_name, make_base)
        for name, kw, base_name, make_base in [
            ("adam", {}, "Adam(foreach=True)", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
            ("adam", {}, "Adam(fused=True)", lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)),
            (
                "nesterov",
                {},
                "SGD(nesterov, foreach=True)",
                lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True, foreach=True),
            ),
            (
                "opt6",
                {"total_steps": 10_000},
                "Adam(foreach=True)",
                lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
            ),
        ]
    ]
    rows = []
    for genome, make_graph, base_name, make_base in cases:
        base_ms = time_steps(make_base, steps, repeats)
        graph_ms = time_steps(make_graph, steps, repeats)
        ratio = graph_ms / base_ms
        rows.append((f"GraphOptimizer({genome})", f"{graph_ms:.3f}", base_name, f"{base_ms:.3f}", ratio))
    w = max(len(r[0]) for r in rows)
    b = max(len(r[2]) for r in rows)
    print(f"\n{'optimizer':<{w}}  {'ms/step':>8}  {'baseline':<{b}}  {'ms/step':>8}  ratio")
    for name, ms, base_name, base_ms, ratio in rows:
        print(f"{name:<{w}}  {ms:>8}  {base_name:<{b}}  {base_ms:>8}  {ratio:5.2f}x")
    print("\ntarget: GraphOptimizer(adam) <= 1.3x Adam(foreach=True)")


if __name__ == "__main__":
    main()
