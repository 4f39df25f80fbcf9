"""GraphOptimizer in chunks (nosplug.optim.chunks): the same results whatever the chunk size, the
memory bound (torch's state for the same update plus one workspace), the accelerators' on-device
guard (run here on the CPU) and its single synchronisation per step."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import pytest
import torch
from genome_helpers import random_genomes

import nosplug
from nosplug.genome.model import Genome
from nosplug.optim import GraphOptimizer, NonFiniteUpdateError, chunks
from nosplug.optim.chunks import Part
from nosplug.optim.memory import held_bytes
from nosplug.optim.program import compile_genome


class Net(torch.nn.Module):
    """Parameters of 96, 12, 60, 5 elements and a (3, 5) one in channels-last-like strides."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 12)
        self.b = torch.nn.Linear(12, 5)
        self.c = torch.nn.Parameter(torch.randn(5, 3).t())  # not contiguous: never split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x))) @ self.c.t().t().t()


def _run(genome: Genome | str, steps: int = 6, dtype=torch.float64, **kw) -> tuple[list, GraphOptimizer]:
    torch.manual_seed(0)
    model = Net().to(dtype)
    opt = GraphOptimizer(model.parameters(), genome, lr=0.01, total_steps=steps, nonfinite="skip", **kw)
    x = torch.randn(16, 8, dtype=dtype, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()], opt


def _deterministic(genomes: list[Genome]) -> list[Genome]:
    return [g for g in genomes if not compile_genome(g).stochastic]


def test_the_layout_packs_small_parameters_and_cuts_large_contiguous_ones() -> None:
    params = [torch.zeros(3), torch.zeros(10), torch.zeros(2, 2), torch.zeros(5, 3).t()]
    part = Part(params, [{} for _ in params], ["m"], chunk_size=4, split=True)
    spans = [(c.start, c.stop, [(tuple(q.shape), lo, hi) for q, lo, hi in c.members]) for c in part.chunks]
    assert spans == [
        (0, 3, [((3,), 0, 3)]),
        (3, 7, [((10,), 0, 4)]),
        (7, 11, [((10,), 4, 8)]),
        (11, 13, [((10,), 8, 10)]),
        (13, 17, [((2, 2), 0, 4)]),
        (17, 32, [((3, 5), 0, 15)]),  # not contiguous: whole, though larger than a chunk
    ]
    whole = Part(params, [{} for _ in params], ["m"], chunk_size=4, split=False)
    assert [len(c.members) for c in whole.chunks] == [1, 1, 1, 1]
    assert part.flat["m"].numel() == 32 and params[1].numel() == 10


@pytest.mark.parametrize("exact", [True, False])
def test_every_chunk_size_gives_the_same_steps(exact: bool) -> None:
    """Element-wise genomes and per-tensor ones (whose tensors are never cut) compute the same
    updates whether a part is one chunk or many: bit for bit up to the last bit of vectorised
    math functions (ATen's CPU kernels may round exp, pow, ... differently in the scalar tail of a
    loop, and chunks move where a tensor's tail falls)."""
    genomes = [nosplug.zoo.load(n) for n in nosplug.zoo.names()] + _deterministic(random_genomes(60, 31))
    differ = []
    for k, genome in enumerate(genomes):
        one, _ = _run(genome, exact=exact)
        many, opt = _run(genome, exact=exact, chunk_size=7)
        assert max(len(p.layout.chunks) for p in opt._parts.values()) > 3
        if not all(torch.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True) for a, b in zip(one, many)):
            differ.append((k, genome.formula()))
    assert len(differ) <= 1, differ  # a diverging genome (weights of 1e41) amplifies a last bit


def test_compiled_steps_in_chunks_equal_one_chunk() -> None:
    one, _ = _run("adam", compile=True)
    many, _ = _run("adam", compile=True, chunk_size=16)
    assert all(torch.equal(a, b) for a, b in zip(one, many))


@contextmanager
def _device_guard(monkeypatch):
    monkeypatch.setattr(chunks, "GUARD", "device")
    yield


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "opt6", "a1"])
def test_the_on_device_guard_steps_like_the_host_guard(monkeypatch, name: str, exact: bool) -> None:
    host, _ = _run(name, exact=exact, chunk_size=20)
    with _device_guard(monkeypatch):
        device, _ = _run(name, exact=exact, chunk_size=20)
    for a, b in zip(host, device):
        torch.testing.assert_close(a, b, rtol=0, atol=0) if exact else torch.testing.assert_close(a, b)


