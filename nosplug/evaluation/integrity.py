"""The integrity check: does a genome make progress on a shifted sphere at all? (spec §6, §3.4)

A candidate is run for ``iterations`` steps on f(x) = sum((x - shift)^2) from ``start``, with
the paper's schedules for a run of that length, at each learning rate in order; it passes at
the first rate whose value after ``iterations - 1`` updates is below ``threshold``. If none
does, the same rates are tried with the update's sign flipped. NaN fails. Every decay function
on an active edge must also stay within [0, 1] over a 100-step run.

All rates and both signs run in **one batched pass**: 12 independent 5-variable problems laid
end to end in one flat vector, each its own segment (so per-tensor ops such as clip-by-norm stay
per problem) and each with its own signed learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from nosplug.genome.model import Genome
from nosplug.optim.program import compile_genome
from nosplug.optim.schedules import cycled_momentum, warmup_hold_cosine_factor
from nosplug.primitives.base import ExecContext
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry


@dataclass(frozen=True)
class IntegrityConfig:
    """The problem and thresholds of the check; the defaults are the paper's (spec §6)."""

    start: tuple[float, ...] = (1.1, 0.9, 1.1, 0.9, 1.0)
    shift: tuple[float, ...] = (0.5, 1.5, -0.3, -1.2, 0.75)
    iterations: int = 35
    warmup_steps: int = 6
    learning_rates: tuple[float, ...] = (1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5)
    threshold: float = 3.5
    try_flip: bool = True
    decay_check_steps: int = 100

    def __post_init__(self) -> None:
        if len(self.start) != len(self.shift) or not self.start:
            raise ValueError("integrity check: start and shift must have the same, non-zero length")
        if self.iterations < 2 or not self.learning_rates:
            raise ValueError("integrity check: need at least 2 iterations and one learning rate")

    @property
    def initial_value(self) -> float:
        return sum((a - b) ** 2 for a, b in zip(self.start, self.shift))

    @classmethod
    def from_dict(cls, d: dict) -> IntegrityConfig:
        from nosplug.errors import UserError

        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"integrity: unknown key(s) {', '.join(sorted(unknown))}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        try:
            return cls(**kw)
        except (TypeError, ValueError) as exc:
            raise UserError(str(exc)) from None


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


def integrity_check(
    genome: Genome,
    config: IntegrityConfig | None = None,
    reg: Registry | None = None,
    seed: int = 0,
) -> IntegrityResult:
    """Run the shifted-sphere check (and the decay check) on one genome."""
    cfg = config or IntegrityConfig()
    reg = reg or default_registry()
    try:
        program = compile_genome(genome, reg)
    except Exception as exc:  # an invalid genome fails the check, it does not crash the search
        return IntegrityResult(False, None, False, f"invalid genome: {exc}")
    if program.decays:
        from nosplug.genome.decay import decay_check

        for i, d in enumerate(program.decays):
            if not decay_check(d, reg, T=cfg.decay_check_steps):
                return IntegrityResult(False, None, False, f"decay function #{i} leaves [0, 1]")
    n = len(cfg.start)
    signs = (1.0, -1.0) if cfg.try_flip else (1.0,)
    runs = [(s, lr) for s in signs for lr in cfg.learning_rates]
    r = len(runs)
    dtype = torch.float64
    x = torch.tensor(cfg.start, dtype=dtype).repeat(r)
    b = torch.tensor(cfg.shift, dtype=dtype).repeat(r)
    # the genome's own flip is applied by the program; runs with sign -1 flip it once more
    signed_lr = torch.tensor([s * lr for s, lr in runs], dtype=dtype).repeat_interleave(n)
    seg = torch.arange(r).repeat_interleave(n)
    gen = torch.Generator().manual_seed(seed)
    ctx = ExecContext(numel=r * n, segment_ids=seg, num_segments=r, generator=gen)
    state = program.init_state(x)
    T, W = cfg.iterations, cfg.warmup_steps
    try:
        with torch.no_grad():
            for t in range(T - 1):
                g = 2.0 * (x - b)
                factor = warmup_hold_cosine_factor(t, T, W, 0)
                mu = cycled_momentum(t, T, W, 0)
                delta = program.delta(
                    state, x, g, step=t, total_steps=T, lr=signed_lr * factor, momentum=mu, ctx=ctx
                )
                x = x + delta
            finals = ((x - b) ** 2).view(r, n).sum(dim=1)
    except Exception as exc:
        return IntegrityResult(False, None, False, f"error while running: {type(exc).__name__}: {exc}")
    values = tuple(float(v) for v in finals)
    for (sign, lr), v in zip(runs, values):
        if math.isfinite(v) and v < cfg.threshold:
            return IntegrityResult(True, lr, sign < 0, "passed", values)
    if all(not math.isfinite(v) for v in values):
        reason = "non-finite values at every learning rate"
    else:
        best = min((v for v in values if math.isfinite(v)), default=float("nan"))
        reason = f"no learning rate brings the sphere below {cfg.threshold} (best {best:.4g})"
    return IntegrityResult(False, None, False, reason, values)


def integrity_check_batch(
    genomes: Iterable[Genome],
    config: IntegrityConfig | None = None,
    reg: Registry | None = None,
    seed: int = 0,
) -> list[IntegrityResult]:
    """Check many genomes; genomes with the same canonical hash are checked once."""
    reg = reg or default_registry()
    cache: dict[str, IntegrityResult] = {}
    out = []
    for g in genomes:
        try:
            key = g.canonical_hash(reg)
        except Exception:
            key = None
        if key is not None and key in cache:
            out.append(cache[key])
            continue
        res = integrity_check(g, config, reg, seed)
        if key is not None:
            cache[key] = res
        out.append(res)
    return out


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
