"""The lowered eager step (nosplug.optim.lowering / kernels / executor) against the reference
interpreter (Program.update_value / delta), on the zoo and random genomes of the paper's space.

``exact`` plans must be bit-identical to the reference (the exported optimizer mirrors the
reference, and tests/test_export.py compares at 1e-10 in float64); folded plans equal it up to
rounding. Also: the NaN/inf guarantee of every path of the executor, and the gradient-only
(SGD) path against torch.optim.SGD.
"""

from __future__ import annotations

import copy

import pytest
import torch
from genome_helpers import random_genomes

import nosplug
from nosplug.genome.model import Genome
from nosplug.optim import GraphOptimizer, NonFiniteUpdateError, lowering
from nosplug.optim.lowering import Plan
from nosplug.optim.program import compile_genome
from nosplug.primitives.base import ExecContext


@pytest.fixture(autouse=True)
def _check_buffers(monkeypatch) -> None:
    monkeypatch.setattr(lowering, "CHECK_BUFFERS", True)


SIZES = [6, 3, 18, 3]  # four "parameters": per-tensor ops (clip_norm) see four segments
STEPS = 12


def _genomes(n: int, seed: int) -> list[Genome]:
    return [nosplug.zoo.load(name) for name in nosplug.zoo.names()] + random_genomes(n, seed)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (so -0.0 differs from 0.0); any NaN equals any NaN (the sign of a NaN
    depends on whether it was negated or multiplied by -1)."""
    if a.shape != b.shape or not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    bits = torch.int64 if a.dtype == torch.float64 else torch.int32
    a, b = torch.where(torch.isnan(a), 0.0, a), torch.where(torch.isnan(b), 0.0, b)
    return bool((a.reshape(-1).view(bits) == b.reshape(-1).view(bits)).all())


def _run_both(genome: Genome, dtype: torch.dtype, exact: bool) -> tuple[float, bool]:
    """Reference and plan side by side on changing gradients; (worst relative difference of U,
    whether every U and state tensor was bit-identical)."""
    program = compile_genome(genome)
    plan = Plan(program, exact=exact)
    n = sum(SIZES)
    seg = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    slots = [torch.empty(n, dtype=dtype) for _ in range(plan.n_slots)]
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, dtype=dtype, generator=gen)
    ref_state, state = program.init_state(w), program.init_state(w)
    worst, identical = 0.0, True
    for t in range(STEPS):
        g = torch.randn(n, dtype=dtype, generator=gen) * (3.0 if t % 4 == 0 else 0.05)
        # per-tensor sums by segment sizes (GraphOptimizer's chunks) or ids (the integrity checks')
        kw = {"segment_sizes": tuple(SIZES)} if t % 2 else {"segment_ids": seg, "num_segments": len(SIZES)}
        ctxs = [
            ExecContext(n, generator=torch.Generator().manual_seed(t), **kw),
            ExecContext(n, generator=torch.Generator().manual_seed(t), **kw),
        ]
        decays = program.decay_values(t, STEPS) if program.decays else []
        u_ref = program.update_value(ref_state, w, g, step=t, total_steps=STEPS, ctx=ctxs[0]).expand(n)
        tensor, scale = plan.run(slots, state, w, g, step=t, decays=decays, ctx=ctxs[1])
        u = torch.full((n,), scale, dtype=dtype) if tensor is None else tensor * scale
        if tensor is not None and scale == 1.0:
            u = tensor
        identical &= _same(u, u_ref.contiguous()) and all(_same(state[k], ref_state[k]) for k in ref_state)
        both = torch.isfinite(u) & torch.isfinite(u_ref)
        assert torch.equal(torch.isnan(u), torch.isnan(u_ref)) or not exact
        if both.any():
            rel = ((u - u_ref).abs() / u_ref.abs().clamp_min(1e-30))[both].max().item()
            worst = max(worst, rel)
    return worst, identical


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_exact_plans_are_bit_identical_to_the_reference(dtype: torch.dtype) -> None:
    for k, genome in enumerate(_genomes(150, 7)):
        _, identical = _run_both(genome, dtype, exact=True)
        assert identical, f"genome #{k}: {genome.formula()}"


def test_folded_plans_equal_the_reference_up_to_rounding() -> None:
    bad = []
    for k, genome in enumerate(_genomes(150, 8)):
        worst, _ = _run_both(genome, torch.float64, exact=False)
        if worst > 1e-9:
            bad.append((k, genome.formula(), worst))
    # cancellations can amplify a last-bit difference; they must stay rare
    assert len(bad) <= 2, bad


def test_folding_saves_passes_and_exact_plans_reuse_buffers() -> None:
    adam = compile_genome(nosplug.zoo.load("adam"))
    exact, folded = Plan(adam, exact=True), Plan(adam, exact=False)
    assert len([d for d in folded.defs if d.kernel.out == "slot"]) < len(
        [d for d in exact.defs if d.kernel.out == "slot"]
    )
    assert exact.n_slots <= 3 and folded.n_slots <= 2, (exact.n_slots, folded.n_slots)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "opt6"])
def test_a_nonfinite_update_never_reaches_the_weights(name: str, exact: bool) -> None:
    model = _model()
    before = copy.deepcopy(model)
    opt = GraphOptimizer(model.parameters(), name, lr=0.1, total_steps=10, nonfinite="skip", exact=exact)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()  # a finite step, so the momentum buffer holds something
    moved = copy.deepcopy(model)
    buffers = {k: v.clone() for k, v in opt.state[model[0].weight].items() if k == "momentum_buffer"}
    for bad in (float("nan"), float("inf")):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        model[2].bias.grad[1] = bad
        opt.step()
        assert opt.last_step_nonfinite
        for a, b in zip(model.parameters(), moved.parameters()):
            assert torch.equal(a, b)
        for k, v in buffers.items():
            assert torch.equal(opt.state[model[0].weight][k], v)
    assert opt.nonfinite_steps == 2
    raising = GraphOptimizer(before.parameters(), name, lr=0.1, total_steps=10, exact=exact)
    with pytest.raises(NonFiniteUpdateError):
        for p in before.parameters():
            p.grad = torch.full_like(p, float("nan"))
        raising.step()


@pytest.mark.parametrize("exact", [True, False])
def test_an_update_that_overflows_is_caught_though_u_is_finite(exact: bool) -> None:
    """U finite but lr * U beyond float32's range: the norm bound must not let it through."""
    model = _model()
    before = copy.deepcopy(model)
    opt = GraphOptimizer(model.parameters(), "sgd", lr=1e10, nonfinite="skip", exact=exact)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e30)
    opt.step()
    assert opt.last_step_nonfinite
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters()))


