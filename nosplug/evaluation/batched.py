"""One compiled genome over K copies of a model at once, one learning rate per copy.

The copies are either a task's grouped model (:mod:`nosplug.tasks.grouped`) or parameters
stacked along a new leading dimension (the generic ``torch.func`` path of the sweep); in both,
every parameter's leading dimension splits into K contiguous blocks, one per copy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nosplug.optim.program import Program
from nosplug.primitives.base import ExecContext, generator_on


class BatchedProgramOptimizer:
    """Runs one compiled genome over the parameters of a grouped model, one lr per copy.

    ``lrs`` are the copies' peak learning rates; ``step(factor, momentum)`` scales them by the
    schedule's factor. A copy whose update turns non-finite is frozen (``alive[k] = False``)
    and its weights are left untouched; the other copies carry on. ``generator`` seeds the
    stochastic ops; one on another device than the parameters is replaced by a generator on
    theirs with the same seed (a generator fills only tensors of its own device).
    """

    def __init__(
        self,
        params: Sequence[Tensor],
        program: Program,
        lrs: Sequence[float],
        total_steps: int,
        generator: torch.Generator | None = None,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.program = program
        self.k = len(lrs)
        self.total_steps = total_steps
        for p in self.params:
            if p.shape[0] % self.k:
                raise ValueError(f"parameter of shape {tuple(p.shape)} does not split into {self.k} copies")
        self.sizes = [p.numel() for p in self.params]
        ref = self.params[0]
        run_of = [torch.arange(self.k, device=ref.device).repeat_interleave(n // self.k) for n in self.sizes]
        self.run_ids = torch.cat(run_of)
        self.peak = torch.tensor(list(lrs), dtype=ref.dtype, device=ref.device)
        seg = [r + i * self.k for i, r in enumerate(run_of)]
        self.ctx = ExecContext(
            numel=sum(self.sizes),
            segment_ids=torch.cat(seg),
            num_segments=self.k * len(self.params),
            generator=generator_on(generator, ref.device),
        )
        self.state = program.init_state(torch.zeros(sum(self.sizes), dtype=ref.dtype, device=ref.device))
        self.alive = torch.ones(self.k, dtype=torch.bool, device=ref.device)
        self.t = 0

    def freeze(self, k: int) -> None:
        self.alive[k] = False

    @torch.no_grad()
    def step(self, factor: float, momentum: float = 0.9) -> None:
        g = torch.cat([p.grad.reshape(-1) for p in self.params])
        w = torch.cat([p.reshape(-1) for p in self.params]) if self.program.needs_weight else g
        lr = (self.peak * factor * self.alive)[self.run_ids]
        delta = self.program.delta(
            self.state,
            w,
            g,
            step=self.t,
            total_steps=self.total_steps,
            lr=lr,
            momentum=momentum,
            ctx=self.ctx,
        )
        if delta.numel() != g.numel():
            delta = delta.expand(g.numel())
        if not bool(torch.isfinite(delta.sum())) and not bool((finite := torch.isfinite(delta)).all()):
            bad = torch.zeros(self.k, dtype=torch.bool, device=g.device)
            bad.index_fill_(0, self.run_ids[~finite].unique(), True)
            self.alive &= ~bad
            delta = torch.where(self.alive[self.run_ids] & finite, delta, torch.zeros_like(delta))
        torch._foreach_add_(self.params, [d.view_as(p) for d, p in zip(delta.split(self.sizes), self.params)])
        self.t += 1

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
