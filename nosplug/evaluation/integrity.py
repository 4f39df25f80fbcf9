"""The integrity check: does a genome make progress on a shifted sphere at all? (spec §6, §3.4)

A candidate is run for ``iterations`` steps on f(x) = sum((x - shift)^2) from ``start``, with
the paper's schedules for a run of that length, at each learning rate in order; it passes at
the first rate whose value after ``iterations - 1`` updates is below ``threshold``. If none
does, the same rates are tried with the update's sign flipped. NaN fails. Every decay function
on an active edge must also stay within [0, 1] over a 100-step run.

All rates and both signs run in **one batched pass**: 12 independent 5-variable problems laid
end to end in one flat vector (zero-padded to 64 elements, see :data:`BLOCK`), each its own
segment (so per-tensor ops such as clip-by-norm stay per problem) and each with its own signed
learning rate. :func:`integrity_check_batch` runs many genomes in one stacked pass
(:mod:`nosplug.evaluation.integrity_batch`) with the same results, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from nosplug.evaluation import integrity_batch as stacked
from nosplug.evaluation.sphere import IntegrityConfig, Layout, runs_of
from nosplug.genome.graph import DecayGraph
from nosplug.genome.model import Genome
from nosplug.optim.program import Program, compile_genome
from nosplug.optim.schedules import cycled_momentum, warmup_hold_cosine_factor
from nosplug.primitives.base import ExecContext
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry


@dataclass(frozen=True)
class IntegrityResult:
    """Outcome of the check. ``finals`` holds the sphere value per (sign, rate) run."""

    passed: bool
    lr: float | None
    flip: bool
    reason: str
    finals: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["finals"] = [None if not math.isfinite(v) else round(v, 6) for v in self.finals]
        return d


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded inside: the checks' ops are tiny (60 to a few thousand elements),
    so worker threads bring nothing but the wake-up and barrier cost of each parallel region,
    which on a busy machine (another process on the other core) made the check 3x slower."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def integrity_check(
    genome: Genome,
    config: IntegrityConfig | None = None,
    reg: Registry | None = None,
    seed: int = 0,
) -> IntegrityResult:
    """Run the shifted-sphere check (and the decay check) on one genome."""
    with one_thread():
        return _check_one(genome, config, reg, seed)


def _check_one(
    genome: Genome, config: IntegrityConfig | None, reg: Registry | None, seed: int
) -> IntegrityResult:
    cfg = config or IntegrityConfig()
    reg = reg or default_registry()
    program = _prepare(genome, cfg, reg)
    if isinstance(program, IntegrityResult):
        return program
    lay = Layout.of(cfg)
    gen = torch.Generator().manual_seed(seed)
    ctx = ExecContext(numel=lay.e, segment_ids=lay.seg, num_segments=lay.r + 1, generator=gen)
    x, b = lay.x0.clone(), lay.b
    state = program.init_state(x)
    T, W = cfg.iterations, cfg.warmup_steps
    try:
        with torch.no_grad():
            for t in range(T - 1):
                g = 2.0 * (x - b)
                factor = warmup_hold_cosine_factor(t, T, W, 0)
                mu = cycled_momentum(t, T, W, 0)
                delta = program.delta(
                    state, x, g, step=t, total_steps=T, lr=lay.signed_lr * factor, momentum=mu, ctx=ctx
                )
                x = x + delta
            finals = lay.finals(x)
    except Exception as exc:
        return IntegrityResult(False, None, False, f"error while running: {type(exc).__name__}: {exc}")
    return _decide(tuple(float(v) for v in finals), lay.runs, cfg)


def _prepare(
    genome: Genome,
    cfg: IntegrityConfig,
    reg: Registry,
    check: Callable[[DecayGraph, int], bool] | None = None,
) -> Program | IntegrityResult:
    """The compiled genome, or the failed result if it is invalid or a decay leaves [0, 1]
    (``check(decay, steps)``: the decay check, by default :func:`nosplug.genome.decay.decay_check`)."""
    try:
        program = compile_genome(genome, reg)
    except Exception as exc:  # an invalid genome fails the check, it does not crash the search
        return IntegrityResult(False, None, False, f"invalid genome: {exc}")
    if program.decays:
        if check is None:
            from nosplug.genome.decay import decay_check

            check = lambda d, steps: decay_check(d, reg, T=steps)  # noqa: E731
        for i, d in enumerate(program.decays):
            if not check(d, cfg.decay_check_steps):
                return IntegrityResult(False, None, False, f"decay function #{i} leaves [0, 1]")
    return program


def _decide(
    values: tuple[float, ...], runs: list[tuple[float, float]], cfg: IntegrityConfig
) -> IntegrityResult:
    """Pass at the first (sign, rate) whose final value is below the threshold."""
    for (sign, lr), v in zip(runs, values):
        if math.isfinite(v) and v < cfg.threshold:
            return IntegrityResult(True, lr, sign < 0, "passed", values)
    if all(not math.isfinite(v) for v in values):
        reason = "non-finite values at every learning rate"
    else:
        best = min((v for v in values if math.isfinite(v)), default=float("nan"))
        reason = f"no learning rate brings the sphere below {cfg.threshold} (best {best:.4g})"
    return IntegrityResult(False, None, False, reason, values)


#: Genomes per stacked pass: large enough to amortise the per-op cost over many genomes.
BATCH = 1024


def integrity_check_batch(
    genomes: Iterable[Genome],
    config: IntegrityConfig | None = None,
    reg: Registry | None = None,
    seed: int = 0,
    batch_size: int = BATCH,
) -> list[IntegrityResult]:
    """Check many genomes at once: the same results as :func:`integrity_check` on each.

    Genomes with the same canonical hash are checked once (the same result object is returned
    for each). The sphere runs of all remaining genomes go through
    :func:`~nosplug.evaluation.integrity_batch.sphere_finals` in stacked passes of
    ``batch_size`` genomes; a genome it cannot reproduce (a plugin's stochastic op), or a pass
    that raises, is checked one at a time.
    """
    with one_thread():
        return _check_batch(list(genomes), config, reg, seed, batch_size)


def _check_batch(
    genomes: list[Genome], config: IntegrityConfig | None, reg: Registry | None, seed: int, batch_size: int
) -> list[IntegrityResult]:
    cfg = config or IntegrityConfig()
    reg = reg or default_registry()
    runs = runs_of(cfg)
    decays = stacked.DecayValues(reg)
    keys: list[str | None] = []
    for g in genomes:
        try:
            keys.append(g.canonical_hash(reg))
        except Exception:
            keys.append(None)
    done: dict[int, IntegrityResult] = {}
    first: dict[str, int] = {}
    pending: list[tuple[int, Program]] = []
    for i, (g, key) in enumerate(zip(genomes, keys)):
        if key is not None and key in first:
            continue
        if key is not None:
            first[key] = i
        prepared = _prepare(g, cfg, reg, decays.check)
        if isinstance(prepared, IntegrityResult):
            done[i] = prepared
        elif stacked.stackable(prepared):
            pending.append((i, prepared))
        else:
            done[i] = _check_one(g, cfg, reg, seed)
    for start in range(0, len(pending), max(1, batch_size)):
        part = pending[start : start + batch_size]
        try:
            tables = [decays.table(p, cfg.iterations) for _, p in part]
            finals = stacked.sphere_finals([p for _, p in part], cfg, seed, tables).tolist()
        except Exception:  # let the single check say which genome fails and how
            for i, _ in part:
                done[i] = _check_one(genomes[i], cfg, reg, seed)
            continue
        for (i, _), values in zip(part, finals):
            done[i] = _decide(tuple(values), runs, cfg)
    return [done[i] if key is None or first.get(key) == i else done[first[key]] for i, key in enumerate(keys)]


def apply_flip(genome: Genome, result: IntegrityResult) -> Genome:
    """The genome with ``flip`` set as the check found it must be (a copy if it changes)."""
    if not result.passed or not result.flip:
        return genome
    g = genome.copy()
    g.flip = not g.flip
    return g


def passes(genome: Genome, config: IntegrityConfig | None = None, seed: int = 0) -> bool:
    return integrity_check(genome, config, seed=seed).passed


__all__: Sequence[str] = [
    "IntegrityConfig",
    "IntegrityResult",
    "apply_flip",
    "integrity_check",
    "integrity_check_batch",
    "passes",
]