def test_gradient_only_genomes_step_like_torch_sgd_and_leave_gradients_alone() -> None:
    ours, ref = _model(), _model()
    opt = GraphOptimizer(ours.parameters(), "sgd", lr=0.05)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, foreach=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        grads = [torch.randn(p.shape, generator=gen) for p in ours.parameters()]
        for p, q, g in zip(ours.parameters(), ref.parameters(), grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref_opt.step()
        for p, g in zip(ours.parameters(), grads):
            assert torch.equal(p.grad, g)
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(p, q)  # the same single multiply-add as torch's foreach SGD


def test_momentum_state_views_follow_the_swapped_buffer() -> None:
    model = _model()
    opt = GraphOptimizer(model.parameters(), "momentum", lr=0.1)
    ref = compile_genome(nosplug.zoo.load("momentum"))
    params = list(model.parameters())
    buf = torch.zeros(sum(p.numel() for p in params))
    for step in range(3):
        for p in params:
            p.grad = torch.full_like(p, float(step + 1))
        g = torch.cat([p.grad.reshape(-1) for p in params])
        state = {"momentum_buffer": buf}
        ref.delta(state, g, g, step=step, lr=0.1, momentum=0.9)
        opt.step()
        live = torch.cat([opt.state[p]["momentum_buffer"].reshape(-1) for p in params])
        assert torch.equal(live, buf)
        sd = opt.state_dict()
        assert torch.equal(sd["state"][0]["momentum_buffer"], opt.state[params[0]]["momentum_buffer"])


# ----------------------------------------------------------------------------- plugins' fast kernels
def _kernel_plugin(calls: dict[str, int]):
    """A plugin with a cube op that has a fast kernel, one that has none, and a binary op with a
    kernel: each counts how it was run."""
    import types

    from nosplug.hookspecs import hookimpl
    from nosplug.primitives import BinaryOp, UnaryOp
    from nosplug.primitives.kernel import binary_out, unary_out

    def count(key: str, result):
        calls[key] = calls.get(key, 0) + 1
        return result

    def cube_form(x, out, temps):
        count("cube_fast kernel", None)
        torch.mul(x, x, out=temps[0])
        torch.mul(temps[0], x, out=out)

    def hypot_form(x, y, out, temps):
        count("hypot kernel", None)
        torch.hypot(x, y, out=out)

    mod = types.ModuleType("kernel_plugin")

    @hookimpl
    def nosplug_unary_ops():
        tags = frozenset({"mine"})
        return [
            UnaryOp(
                "cube_fast",
                lambda x: count("cube_fast fn", x * x * x),
                "($0)^3",
                "($0)^3",
                tags=tags,
                kernel=unary_out(cube_form, temps=1),
            ),
            UnaryOp("cube_slow", lambda x: count("cube_slow fn", x * x * x), "($0)^3", "($0)^3", tags=tags),
        ]

    @hookimpl
    def nosplug_binary_ops():
        return [
            BinaryOp(
                "hypot",
                lambda x, y: count("hypot fn", torch.hypot(torch.as_tensor(x), torch.as_tensor(y))),
                "hypot($0, $1)",
                "\\operatorname{hypot}($0, $1)",
                tags=frozenset({"mine"}),
                kernel=binary_out(hypot_form),
            )
        ]

    mod.nosplug_unary_ops = nosplug_unary_ops
    mod.nosplug_binary_ops = nosplug_binary_ops
    return mod


def test_a_plugin_op_with_a_kernel_runs_through_it_and_one_without_through_its_function() -> None:
    """U = hypot(cube_fast(g), cube_slow(v_hat)): the lowered plan runs the plugin's kernels
    (allocation-free, into the plan's buffers) and the function of the op that has none; both
    bit-identical to the reference interpreter."""
    from nosplug.primitives.registry import Registry

    calls: dict[str, int] = {}
    pm = nosplug.plugin_manager()
    pm.register(_kernel_plugin(calls), name="kernel_plugin")
    reg = Registry.from_plugin_manager(pm)
    node = {"arity": 1, "unary": "identity", "binary": "add"}
    genome = Genome.from_dict(
        {
            "format": "nosplug-genome",
            "version": 1,
            "nodes": [
                {**node, "id": "h0", "unary": "cube_fast", "inputs": ["g"]},
                {**node, "id": "h1", "unary": "cube_slow", "inputs": ["v_hat"]},
                {**node, "id": "out", "arity": 2, "binary": "hypot", "inputs": ["h0", "h1"]},
            ],
        },
        reg,
    )
    program = compile_genome(genome, reg)
    plan = Plan(program)
    kinds = {d.kernel.run.__qualname__.split(".")[0]: d.kernel.out for d in plan.defs if d.out >= 2}
    assert kinds["unary_out"] == "slot" and kinds["binary_out"] == "slot"  # the plugin's kernels
    assert kinds["_generic_unary"] == "new"  # cube_slow: its function
    n = 11
    slots = [torch.empty(n, dtype=torch.float64) for _ in range(plan.n_slots)]
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(n, dtype=torch.float64, generator=gen)
    ref_state, state = program.init_state(w), program.init_state(w)
    for t in range(4):
        g = torch.randn(n, dtype=torch.float64, generator=gen)
        calls.clear()
        u, s = plan.run(slots, state, w, g, step=t, decays=[], ctx=ExecContext(n))
        assert calls == {"cube_fast kernel": 1, "cube_slow fn": 1, "hypot kernel": 1}, calls
        assert s == 1.0 and any(u is slot for slot in slots)
        ref = program.update_value(ref_state, w, g, step=t, ctx=ExecContext(n))
        assert _same(u, ref)
    model = _model()
    opt = GraphOptimizer(model.parameters(), genome, lr=0.01, registry=reg)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    calls.clear()
    opt.step()
    assert calls == {"cube_fast kernel": 1, "cube_slow fn": 1, "hypot kernel": 1}, calls
