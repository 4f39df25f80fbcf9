"""Exported optimizers (``nosplug genome export``) compute what GraphOptimizer computes, without nosplug.

Equality is checked step for step on a tiny model with four parameter tensors of different shapes
(plus one that never gets a gradient) in two param groups, with the paper's schedule cycling the
learning rate and momentum: every zoo genome in float32 (rtol 1e-5, atol 1e-7) and float64, and
200 random genomes of the paper's space (flips, all momentum types and both Nesterov forms, decays,
stateful ops, dropout with both sides seeded alike) in float64 with rtol 1e-10, atol 1e-12. The
exported code runs the same operations in the same order, so on CPU the results are in fact
bit-identical; the tolerances only leave room for vectorised kernels that round a last bit
differently on flat and per-tensor buffers. Every built-in source form is also checked against its
record's function directly.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import json
import math
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
from genome_helpers import random_genomes

import nosplug
from nosplug import zoo
from nosplug.cli import main
from nosplug.export import ExportError, to_torch_source
from nosplug.export.codegen import fill
from nosplug.genome.model import Genome
from nosplug.genome.space import SearchSpace
from nosplug.hookspecs import hookimpl
from nosplug.optim.program import compile_genome
from nosplug.optim.schedules import WarmupHoldCosine
from nosplug.primitives.base import (
    BinaryOp,
    EMASpec,
    ExecContext,
    Operand,
    OperandContext,
    SourceForm,
    StatefulOp,
    UnaryOp,
)
from nosplug.primitives.registry import registry

ROOT = Path(__file__).resolve().parents[1]
STEPS = 20
RANDOM_GENOMES = 200
#: The export runs GraphOptimizer's own chunks with the same operations: equal bit for bit.
TOL = {torch.float32: {"rtol": 0, "atol": 0}, torch.float64: {"rtol": 0, "atol": 0}}


def load_source(source: str, name: str = "exported_optimizer") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def exported(genome: Genome, **kw) -> tuple[types.ModuleType, type]:
    module = load_source(to_torch_source(genome, **kw))
    (cls_name,) = [n for n in module.__all__ if n not in ("WarmupHoldCosine", "recommended_scheduler")]
    return module, getattr(module, cls_name)


class Tiny(torch.nn.Module):
    """Parameters of shapes (2, 1, 3), (2,), (3, 6), (3,), and (2,) that never gets a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 2, 3)
        self.lin = torch.nn.Linear(6, 3)
        self.unused = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.conv(x)).flatten(1))

    def groups(self) -> list[dict]:
        return [
            {"params": [self.conv.weight, self.conv.bias]},
            {"params": [self.lin.weight, self.lin.bias, self.unused], "lr": 0.004},
        ]


