"""Check every accelerator: against the CPU, a whole small search on it, and the optimizer's cost.

    python benchmarks/device_check.py [--threads N] [--only a,b,c,d,e]

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
only float rounding can differ.

Then, on each accelerator:

(d) a whole small search through the ``nosplug`` CLI (a subprocess per command, so what runs is
    what a user runs): ``study create`` of a tiny config (digits, smoke budgets, random genomes of
    the paper's space with every stochastic primitive in the space, the initial population swept
    batched and the evolution sequentially, elimination and the verdict configured), ``study run
    --device D`` (the search and its verdict), ``study eliminate --device D``, ``study export``
    (parquet), and ``genome export study:NAME`` of the best genome, which is then trained on the
    device next to GraphOptimizer. The whole search runs twice on fresh storages: it must give the
    same genomes and decisions (status, gate, chosen rate, fitness) both times; no evaluation may
    crash, stochastic genomes must have been trained, and the exported module must equal
    GraphOptimizer step for step.
(e) the optimizer's step time and memory on the device, for a model of many small tensors (192
    tensors, 2.4M parameters) and one of 226.7M parameters (12 blocks of Linear 1536->6144,
    LayerNorm, Linear 6144->1536): torch's Adam (fused, foreach) and SGD against GraphOptimizer
    (eager, ``exact=False``, ``compile=True``) and the exported module, best of 5 x 20 steps with
    the device synchronised, memory allocated after 4 steps minus before, and the bound the
    device's memory bandwidth sets (the bytes the update must move / the copy bandwidth measured
    here). Targets from issue 21 are marked met or missed; they do not change the exit status.

On a machine without an accelerator the script says so, runs the CPU side of (a)-(c) once and
(d) once on the CPU (so the script itself stays exercised), skips (e)'s large model, and exits 0.
Exit status 1 when an accelerator result is outside its tolerance or (d) fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


# ----------------------------------------------------------------------------- (d) a search
SEARCH_CONFIG = """\
version = 1
[study]
name = "{name}"
seed = 3
[data]
dataset = "digits"
[space]
unary_ops = {unary_ops}
[ga]
initial_population = 10
particles = 2
timesteps = 1
mutations = 2
tries = 2
[evaluation.init]
preset = "smoke"
surrogate_options = {{ base = 4 }}
sweep_mode = "batched"
[evaluation.evolution]
preset = "smoke"
surrogate_options = {{ base = 4 }}
sweep_mode = "sequential"
[workers]
threads = 1
[elimination]
top = 2
repeats = 1
stages = [ {{ name = "b6", keep = 1, lr = "search", preset = "smoke", surrogate_options = {{ base = 6 }} }} ]
[validate]
top = 1
tuning_trials = 2
seeds = 2
"""


def _space_unary_ops() -> list[str]:
    """The paper's unary ops with every registered stochastic op among them (dropout and any
    plugin's), so that random genomes draw stochastic nodes often."""
    from nosplug.genome.space import SearchSpace
    from nosplug.primitives.registry import registry

    reg = registry()
    stochastic = [n for n in reg.names("unary_ops") if getattr(reg.unary(n), "stochastic", False)]
    paper = list(SearchSpace.paper().unary_ops)
    return sorted(set(paper) | set(stochastic)) + stochastic * 3  # stochastic ones weighted x4


def _cli(args: list[str], storage: str, timeout: float = 1800) -> str:
    """One ``nosplug`` command in a subprocess (this interpreter, this checkout); its stdout."""
    cmd = [sys.executable, "-m", "nosplug", *args, "--storage", storage]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(
            f"`nosplug {' '.join(args)}` failed ({out.returncode}): {out.stderr.strip()[-2000:]}"
        )
    return out.stdout


