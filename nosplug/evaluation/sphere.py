"""The integrity check's problem: the shifted sphere, its runs and their layout (spec §6).

What the single check (:mod:`nosplug.evaluation.integrity`) and the stacked check of many genomes
(:mod:`nosplug.evaluation.integrity_batch`) both run: the configuration (the paper's defaults),
the (sign, learning rate) runs in the order they are tried, and the layout of those runs as one
flat vector. Both checks import it; neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


#: Elements are padded to a multiple of this: ATen's element-wise kernels run vectorised blocks
#: (up to 2 x 8 doubles) and a scalar tail, whose math functions (exp, erf, pow, ...) can round
#: the last bit differently. With no tail, every element takes the vectorised path wherever it
#: sits, so a genome's values do not depend on which genomes share a stacked pass.
BLOCK = 16


@dataclass(frozen=True)
class Layout:
    """The sphere runs laid end to end: ``r`` runs of ``n`` variables, then zero padding up to
    ``e`` elements (a segment of its own, so per-tensor ops never mix it with a run)."""

    runs: list[tuple[float, float]]
    n: int
    r: int
    e: int
    x0: torch.Tensor
    b: torch.Tensor
    signed_lr: torch.Tensor
    seg: torch.Tensor  # run of each element; the padding is run ``r``

    @classmethod
    def of(cls, cfg: IntegrityConfig) -> Layout:
        runs = runs_of(cfg)
        n, r = len(cfg.start), len(runs)
        e = -(-(n * r) // BLOCK) * BLOCK
        pad = torch.zeros(e - n * r, dtype=torch.float64)

        def full(v: torch.Tensor) -> torch.Tensor:
            return torch.cat([v, pad])

        # the genome's own flip is applied by the program; runs with sign -1 flip it once more
        lrs = torch.tensor([s * lr for s, lr in runs], dtype=torch.float64).repeat_interleave(n)
        seg = torch.cat([torch.arange(r).repeat_interleave(n), torch.full((e - n * r,), r)])
        start = torch.tensor(cfg.start, dtype=torch.float64).repeat(r)
        shift = torch.tensor(cfg.shift, dtype=torch.float64).repeat(r)
        return cls(runs, n, r, e, full(start), full(shift), full(lrs), seg)

    def finals(self, x: torch.Tensor) -> torch.Tensor:
        """The sphere value of every run (``x`` is ``[..., e]``): ``[..., r]``, summed in a fixed
        order (a reduction kernel may order the sum by the tensor's shape)."""
        sq = ((x - self.b) ** 2)[..., : self.n * self.r].unflatten(-1, (self.r, self.n))
        total = sq[..., 0]
        for i in range(1, self.n):
            total = total + sq[..., i]
        return total


def runs_of(cfg: IntegrityConfig) -> list[tuple[float, float]]:
    """(sign, learning rate) of every sphere run, in the order the rates are tried."""
    signs = (1.0, -1.0) if cfg.try_flip else (1.0,)
    return [(s, lr) for s in signs for lr in cfg.learning_rates]