def _pair(dtype: torch.dtype) -> tuple[Tiny, Tiny, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    a = Tiny().to(dtype)
    x, y = torch.randn(16, 1, 5, dtype=dtype), torch.randn(16, 3, dtype=dtype)
    return a, copy.deepcopy(a), x, y


def _train_step(model: Tiny, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    opt.step()


def assert_same_run(
    genome: Genome,
    dtype: torch.dtype,
    *,
    paper_schedule: bool = False,
    total_steps: int = STEPS,
    chunk_size: int | None = None,
) -> tuple[int, bool]:
    """Run GraphOptimizer and the exported class side by side; compare weights and state every step.

    Returns (non-finite skips, whether the weights moved)."""
    module, cls = exported(genome)
    program = compile_genome(genome)
    a, b, x, y = _pair(dtype)
    ref = nosplug.GraphOptimizer(
        a.groups(), genome, lr=0.01, total_steps=total_steps, nonfinite="skip", seed=7, chunk_size=chunk_size
    )
    kw = {"total_steps": total_steps} if program.decays else {}
    kw["chunk_size"] = chunk_size
    if program.stochastic:
        kw["seed"] = 7
    opt = cls(b.groups(), lr=0.01, **kw)
    if paper_schedule:  # the genome's own schedule (zoo genomes with schedule metadata)
        scheds = [zoo.scheduler_for(genome, ref, STEPS), module.recommended_scheduler(opt, STEPS)]
    else:
        scheds = [
            WarmupHoldCosine(ref, STEPS, 3, 2, cycle_momentum=True),
            module.WarmupHoldCosine(opt, STEPS, 3, 2, cycle_momentum=True),
        ]
    w0 = [p.detach().clone() for p in a.parameters()]
    for t in range(STEPS):
        _train_step(a, ref, x, y)
        _train_step(b, opt, x, y)
        for s in scheds:
            if s is not None:
                s.step()
        for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, **TOL[dtype], msg=lambda m, n=name, t=t: f"step {t}, {n}: {m}")
            sa, sb = ref.state.get(pa, {}), opt.state.get(pb, {})
            assert sa.keys() == sb.keys()
            for key in sa:
                if key != "step":
                    torch.testing.assert_close(sb[key], sa[key], **TOL[dtype], equal_nan=True)
        assert opt.nonfinite_steps == ref.nonfinite_steps
    moved = any(not torch.equal(p0, p) for p0, p in zip(w0, a.parameters()))
    return opt.nonfinite_steps, moved


# ----------------------------------------------------------------------------- zoo and random genomes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_genome_matches_graph_optimizer(name: str, dtype: torch.dtype) -> None:
    genome = zoo.load(name)
    assert_same_run(genome, dtype, paper_schedule=bool(genome.meta.get("schedule")))


#: The paper's space as the search draws it, plus sign flips and both Nesterov forms.
RANDOM = random_genomes(RANDOM_GENOMES, 20240410)
CHUNK = 50


@pytest.mark.parametrize("start", range(0, RANDOM_GENOMES, CHUNK))
def test_random_genomes_match_graph_optimizer(start: int) -> None:
    """Bit for bit, with the parameters in one chunk per part (odd blocks) or cut into chunks of
    5 elements (even blocks: dropout then draws per chunk, non-finite updates skip chunks)."""
    live = 0
    chunk_size = 5 if (start // CHUNK) % 2 == 0 else None
    for k, genome in enumerate(RANDOM[start : start + CHUNK], start=start):
        try:
            skips, moved = assert_same_run(genome, torch.float64, total_steps=16, chunk_size=chunk_size)
        except AssertionError as exc:
            raise AssertionError(
                f"random genome #{k}: {genome.formula()}\n{genome.to_json()}\n{exc}"
            ) from None
        live += moved and skips < STEPS
    assert live >= CHUNK * 0.8, "most random genomes should really train, or the check proves little"


def test_the_random_genomes_cover_the_space() -> None:
    reg = registry()
    space = SearchSpace.paper()
    ops, decays, kinds = set(), 0, set()
    for g in RANDOM:
        active = g.active_nodes()
        ops |= {n.unary if n.arity == 1 else n.binary for n in active}
        decays += sum(e.decay is not None for n in active for e in n.inputs)
        kinds.add((g.momentum, g.nesterov if g.momentum == "nesterov" else "", g.flip))
    assert set(space.unary_ops) | set(space.binary_ops) <= ops | {"identity"}
    assert {"ema95", "delta_change", "max_value", "drop0.5", "clip_norm"} <= ops
    assert decays >= 50
    assert {(m, n, f) for m in ("none", "momentum") for n in ("",) for f in (False, True)} <= kinds
    assert {("nesterov", n, f) for n in ("standard", "reference") for f in (False, True)} <= kinds
    assert any(reg.is_stateful(n.unary) for g in RANDOM for n in g.active_nodes() if n.arity == 1)


# ----------------------------------------------------------------------------- source forms themselves
def _env(*sources) -> dict:
    env: dict = {"torch": torch, "math": math}
    for src in sources:
        if src.helpers:
            exec(src.helpers, env)
    return env


SPECIAL = torch.tensor([0.0, -0.0, 1e-8, -3.5, 2.25, 40.0, -40.0, float("nan"), float("inf"), -float("inf")])


def _inputs(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.cat([SPECIAL, torch.randn(23, generator=g) * 3]), torch.randn(3, 4, generator=g)]


def _same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _unary(op: UnaryOp, x: torch.Tensor) -> torch.Tensor:
    """``op`` on one parameter tensor, called as GraphOptimizer calls it (flat, with a context)."""
    if not op.needs_ctx:
        return op.fn(x)
    return op.fn(x.reshape(-1), ExecContext(numel=x.numel())).view_as(x)


def _run_out(src: SourceForm, env: dict, values: dict[str, str], like: torch.Tensor, **bound) -> torch.Tensor:
    """Execute ``src.out`` into a fresh buffer (and a scratch buffer), as the export runs it."""
    out, tmp = torch.full_like(like, 7.0), torch.full_like(like, -7.0)
    exec(fill(src.out, {**values, "out": "out", "tmp": "tmp"}), {**env, **bound, "out": out, "tmp": tmp})
    return out


def _full(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A constant (0-d) as out forms receive it: expanded to the chunk's size."""
    return v.expand_as(like) if v.dim() == 0 else v


def test_every_builtin_op_source_form_equals_its_function() -> None:
    """expr, foreach and out forms (each present one) against the function, exactly; out forms on
    flat tensors as the export runs them, constants expanded."""
    reg = registry()
    xs, ys = _inputs(0), _inputs(1)
    flats = [x.reshape(-1) for x in xs]
    for name in reg.names("unary_ops"):
        op = reg.unary(name)
        src = op.source
        env = _env(src)
        if op.stochastic:  # one draw per flat chunk, GraphOptimizer's stream
            for flat in flats:
                want = op.fn(
                    flat, ExecContext(numel=flat.numel(), generator=torch.Generator().manual_seed(3))
                )
                rng = {"rng": torch.Generator().manual_seed(3)}
                _same(eval(fill(src.expr, {"0": "x", "rng": "rng"}), {**env, "x": flat, **rng}), want)
                rng = {"rng": torch.Generator().manual_seed(3)}
                _same(_run_out(src, env, {"0": "x", "rng": "rng"}, flat, x=flat, **rng), want)
            continue
        for x in xs:
            _same(eval(fill(src.expr, {"0": "x"}), {**env, "x": x}), _unary(op, x))
            if src.out:  # per-tensor ops run on each parameter's slice: here the whole tensor
                _same(_run_out(src, env, {"0": "x"}, x, x=x), _unary(op, x))
        if src.foreach:
            got = eval(fill(src.foreach, {"0": "xs"}), {**env, "xs": xs})
            for g, x in zip(got, xs):
                _same(g, _unary(op, x))
    for name in reg.names("binary_ops"):
        op = reg.binary(name)
        src = op.source
        env = _env(src)
        pairs = [
            *zip(flats, [y.reshape(-1) for y in ys]),
            (flats[0], torch.tensor(1.5)),
            (torch.tensor(-2.0), flats[0]),
            (flats[0][:3], flats[0][:3]),
        ]
        for x, y in pairs:
            want = op.fn(x, y)
            _same(eval(fill(src.expr, {"0": "x", "1": "y"}), {**env, "x": x, "y": y}), want)
            like = x if x.dim() else y
            got = _run_out(src, env, {"0": "x", "1": "y"}, like, x=_full(x, like), y=_full(y, like))
            _same(got, want)
        got = eval(fill(src.foreach, {"0": "xs", "1": "ys"}), {**env, "xs": xs, "ys": ys})
        for g, x, y in zip(got, xs, ys):
            _same(g, op.fn(x, y))


def test_every_builtin_stateful_op_source_form_equals_its_function() -> None:
    reg = registry()
    for name in reg.names("stateful_ops"):
        op = reg.unary(name)
        env = _env(op.source)
        ref_states = [torch.zeros(33), torch.zeros(3, 4)]
        states = [s.clone() for s in ref_states]
        flat_states = [s.clone().reshape(-1) for s in ref_states]
        for step in range(1, 5):
            xs = [x.nan_to_num(0.0, 1e3, -1e3) for x in _inputs(step)]
            want = []
            for x, s in zip(xs, ref_states):  # flat, with a context, as GraphOptimizer calls it
                ctx = ExecContext(numel=x.numel())
                ctx._cache["step"] = step
                want.append(op.fn(x.reshape(-1), s.view(-1), ctx).view_as(x))
            code = fill(op.source.foreach, {"0": "xs", "state": "states", "step": "k"})
            got = eval(code, {**env, "xs": xs, "states": states, "k": step})
            for g, w, s, rs in zip(got, want, states, ref_states):
                _same(g, w)
                _same(s, rs)
            for x, w, fs, rs in zip(xs, want, flat_states, ref_states):  # the out form, flat
                values = {"0": "x", "state": "state", "step": "k"}
                got = _run_out(op.source, env, values, fs, x=x.reshape(-1), state=fs, k=step)
                _same(got, w.reshape(-1))
                _same(fs, rs.reshape(-1))


def test_every_builtin_operand_source_form_equals_its_function() -> None:
    reg = registry()
    refs = [*reg.names("operands"), "ema(power=3, beta=0.5, bias_correction=false)", "grad(power=4)"]
    refs += ["weight(scale=2.0)", "const(value=-0.25)", "aggmo(power=2, beta=0.9)"]
    refs += ["qh(power=3, beta=0.99, nu=0.25)", "sign_ema(power=2, beta=0.9)", "ema(power=2, beta=0.999)"]
    refs += ["qh(power=1, beta=0.9, nu=0.7)", "aggmo(power=3, beta=0.999)", "aggmo(power=1, beta=0.9)"]
    gen = torch.Generator().manual_seed(5)
    for ref in refs:
        op = reg.operand(ref)
        src = op.source
        g, w = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
        emas = {s.key: torch.randn(3, 4, generator=gen) for s in op.requires}
        want = op.compute(OperandContext(g=g, w=w, step=3, emas=emas))
        values = {"g": "g", "w": "w", "step": "3", **{f"ema{i}": f"e{i}" for i in range(len(op.requires))}}
        env = {"torch": torch, "math": math, "g": g, "w": w}
        env.update({f"e{i}": emas[s.key] for i, s in enumerate(op.requires)})
        got = eval(fill(src.expr, values), env)
        if src.scalar:
            assert got == want, ref
            continue
        _same(got, want)
        lists = {k: f"[{v}]" for k, v in values.items() if k != "step"}
        _same(eval(fill(src.foreach, {**lists, "step": "3"}), env)[0], want)
        if src.out:
            _same(_run_out(src, env, values, g), want)
        else:  # the export reads the tensor itself
            assert src.expr.strip() in ("$g", "$w", "$ema0"), ref


def test_every_builtin_schedule_and_decay_op_source_form_equals_its_function() -> None:
    reg = registry()
    total = 37
    t = torch.arange(total, dtype=torch.float64)
    for name in reg.names("schedules"):
        s = reg.schedule(name)
        _same(
            eval(fill(s.source.expr, {"t": "t", "T": "T"}), {**_env(s.source), "t": t, "T": total}),
            s.fn(t, total),
        )
    x, y = torch.linspace(0, 1, 41, dtype=torch.float64), torch.linspace(1, 0, 41, dtype=torch.float64) ** 2
    for name in reg.names("decay_unary_ops"):
        op = reg.decay_unary(name)
        _same(eval(fill(op.source.expr, {"0": "x"}), {**_env(op.source), "x": x}), op.fn(x))
    for name in reg.names("decay_binary_ops"):
        op = reg.decay_binary(name)
        _same(
            eval(fill(op.source.expr, {"0": "x", "1": "y"}), {**_env(op.source), "x": x, "y": y}), op.fn(x, y)
        )


# ----------------------------------------------------------------------------- the module itself
def test_the_module_imports_only_torch_and_math_and_documents_the_genome() -> None:
    genome = zoo.load("opt10")
    source = to_torch_source(genome, provenance={"study": "quick", "rank": 2, "fitness": 0.8123456789})
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported == {"math", "torch"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    doc = ast.get_docstring(tree)
    assert genome.formula() in doc and genome.canonical_hash() in doc
    assert "study: quick" in doc and "rank: 2" in doc and "fitness: 0.812346" in doc
    module = load_source(source)
    assert genome.canonical_hash() == module.GENOME_HASH
    assert "Nesterov" in module.Opt10.__doc__ and "total_steps" in module.Opt10.__doc__
    assert tuple(compile_genome(genome).state_keys()) == module.STATE_KEYS
    with pytest.raises(TypeError, match="total_steps"):  # decays depend on the run length
        module.Opt10([torch.zeros(2, requires_grad=True)])
    assert (
        "total_steps" not in to_torch_source(zoo.load("adam")).split("class Adam", 1)[1].split("def step")[0]
    )


def test_the_exported_schedule_is_the_papers(tmp_path: Path) -> None:
    module = load_source(to_torch_source(zoo.load("opt9")))
    for total, warmup, hold in ((50, 5, 10), (30, 0, 0), (40, 8, 0)):
        p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        ref = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        ours = torch.optim.SGD([q], lr=0.1, momentum=0.9)
        sa = WarmupHoldCosine(ref, total, warmup, hold, cycle_momentum=True)
        sb = module.WarmupHoldCosine(ours, total, warmup, hold, cycle_momentum=True)
        for _ in range(total + 3):
            assert ours.param_groups[0]["lr"] == ref.param_groups[0]["lr"]
            assert ours.param_groups[0]["momentum"] == ref.param_groups[0]["momentum"]
            ref.step()
            ours.step()
            sa.step()
            sb.step()


def test_a_graph_optimizer_state_dict_continues_in_the_exported_class() -> None:
    genome = zoo.load("opt9")  # Nesterov, an EMA slot, a decay function
    _module, cls = exported(genome)
    a, b, x, y = _pair(torch.float32)
    ref = nosplug.GraphOptimizer(a.groups(), genome, total_steps=STEPS)
    for _ in range(5):
        _train_step(a, ref, x, y)
    b.load_state_dict(a.state_dict())
    opt = cls(b.groups(), total_steps=STEPS)
    saved = io.BytesIO()  # as a checkpoint file carries it (GraphOptimizer's state tensors are views)
    torch.save(ref.state_dict(), saved)
    saved.seek(0)
    opt.load_state_dict(torch.load(saved))
    for _ in range(5):
        _train_step(a, ref, x, y)
        _train_step(b, opt, x, y)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, **TOL[torch.float32])
    other = exported(zoo.load("adam"))[1](b.groups())
    with pytest.raises(ValueError, match="saved for genome"):
        other.load_state_dict(opt.state_dict())


def _many_tensor_model() -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(8):
        layers += [torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 16)]
    return torch.nn.Sequential(*layers)


def _allocated_per_step(make, steps: int = 3) -> tuple[float, float, int]:
    """(allocations, bytes) per step of an optimizer on fixed gradients and the largest single
    allocation (the profiler's count of what the CPU allocator handed out; views allocate
    nothing)."""
    from torch.profiler import ProfilerActivity, profile

    params = list(_many_tensor_model().parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opt = make(params)
    opt.step()  # the first step builds state, parts and the workspace
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(steps):
            opt.step()
    sizes = [e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0]
    return len(sizes) / steps, sum(sizes) / steps, max(sizes, default=0)


def _exported_factory(name: str):
    _, cls = exported(zoo.load(name))
    kw = {"total_steps": 100} if "total_steps" in cls.__init__.__code__.co_varnames else {}
    return lambda ps: cls(ps, lr=1e-3, **kw)


def test_an_exported_step_allocates_less_than_torchs_foreach_adam() -> None:
    """Every zoo genome: the exported step allocates (bytes per step) less than
    torch.optim.Adam(foreach=True), which allocates a square-root tensor per parameter each
    step; the workspace is allocated once, so what is left are 0-d values (no allocation holds
    more than a few numbers)."""
    _, adam_bytes, _ = _allocated_per_step(lambda ps: torch.optim.Adam(ps, foreach=True))
    param_bytes = sum(p.numel() * p.element_size() for p in _many_tensor_model().parameters())
    assert adam_bytes >= param_bytes
    for name in zoo.names():
        count, nbytes, largest = _allocated_per_step(_exported_factory(name))
        assert nbytes <= adam_bytes and largest <= 64, (name, count, nbytes, largest)


class _HostReads:
    """Counts reads of tensor values on the host (what waits for an accelerator): item, tolist,
    bool, float and int of tensors with at least one dimension. 0-d reads are left out: the
    optimizers read only constants kept on the CPU that way, never a device value."""

    def __init__(self, monkeypatch) -> None:
        self.n = 0
        for attr in ("item", "tolist", "__bool__", "__float__", "__int__"):
            original = getattr(torch.Tensor, attr)

            def spy(t, *a, _original=original, **kw):
                self.n += t.dim() > 0
                return _original(t, *a, **kw)

            monkeypatch.setattr(torch.Tensor, attr, spy)


@pytest.mark.parametrize("name", zoo.names())
def test_an_exported_step_reads_the_device_once(monkeypatch, name: str) -> None:
    """With the accelerators' guard (here on the CPU): one read of the device per step, whatever
    the number of parts and chunks; results equal to the host guard's."""
    module, cls = exported(zoo.load(name))
    kw = {"total_steps": 100} if "total_steps" in cls.__init__.__code__.co_varnames else {}
    runs = []
    for guard in ("host", "device"):
        monkeypatch.setattr(module, "GUARD", guard)
        model = _many_tensor_model()
        groups = [{"params": list(model.parameters())[:10]}, {"params": list(model.parameters())[10:]}]
        opt = cls(groups, lr=1e-3, chunk_size=500, **kw)
        gen = torch.Generator().manual_seed(0)
        for step in range(4):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=gen)
            if step == 3 and guard == "device":
                reads = _HostReads(monkeypatch)
            opt.step()
        if guard == "device":
            assert reads.n == 1, reads.n
            monkeypatch.undo()
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_a_non_finite_update_is_skipped_and_counted() -> None:
    genome = Genome.from_dict(
        {
            "format": "nosplug-genome",
            "version": 1,
            "momentum": "momentum",
            "nodes": [
                {"id": "out", "arity": 2, "unary": "identity", "binary": "div_exact", "inputs": ["g", "h0"]},
                {
                    "id": "h0",
                    "arity": 1,
                    "unary": "identity",
                    "binary": "add",
                    "inputs": ["const(value=0.0)"],
                },
            ],
        }
    )
    _module, cls = exported(genome, class_name="DivideByZero")
    model, _b, x, y = _pair(torch.float32)
    opt = cls(model.groups(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    _train_step(model, opt, x, y)
    assert opt.last_step_nonfinite and opt.nonfinite_steps == 2  # both groups skipped
    assert all(torch.equal(p0, p) for p0, p in zip(before, model.parameters()))
    assert all(
        torch.equal(s["momentum_buffer"], torch.zeros_like(s["momentum_buffer"])) for s in opt.state.values()
    )


def test_the_lion_plugin_exports_lion_step_for_step() -> None:
    path = ROOT / "plugins" / "nosplug-lion" / "src" / "nosplug_lion" / "__init__.py"
    spec = importlib.util.spec_from_file_location("nosplug_lion_export_test", path)
    lion = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lion)
    nosplug.plugin_manager().register(lion, name="lion")
    for name in ("lion", "lionw"):
        assert_same_run(zoo.load(name), torch.float32)


def _plugin_without_source() -> types.ModuleType:
    plugin = types.ModuleType("cubes")
    plugin.nosplug_unary_ops = hookimpl(lambda: [UnaryOp("cube", lambda x: x**3, "cube($0)", "$0^3")])
    return plugin


CUBE = {
    "format": "nosplug-genome",
    "version": 1,
    "nodes": [{"id": "out", "arity": 1, "unary": "cube", "binary": "add", "inputs": ["g"]}],
}


def test_a_primitive_without_source_form_is_named_in_one_error(tmp_path: Path, capsys) -> None:
    nosplug.plugin_manager().register(_plugin_without_source(), name="cubes")
    with pytest.raises(ExportError, match=r"unary op 'cube' \(plugin 'cubes'\) has no source form"):
        to_torch_source(Genome.from_dict(CUBE))
    (tmp_path / "cube.json").write_text(json.dumps(CUBE))
    out = tmp_path / "cube.py"
    assert main(["genome", "export", str(tmp_path / "cube.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'cube'" in err and "source form" in err
    assert list(tmp_path.iterdir()) == [tmp_path / "cube.json"]


def _acc(x: torch.Tensor, state: torch.Tensor, ctx: ExecContext) -> torch.Tensor:
    state.add_(ctx.full(x, like=state) * 0.5)
    return state * ctx._cache["step"]


_ACC_HELPER = "def _acc(x, state, step):\n    state.add_(x * 0.5)\n    return state * step\n"
_EMA = EMASpec(2, 0.5)


def _expr_only_plugin() -> types.ModuleType:
    """Primitives whose source forms have no foreach form: the export loops over the tensors."""
    plugin = types.ModuleType("expr_only")
    cube = UnaryOp("cubeish", lambda x: x * x * x - x, "c($0)", "c", source=SourceForm("$0 * $0 * $0 - $0"))
    hyp = BinaryOp(
        "hyp", lambda x, y: torch.hypot(x, y), "hyp($0, $1)", "h", source=SourceForm("torch.hypot($0, $1)")
    )
    acc = StatefulOp(
        "acc", _acc, "acc($0)", "a", source=SourceForm("_acc($0, $state, $step)", helpers=_ACC_HELPER)
    )
    gw = Operand(
        "gw",
        lambda c: c.g * c.w + c.ema(_EMA),
        "gw",
        "gw",
        requires=(_EMA,),
        uses_weight=True,
        source=SourceForm("$g * $w + $ema0"),
    )
    plugin.nosplug_unary_ops = hookimpl(lambda: [cube])
    plugin.nosplug_binary_ops = hookimpl(lambda: [hyp])
    plugin.nosplug_stateful_ops = hookimpl(lambda: [acc])
    plugin.nosplug_operands = hookimpl(lambda: [gw])
    return plugin


def _genome(*nodes: tuple[str, str, list[str]], momentum: str = "none", flip: bool = False) -> Genome:
    def node(nid: str, op: str, inputs: list[str]) -> dict:
        unary, binary = (op, "add") if len(inputs) == 1 else ("identity", op)
        return {"id": nid, "arity": len(inputs), "unary": unary, "binary": binary, "inputs": inputs}

    nodes_json = [node(*n) for n in nodes]
    return Genome.from_dict(
        {"format": "nosplug-genome", "version": 1, "momentum": momentum, "flip": flip, "nodes": nodes_json}
    )


def test_expr_only_source_forms_and_constants_in_every_position() -> None:
    nosplug.plugin_manager().register(_expr_only_plugin(), name="expr-only")
    genomes = [
        _genome(("h0", "add", ["one", "two"]), ("out", "exp", ["h0"]), momentum="momentum"),  # a constant U
        _genome(("h0", "hyp", ["g", "two"]), ("out", "hyp", ["two", "h0"])),  # constant and per-tensor args
        _genome(
            ("h0", "acc", ["two"]), ("out", "mul", ["h0", "g"]), momentum="nesterov"
        ),  # state of a constant
        _genome(("h0", "cubeish", ["gw"]), ("out", "tanh", ["h0"])),  # an operand with its own EMA slot
        _genome(
            ("h0", "clip_norm", ["two"]), ("h1", "drop0.3", ["one"]), ("out", "mul", ["h0", "h1"]), flip=True
        ),
    ]
    for genome in genomes:
        for dtype in (torch.float32, torch.float64):
            assert_same_run(genome, dtype)
    source = to_torch_source(genomes[2])
    assert "h0 = _acc(two_d.expand_as(g), node_h0, k)" in source  # a constant, expanded on the device


def test_helpers_may_import_only_torch_and_math_and_may_not_clash() -> None:
    plugin = types.ModuleType("bad_helpers")
    numpy_op = UnaryOp(
        "np_op", torch.neg, "np($0)", "n", source=SourceForm("_neg($0)", helpers="import numpy\n")
    )
    clash = UnaryOp(
        "my_clip",
        torch.neg,
        "mc($0)",
        "m",
        source=SourceForm("_clip_factor($0)", helpers="def _clip_factor(x):\n    return -x\n"),
    )
    plugin.nosplug_unary_ops = hookimpl(lambda: [numpy_op, clash])
    nosplug.plugin_manager().register(plugin, name="bad-helpers")
    with pytest.raises(
        ExportError, match="import numpy; an exported optimizer may import only torch and math"
    ):
        to_torch_source(_genome(("out", "np_op", ["g"])))
    with pytest.raises(ExportError, match="both define '_clip_factor' differently"):
        to_torch_source(_genome(("h0", "my_clip", ["g"]), ("out", "clip_norm", ["h0"])))
    with pytest.raises(ExportError, match="not a Python identifier"):
        to_torch_source(zoo.load("adam"), class_name="WarmupHoldCosine")


# ----------------------------------------------------------------------------- CLI
def test_cli_prints_or_writes_the_module(tmp_path: Path, capsys) -> None:
    assert main(["genome", "export", "opt6", "--format", "torch"]) == 0
    printed = capsys.readouterr().out
    assert printed == to_torch_source(zoo.load("opt6"))
    out = tmp_path / "my_opt.py"
    assert main(["genome", "export", "adam", "--out", str(out), "--class-name", "MyAdam"]) == 0
    assert "class MyAdam(torch.optim.Optimizer)" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_opt.py"]


@pytest.mark.parametrize("where", ["missing/dir/opt.py", "."])
def test_cli_unwritable_out_is_one_error_line_and_leaves_nothing(tmp_path: Path, capsys, where: str) -> None:
    (tmp_path / "keep.txt").write_text("x")
    assert main(["genome", "export", "adam", "--out", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: cannot write")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_cli_study_genome_carries_flip_and_provenance(monkeypatch, capsys) -> None:
    import nosplug.study.kinds as kinds

    flipped = zoo.load("sgd")
    flipped.flip = True
    flipped.meta = {}
    calls = []

    def fake_best(name, storage=None, n=10):
        calls.append((name, storage, n))
        return [(zoo.load("adam"), 0.9), (flipped, 0.875)]

    monkeypatch.setattr(kinds, "best_genomes", fake_best)
    assert main(["genome", "export", "study:quick#2", "--storage", "journal:x.log"]) == 0
    source = capsys.readouterr().out
    assert calls == [("quick", "journal:x.log", 2)]
    assert "class QuickBest2(torch.optim.Optimizer)" in source
    assert "study: quick" in source and "rank: 2" in source and "fitness: 0.875" in source
    assert "scaled = g.mul_(lr) if not chunk.single" in source  # the integrity check's flip: + lr * U
    assert 'direct_sgd(part.params, 1.0 * group["lr"]' in source
    assert main(["genome", "export", "study:quick#3"]) == 2
    assert "no #3" in capsys.readouterr().err
    assert main(["genome", "export", "study:quick#first"]) == 2
    assert "positive integer" in capsys.readouterr().err


# ----------------------------------------------------------------------------- standalone use
def test_generated_files_pass_ruff(tmp_path: Path) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (the [test] extra has it)")
    stochastic = next(g for g in RANDOM if compile_genome(g).stochastic)
    stateful = next(g for g in RANDOM if compile_genome(g).stateful_nodes and compile_genome(g).decays)
    genomes = {"adam": zoo.load("adam"), "opt4": zoo.load("opt4"), "qhm": zoo.load("qhm")}
    genomes |= {"dropout": stochastic, "stateful": stateful}
    for name, g in genomes.items():
        (tmp_path / f"{name}.py").write_text(to_torch_source(g, provenance={"note": "x" * 150}))
    out = subprocess.run(
        [ruff, "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


STANDALONE = """
import io, sys
sys.path[:0] = [{torch_dir!r}, {here!r}]
try:
    import nosplug
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("nosplug is importable: " + nosplug.__file__)
import torch
from exported_opt9 import Opt9, recommended_scheduler

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
x, y = torch.randn(64, 4), torch.randn(64, 1)
opt = Opt9(model.parameters(), lr=0.05, total_steps=40)
sched = recommended_scheduler(opt, total_steps=40)

def train(model, opt, sched, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
    return loss.item()

first = train(model, opt, sched, 20)
saved = io.BytesIO()
torch.save({{"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}}, saved)
saved.seek(0)
ckpt = torch.load(saved)
model2 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
model2.load_state_dict(ckpt["model"])
opt2 = Opt9(model2.parameters(), lr=0.05, total_steps=40)
sched2 = recommended_scheduler(opt2, total_steps=40)  # made before loading: it sets the lr of step 0
opt2.load_state_dict(ckpt["opt"])
sched2.load_state_dict(ckpt["sched"])
last = train(model, opt, sched, 20)
assert train(model2, opt2, sched2, 20) == last
assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters()))
assert last < first, (first, last)
assert "nosplug" not in sys.modules
print("ok", first, last)
"""


def test_the_export_trains_and_resumes_where_nosplug_is_not_importable(tmp_path: Path) -> None:
    (tmp_path / "exported_opt9.py").write_text(to_torch_source(zoo.load("opt9")))
    torch_dir = str(Path(torch.__file__).resolve().parents[1])
    code = STANDALONE.format(torch_dir=torch_dir, here=str(tmp_path))
    # -I: no user site, no PYTHON* variables, no script folder; -S: no site-packages .pth files,
    # so nosplug's editable install hook is not loaded; torch's folder is then added by hand.
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok")


def test_the_architecture_docs_plugin_example_runs_fast_and_exports_bit_identically() -> None:
    """The example of "Adding a primitive with a fast kernel" (docs): its ops run through their
    kernels, its stochastic op draws from the device's generator, and the export equals
    GraphOptimizer step for step."""
    import re

    from nosplug.optim.lowering import Plan
    from nosplug.primitives.registry import Registry

    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### Adding a primitive with a fast kernel", 1)[1]
    plugin = types.ModuleType("doc_plugin")
    exec(re.findall(r"```python\n(.*?)```", section, re.S)[0], plugin.__dict__)
    nosplug.plugin_manager().register(plugin, name="doc-plugin")
    reg = Registry.from_plugin_manager(nosplug.plugin_manager())
    genome = _genome(("h0", "cube", ["v_hat"]), ("h1", "jitter", ["h0"]), ("out", "hypot", ["h1", "g"]))
    plan = Plan(compile_genome(genome, reg))
    outs = [d.kernel.out for d in plan.defs if d.out >= 2]
    assert outs.count("slot") >= 3, outs  # the ema operand, cube and hypot: kernels into buffers
    for dtype in (torch.float32, torch.float64):
        assert_same_run(genome, dtype)