def _trials(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _decisions(rows: list[dict]) -> list[tuple]:
    """What must be equal on a rerun: per evaluation key its genome, outcome and numbers."""
    keep = ("key", "canonical_hash", "status", "reason", "eval_stage", "chosen_lr", "fitness", "flip")
    return sorted(
        tuple(round(r[k], 12) if isinstance(r.get(k), float) else r.get(k) for k in keep)
        for r in rows
        if not r.get("abandoned")
    )


def _stochastic(genome_json: str | None) -> bool:
    from nosplug.genome.model import Genome
    from nosplug.optim.program import compile_genome

    if not genome_json:
        return False
    try:
        return compile_genome(Genome.from_json(genome_json)).stochastic
    except Exception:
        return False


def search_once(device: torch.device, work: Path, name: str) -> dict:
    """The whole small search on ``device`` in ``work``; what it produced."""
    storage = f"journal:{work / 'journal.log'}"
    config = work / f"{name}.toml"
    config.write_text(SEARCH_CONFIG.format(name=name, unary_ops=json.dumps(_space_unary_ops())))
    dev = str(device)
    t0 = time.perf_counter()
    _cli(["study", "create", str(config)], storage)
    _cli(["study", "run", name, "--device", dev, "--quiet"], storage)
    _cli(["study", "eliminate", name, "--device", dev, "--quiet"], storage)
    seconds = time.perf_counter() - t0
    _cli(["study", "export", name, "--out", str(work / "search.parquet")], storage)
    _cli(["study", "export", f"{name}.elimination", "--out", str(work / "elimination.parquet")], storage)
    module = work / "best_optimizer.py"
    _cli(["genome", "export", f"study:{name}", "--format", "torch", "--out", str(module)], storage)
    best = json.loads(_cli(["study", "best", name, "-n", "1", "--json"], storage).splitlines()[0])
    return {
        "seconds": seconds,
        "search": _trials(work / "search.parquet"),
        "elimination": _trials(work / "elimination.parquet"),
        "best": best,
        "module": module.read_text(),
    }


def _run_export_on(source: str, genome: dict, device: torch.device, steps: int = 10) -> float:
    """Train a small model on ``device`` with the exported optimizer and, beside it, with
    GraphOptimizer on the same genome, seed and chunks; the largest difference of the weights (inf
    if the exported run left finite numbers)."""
    import copy

    import nosplug

    module = types.ModuleType("exported_best")
    exec(compile(source, "exported_best", "exec"), module.__dict__)
    (cls_name,) = [n for n in module.__all__ if n not in ("WarmupHoldCosine", "recommended_scheduler")]
    cls = getattr(module, cls_name)
    kw = {}
    if "total_steps" in cls.__init__.__code__.co_varnames:
        kw["total_steps"] = 100
    if "seed" in cls.__init__.__code__.co_varnames:
        kw["seed"] = 5
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.Tanh(), torch.nn.Linear(24, 3)).to(device)
    b = copy.deepcopy(a)
    ref = nosplug.GraphOptimizer(
        a.parameters(), nosplug.Genome.from_dict(genome), lr=1e-2, total_steps=100, seed=5, nonfinite="skip"
    )
    ours = cls(b.parameters(), lr=1e-2, **kw)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 12, generator=gen).to(device), torch.randn(32, 3, generator=gen).to(device)
    worst = 0.0
    for _ in range(steps):
        for model, opt in ((a, ref), (b, ours)):
            opt.zero_grad()
            ((model(x) - y) ** 2).mean().backward()
            opt.step()
        with torch.no_grad():
            for p, q in zip(a.parameters(), b.parameters()):
                if not torch.equal(torch.isnan(p), torch.isnan(q)):
                    return math.inf
                worst = max(worst, float((p - q).abs().nan_to_num(0.0, math.inf, math.inf).max()))
    return worst


