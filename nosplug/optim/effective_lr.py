"""The effective learning-rate multiplier m(t) of a genome's decay functions.

A decay on a distributive path (every op between the edge and the root is homogeneous in it,
as in the zoo's ``lr1`` .. ``lr9``) scales the whole update, so it *is* a learning-rate
schedule; a decay inside a non-linear op (``tanh``, a sum with another term, an EMA node) only
changes the update's shape. To put both on the learning-rate axis of the paper's appendix
figures, m(t) is measured rather than derived: the compiled genome is run on a synthetic
gradient stream, and at each step t

    m(t) = mean |U_t with decays| / mean |U_t with every decay removed|,

both computed from the same state (the state the genome with decays has reached) and the same
gradient. On a distributive path this is exactly the product of the decay factors; elsewhere it
is the update's effective scale. It needs the compiled program, so it lives next to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nosplug.genome.model import Genome
from nosplug.optim.program import compile_genome
from nosplug.primitives.base import ExecContext
from nosplug.primitives.registry import Registry


def effective_lr_multiplier(
    genome: Genome,
    total_steps: int,
    points: int | Sequence[int] | None = None,
    *,
    numel: int = 256,
    seed: int = 0,
    reg: Registry | None = None,
) -> tuple[Tensor, Tensor]:
    """m(t) of ``genome`` in a run of ``total_steps`` steps; returns ``(steps, m)``.

    Args:
        genome: any genome; one without active decays gives m ≡ 1 without running anything.
        total_steps: T, the run length the decays are evaluated for (the preset's
            ``schedule_steps`` during training).
        points: None for every 0-based step 0 .. T-1, an int k for k evenly spaced steps
            (first and last included), or explicit steps. The state is advanced through every
            step up to the last one regardless; ``points`` only says where m is measured.
        numel: length of the synthetic parameter vector (a mean over it is what is compared).
        seed: seeds the gradient stream (i.i.d. standard normal, float64), the fixed weights
            and the masks of stochastic ops (identical for both evaluations of one step).

    Steps where the update without decays is zero or either update is not finite give NaN.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    steps = _steps(points, total_steps)
    program = compile_genome(genome, reg)
    if not program.decays:
        return steps, torch.ones(len(steps), dtype=torch.float64)
    plain_genome = genome.copy()
    for _node, _i, edge in plain_genome.edges():
        edge.decay = None
    plain = compile_genome(plain_genome, reg)

    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(numel, generator=gen, dtype=torch.float64)
    state = program.init_state(w)
    wanted = {int(s): i for i, s in enumerate(steps.tolist())}
    out = torch.full((len(steps),), float("nan"), dtype=torch.float64)
    for t in range(int(steps.max()) + 1 if len(steps) else 0):
        g = torch.randn(numel, generator=gen, dtype=torch.float64)
        if t in wanted:
            snapshot = {k: v.clone() for k, v in state.items()}
            u_plain = plain.update_value(
                snapshot, w, g, step=t, total_steps=total_steps, ctx=_ctx(numel, seed, t)
            )
        u = program.update_value(state, w, g, step=t, total_steps=total_steps, ctx=_ctx(numel, seed, t))
        if t in wanted:
            # a scalar update (a constant genome) broadcasts, so its mean |.| is its own |.|
            num, den = u.abs().mean(), u_plain.abs().mean()
            if torch.isfinite(num) and torch.isfinite(den) and den > 0:
                out[wanted[t]] = num / den
    return steps, out


def _steps(points: int | Sequence[int] | None, total_steps: int) -> Tensor:
    if points is None:
        return torch.arange(total_steps, dtype=torch.int64)
    if isinstance(points, int):
        if points < 1:
            raise ValueError(f"points must be at least 1, got {points}")
        k = min(points, total_steps)
        return torch.linspace(0, total_steps - 1, k, dtype=torch.float64).round().to(torch.int64).unique()
    steps = torch.tensor(sorted({int(p) for p in points}), dtype=torch.int64)
    if len(steps) and (steps[0] < 0 or steps[-1] >= total_steps):
        raise ValueError(f"steps must lie in 0 .. {total_steps - 1}")
    return steps


def _ctx(numel: int, seed: int, step: int) -> ExecContext:
    """A fresh context whose generator gives both evaluations of a step the same dropout masks."""
    return ExecContext(numel=numel, generator=torch.Generator().manual_seed(seed * 1_000_003 + step))
