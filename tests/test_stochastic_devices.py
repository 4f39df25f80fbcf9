"""Every random draw of a stochastic primitive comes from a generator on the tensor's own device,
seeded from the evaluation's seed, on every path that executes genomes.

A fake plugin op (``noisy``) asserts, each time it runs, that the generator nosplug hands it lives
on its input's device; the paths run on the CPU and on every accelerator present (on a machine
without one the CPU side still checks the plumbing, and :func:`generator_on` is checked with a
stand-in generator of another device).
"""

from __future__ import annotations

import types

import pytest
import torch

import nosplug
from nosplug.evaluation.batched import BatchedProgramOptimizer
from nosplug.evaluation.integrity import integrity_check, integrity_check_batch
from nosplug.genome.model import Genome
from nosplug.hookspecs import hookimpl
from nosplug.optim.program import compile_genome
from nosplug.primitives.base import ExecContext, UnaryOp, generator_on
from nosplug.primitives.registry import Registry
from nosplug.tasks.devices import accelerators

DEVICES = [torch.device("cpu"), *accelerators()]


def _noisy_plugin(seen: list[tuple[torch.device, torch.device]]):
    """``noisy(x) = x * (1 + 0.1 (u - 0.5))`` with u uniform, drawn from ``ctx.rng(x)``."""

    def batched(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + 0.1 * (u - 0.5))

    def fn(x: torch.Tensor, ctx: ExecContext) -> torch.Tensor:
        x = ctx.full(x, like=x)
        gen = ctx.rng(x)
        assert gen is not None, "seeded paths hand the op a generator"
        assert gen.device.type == x.device.type, (gen.device, x.device)
        given = ctx.generator
        assert given is None or given.device.type == x.device.type, "the path made it on the data's device"
        seen.append((gen.device, x.device))
        u = torch.rand(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        return batched(x, u)

    mod = types.ModuleType("noisy_plugin")

    @hookimpl
    def nosplug_unary_ops():
        return [
            UnaryOp(
                "noisy",
                fn,
                "noisy($0)",
                "\\operatorname{noisy}($0)",
                tags=frozenset({"mine"}),
                needs_ctx=True,
                stochastic=True,
                batched=batched,
            )
        ]

    mod.nosplug_unary_ops = nosplug_unary_ops
    return mod


@pytest.fixture
def noisy() -> tuple[Registry, Genome, list]:
    seen: list = []
    pm = nosplug.plugin_manager()
    pm.register(_noisy_plugin(seen), name="noisy_plugin")
    reg = Registry.from_plugin_manager(pm)
    node = {"arity": 1, "unary": "identity", "binary": "add"}
    genome = Genome.from_dict(
        {
            "format": "nosplug-genome",
            "version": 1,
            "nodes": [
                {**node, "id": "h0", "unary": "noisy", "inputs": ["v_hat"]},
                {**node, "id": "h1", "unary": "drop0.3", "inputs": ["h0"]},
                {**node, "id": "out", "arity": 2, "binary": "div", "inputs": ["h1", "s_hat"]},
            ],
        },
        reg,
    )
    return reg, genome, seen


def _model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(device)


def _train(genome: Genome, reg: Registry, device: torch.device, **kw) -> list[torch.Tensor]:
    model = _model(device)
    opt = nosplug.GraphOptimizer(model.parameters(), genome, lr=0.01, seed=5, registry=reg, **kw)
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)).to(device)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return [p.detach().cpu().clone() for p in model.parameters()]


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("exact", [True, False])
def test_graph_optimizer_draws_on_the_parameters_device_and_reruns_alike(noisy, device, exact) -> None:
    reg, genome, seen = noisy
    first = _train(genome, reg, device, exact=exact)
    assert seen and all(x == device or x.type == device.type for _, x in seen)
    again = _train(genome, reg, device, exact=exact)
    assert all(torch.equal(a, b) for a, b in zip(first, again)), "same seed, same device: same run"


@pytest.mark.parametrize("device", DEVICES, ids=str)
def test_the_reference_interpreter_and_the_batched_sweep_draw_on_the_device(noisy, device) -> None:
    """BatchedProgramOptimizer (the batched sweep's optimizer) given the CPU generator the sweep
    makes: its draws still come from a generator on the parameters' device."""
    reg, genome, seen = noisy
    program = compile_genome(genome, reg)
    k = 3
    params = [torch.randn(k * 4, 5).to(device), torch.zeros(k).to(device)]
    runs = []
    for _ in range(2):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in params]
        opt = BatchedProgramOptimizer(ps, program, [0.1, 0.01, 0.001], 10, torch.Generator().manual_seed(3))
        assert opt.ctx.generator.device.type == device.type
        for _ in range(3):
            for p in ps:
                p.grad = torch.ones_like(p)
            opt.step(1.0)
        runs.append([p.detach().cpu() for p in ps])
    assert seen and all(x.type == device.type for _, x in seen)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_the_integrity_checks_replay_a_plugins_stochastic_op(noisy) -> None:
    """The batched check replays the op from its ``batched`` form: same decisions and values as
    the single check (both on the CPU, where the check runs)."""
    reg, genome, seen = noisy
    single = integrity_check(genome, reg=reg, seed=4)
    assert seen
    (batched,) = integrity_check_batch([genome], reg=reg, seed=4)
    assert batched.passed == single.passed and batched.lr == single.lr
    assert batched.finals == pytest.approx(single.finals, rel=1e-12, nan_ok=True)


class _OtherDevice:
    """A stand-in for a generator on another device (this test runs without an accelerator)."""

    device = torch.device("cuda", 0)

    def initial_seed(self) -> int:
        return 123


def test_generator_on_makes_one_on_the_data_device_from_the_same_seed() -> None:
    cpu = torch.device("cpu")
    gen = torch.Generator().manual_seed(9)
    assert generator_on(gen, cpu) is gen and generator_on(None, cpu) is None
    cache: dict = {}
    made = generator_on(_OtherDevice(), cpu, cache)  # type: ignore[arg-type]
    assert made is not None and made.device == cpu and made.initial_seed() == 123
    assert generator_on(_OtherDevice(), cpu, cache) is made, "later draws continue the same stream"
    ctx = ExecContext(numel=4, generator=_OtherDevice())  # type: ignore[arg-type]
    x = torch.zeros(4)
    assert ctx.rng(x).device == cpu and ctx.rng(x) is ctx.rng(x)
    expected = torch.rand(4, generator=torch.Generator().manual_seed(123))
    assert torch.equal(torch.rand(4, generator=generator_on(_OtherDevice(), cpu)), expected)