@pytest.mark.parametrize("guard", ["host", "device"])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_a_nonfinite_chunk_is_skipped_alone(monkeypatch, guard: str, name: str) -> None:
    """A NaN in one chunk's gradient: that chunk's weights and momentum stay, the others move."""
    monkeypatch.setattr(chunks, "GUARD", guard)
    torch.manual_seed(0)
    model = Net()
    opt = GraphOptimizer(model.parameters(), name, lr=0.1, nonfinite="skip", chunk_size=20)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    before = copy.deepcopy(model)
    kept = opt.state[model.b.bias].get("momentum_buffer")
    kept = None if kept is None else kept.clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.b.bias.grad[2] = float("nan")  # the bias of b: elements 108..112, a chunk of its own
    opt.step()
    assert opt.last_step_nonfinite and opt.nonfinite_steps == 1
    assert torch.equal(model.b.bias, before.b.bias)
    if name == "sgd" and guard == "device":  # fused SGD's gradient check covers the whole part
        assert torch.equal(model.a.weight, before.a.weight)
    else:
        assert not torch.equal(model.a.weight, before.a.weight) and not torch.equal(model.c, before.c)
    if kept is not None:
        assert torch.equal(opt.state[model.b.bias]["momentum_buffer"], kept)
        assert not torch.equal(opt.state[model.a.bias]["momentum_buffer"], kept[:1].expand(12))
    raising = GraphOptimizer(before.parameters(), name, lr=0.1, chunk_size=20)
    for p in before.parameters():
        p.grad = torch.ones_like(p)
    before.b.bias.grad[0] = float("inf")
    with pytest.raises(NonFiniteUpdateError):
        raising.step()


class _Reads:
    """Counts host reads of tensor values (what synchronises an accelerator)."""

    def __init__(self, monkeypatch) -> None:
        self.n = 0
        for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
            original = getattr(torch.Tensor, name)

            def spy(t, *a, _original=original, **kw):
                self.n += 1
                return _original(t, *a, **kw)

            monkeypatch.setattr(torch.Tensor, name, spy)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "opt6", "a1"])
def test_the_on_device_guard_reads_the_device_once_per_step(monkeypatch, name: str) -> None:
    monkeypatch.setattr(chunks, "GUARD", "device")
    torch.manual_seed(0)
    model = Net()
    opt = GraphOptimizer(model.parameters(), name, lr=0.01, total_steps=10, chunk_size=20)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()  # the first step builds parts and contexts
    reads = _Reads(monkeypatch)
    for _ in range(3):
        opt.step()
    assert reads.n == 3, reads.n


def _model(n_blocks: int = 3, width: int = 24) -> torch.nn.Module:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for _ in range(n_blocks):
        layers += [
            torch.nn.Linear(width, 4 * width),
            torch.nn.LayerNorm(4 * width),
            torch.nn.Linear(4 * width, width),
        ]
    return torch.nn.Sequential(*layers)


def _held(make, chunk_size: int | None = None) -> tuple[int, int, torch.optim.Optimizer]:
    model = _model()
    opt = make(list(model.parameters()))
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        opt.step()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return held_bytes(opt), param_bytes, opt


@pytest.mark.parametrize(
    ("name", "torch_opt"),
    [
        ("adam", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True)),
        ("sgd", lambda ps: torch.optim.SGD(ps, lr=1e-3, foreach=True)),
        ("momentum", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True)),
        ("nesterov", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True, foreach=True)),
        ("opt6", None),
    ],
)
@pytest.mark.parametrize("compile", [False, True])
def test_memory_is_torchs_state_plus_one_chunks_workspace(name: str, torch_opt, compile: bool) -> None:
    """Held bytes (every tensor the optimizer keeps between steps): at most torch's optimizer for
    the same update plus one workspace of a chunk's scratch buffers, however many chunks."""
    if compile and name not in ("adam", "momentum"):
        pytest.skip("compilation is slow: two genomes cover the compiled path")
    chunk = 512
    ours, param_bytes, opt = _held(
        lambda ps: GraphOptimizer(ps, name, lr=1e-3, total_steps=100, chunk_size=chunk, compile=compile)
    )
    assert sum(len(p.layout.chunks) for p in opt._parts.values()) > 10
    (ws,) = opt._workspaces.values()
    assert ws.capacity == chunk and ws.nbytes() <= 8 * chunk * 4, (len(ws.buffers), ws.capacity)
    state = sum(
        buf.numel() * buf.element_size() for p in opt._parts.values() for buf in p.layout.flat.values()
    )
    assert ours <= state + ws.nbytes() + 4096, (ours, state, ws.nbytes())
    if torch_opt is not None:
        theirs, _, _ = _held(torch_opt)
        assert state <= theirs, (state, theirs)
        assert ours <= theirs + ws.nbytes() + 4096
        assert ours < theirs + param_bytes / 4, "one chunk's scratch, not flat copies of the model"