def search_check(device: torch.device, twice: bool) -> tuple[list[str], list[str]]:
    """(d) on ``device``: (lines to print, problems)."""
    lines: list[str] = []
    problems: list[str] = []
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2 if twice else 1):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            try:
                runs.append(search_once(device, work, "devicecheck"))
            except Exception as exc:  # reported as the check's result
                problems.append(f"run {i + 1}: {type(exc).__name__}: {exc}")
                return lines, problems
    first = runs[0]
    rows = first["search"]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    stochastic = [r for r in rows if _stochastic(r.get("genome_json"))]
    trained = [r for r in stochastic if r.get("eval_stage") in ("sweep", "final")]
    stages = sorted({r["stage"] for r in rows})
    lines.append(
        f"search: {len(rows)} evaluations in stages {', '.join(stages)} ({first['seconds']:.1f} s with "
        f"elimination and verdict); statuses " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    lines.append(
        f"stochastic genomes: {len(stochastic)} evaluated, {len(trained)} trained past the integrity check"
    )
    verdict = (first["best"].get("verdict") or {}).get("outcome")
    lines.append(
        f"elimination: {len(first['elimination'])} evaluations; verdict on the best genome: {verdict}"
    )
    if statuses.get("crashed"):
        bad = next(r for r in rows if r["status"] == "crashed")
        problems.append(f"{statuses['crashed']} evaluation(s) crashed, e.g. {bad['key']}: {bad.get('error')}")
    if not stochastic:
        problems.append("no genome with a stochastic op was evaluated")
    if not first["elimination"]:
        problems.append("the elimination trained nothing")
    if verdict is None:
        problems.append("no verdict on the best genome")
    if twice:
        same = _decisions(runs[0]["search"]) == _decisions(runs[1]["search"])
        same_elim = _decisions(runs[0]["elimination"]) == _decisions(runs[1]["elimination"])
        lines.append(f"rerun on {device}: same genomes and decisions: search {same}, elimination {same_elim}")
        if not (same and same_elim):
            problems.append("a rerun of the same search on the same device decided differently")
    worst = _run_export_on(first["module"], first["best"]["genome"], device)
    lines.append(
        f"exported best genome ({first['best']['formula']}), 10 steps on {device}: "
        f"largest difference to GraphOptimizer {worst:.3g}"
    )
    if worst != 0.0:
        problems.append(f"the exported optimizer differs from GraphOptimizer by {worst:.3g} on {device}")
    return lines, problems


# ----------------------------------------------------------------------------- (e) the optimizer's cost
def blocks_model(width: int, hidden: int, blocks: int) -> torch.nn.Module:
    layers: list[torch.nn.Module] = []
    for _ in range(blocks):
        layers += [torch.nn.Linear(width, hidden), torch.nn.LayerNorm(hidden), torch.nn.Linear(hidden, width)]
    return torch.nn.Sequential(*layers)


#: name -> (constructor of the model, what it is)
MODELS = {
    "small": (lambda: blocks_model(96, 384, 32), "192 tensors, 2.4M parameters"),
    "large": (lambda: blocks_model(1536, 6144, 12), "226.7M parameters, 12 blocks 1536-6144-1536"),
}


def _exported_class(name: str):
    import nosplug
    from nosplug.export import to_torch_source

    module = types.ModuleType(f"exported_{name}")
    exec(compile(to_torch_source(nosplug.zoo.load(name)), module.__name__, "exec"), module.__dict__)
    (cls_name,) = [n for n in module.__all__ if n not in ("WarmupHoldCosine", "recommended_scheduler")]
    return getattr(module, cls_name)


def _graph(name: str, **kw):
    import nosplug

    return lambda ps: nosplug.GraphOptimizer(ps, name, lr=1e-3, total_steps=10_000, **kw)


def _exported(name: str):
    def make(ps):
        cls = _exported_class(name)
        kw = {"total_steps": 10_000} if "total_steps" in cls.__init__.__code__.co_varnames else {}
        return cls(ps, lr=1e-3, **kw)

    return make


#: (label, factory, bytes moved per parameter element per step at the least (HBM bound))
OPTIMIZERS: list[tuple[str, Callable, int]] = [
    ("torch Adam(fused)", lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True), 7),
    ("torch Adam(foreach)", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True), 7),
    ("torch SGD(foreach)", lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=True), 3),
    ("GraphOptimizer(adam)", _graph("adam"), 7),
    ("GraphOptimizer(adam, exact=False)", _graph("adam", exact=False), 7),
    ("GraphOptimizer(adam, compile=True)", _graph("adam", compile=True), 7),
    ("GraphOptimizer(opt6)", _graph("opt6"), 7),
    ("GraphOptimizer(opt6, compile=True)", _graph("opt6", compile=True), 7),
    ("GraphOptimizer(sgd)", _graph("sgd"), 3),
    ("exported adam", _exported("adam"), 7),
    ("exported opt6", _exported("opt6"), 7),
    ("exported sgd", _exported("sgd"), 3),
]


def _bandwidth(device: torch.device) -> float:
    """Bytes per second of a large device-to-device copy (read + write), best of 5."""
    n = 2**28 if device.type != "cpu" else 2**24
    a, b = torch.empty(n, device=device), torch.empty(n, device=device)
    best = math.inf
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        b.copy_(a)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    del a, b
    return 2 * 4 * n / best


def _allocated(device: torch.device) -> int | None:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None


def measure(make: Callable, model_name: str, device: torch.device, repeats: int, steps: int) -> dict:
    """ms per step (best of ``repeats`` x ``steps``), the memory it added after 4 steps, held bytes."""
    from nosplug.optim.memory import held_bytes

    torch.manual_seed(0)
    model = MODELS[model_name][0]().to(device)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn_like(p) * 1e-2
    _sync(device)
    before = _allocated(device)
    opt = make(params)
    for _ in range(4):  # state, workspace, compilation
        opt.step()
    _sync(device)
    added = None if before is None else _allocated(device) - before
    held = held_bytes(opt)
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            opt.step()
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / steps)
    n = sum(p.numel() for p in params)
    del opt, model, params
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"ms": best * 1e3, "added": added, "held": held, "numel": n}


#: (row, baseline row, model or None for both, target ratio, what it compares)
TARGETS = [
    ("GraphOptimizer(adam)", "torch Adam(fused)", "large", 1.3, "time"),
    ("GraphOptimizer(adam, compile=True)", "torch Adam(fused)", "large", 1.1, "time"),
    ("GraphOptimizer(opt6, compile=True)", "torch Adam(fused)", "large", 1.3, "time"),
    ("GraphOptimizer(adam)", "torch Adam(foreach)", "small", 1.0, "time"),
    ("exported adam", "GraphOptimizer(adam)", None, 1.2, "time"),
    ("exported opt6", "GraphOptimizer(opt6)", None, 1.2, "time"),
    ("exported sgd", "GraphOptimizer(sgd)", None, 1.2, "time"),
    ("GraphOptimizer(adam)", "torch Adam(foreach)", "large", 1.1, "memory"),
]


def cost_table(
    device: torch.device, models: list[str], repeats: int = 5, steps: int = 20, compile: bool = True
) -> list[str]:
    """(e): the table's lines (``compile``: with the ``compile=True`` rows)."""
    bandwidth = _bandwidth(device)
    lines = [f"copy bandwidth on {device}: {bandwidth / 1e9:.0f} GB/s"]
    results: dict[tuple[str, str], dict] = {}
    for model_name in models:
        lines.append(f"model {model_name}: {MODELS[model_name][1]}")
        lines.append(f"  {'optimizer':<36} {'ms/step':>9} {'HBM bound':>10} {'added MB':>9} {'held MB':>9}")
        for label, make, per_element in OPTIMIZERS:
            if "compile=True" in label and not compile:
                continue
            _say(f"  {model_name}: {label} ...")
            try:
                r = measure(make, model_name, device, repeats, steps)
            except Exception as exc:  # a row that cannot run is reported
                lines.append(f"  {label:<36} failed: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            results[(model_name, label)] = r
            bound = per_element * 4 * r["numel"] / bandwidth * 1e3
            added = "-" if r["added"] is None else f"{r['added'] / 2**20:.0f}"
            lines.append(f"  {label:<36} {r['ms']:>9.3f} {bound:>10.3f} {added:>9} {r['held'] / 2**20:>9.1f}")
    lines.append("targets (issue 21):")
    for row, base, model_name, target, what in TARGETS:
        for m in [model_name] if model_name else models:
            a, b = results.get((m, row)), results.get((m, base))
            if a is None or b is None:
                continue
            if what == "time":
                ratio = a["ms"] / b["ms"]
            else:
                ratio = (a["added"] if a["added"] is not None else a["held"]) / max(
                    1, b["added"] if b["added"] is not None else b["held"]
                )
            verdict = "met" if ratio <= target else "MISSED"
            lines.append(f"  {m}: {row} / {base} ({what}) = {ratio:.2f}, target <= {target:g}: {verdict}")
    return lines


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
    parser.add_argument("--only", default="a,b,c,d,e", help="Which checks to run (default: a,b,c,d,e).")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
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
    for letter, (name, check) in zip("abc", CHECKS.items()):
        if letter not in only:
            continue
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
    if "d" in only:
        _say("(d) a whole small search through the CLI (search, verdict, elimination, export of the best)")
        for dev in devices or [cpu]:
            _say(f"  {dev}: {'two runs' if devices else 'one run'} ...")
            lines, problems = search_check(dev, twice=bool(devices))
            for line in lines:
                _say(f"  {dev}: {line}")
            for p in problems:
                _say(f"    {p}")
            _say(f"  {dev}: {'ok' if not problems else 'FAILED'}")
            failures += bool(problems)
    if "e" in only:
        _say("(e) optimizer step time and memory (best of 5 x 20 steps, synchronised)")
        for dev in devices:
            for line in cost_table(dev, ["small", "large"]):
                _say(f"  {line}")
        if not devices:  # the machinery on the CPU, small model, short budget
            for line in cost_table(cpu, ["small"], repeats=2, steps=3, compile=False):
                _say(f"  {line}")
    if not devices:
        _say("done: the CPU side ran; no accelerator present, so nothing was compared")
        return 1 if failures else 0
    _say("done: every accelerator agrees with the CPU" if not failures else f"done: {failures} mismatch(es)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
