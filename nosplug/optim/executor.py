"""One eager optimizer step of a lowered genome on a chunk of parameters.

What a step costs is the number of passes over the parameters' memory (and, for tensors this
large, any fresh allocation: the page faults of a new 5 MB buffer cost as much as a pass), so
this module spends as few as it can around the plan (:mod:`nosplug.optim.lowering`):

* parameters are stepped chunk by chunk (:mod:`nosplug.optim.chunks`): a chunk's gradient (and
  weights, if the genome reads them) is gathered with one multi-tensor copy into a buffer of the
  optimizer's workspace, or read in place when the chunk lies within one parameter; every other
  buffer (the plan's, lr * U, the next momentum, the update) is a workspace buffer too, so the
  optimizer holds its state plus one chunk's scratch, and a step allocates nothing;
* exact plans form ``lr * U`` and the momentum terms with the reference's operations
  (:meth:`Program.delta_and_momentum`), in place where the operand is scratch; the next momentum
  is written into a scratch buffer and copied into the state once the guard passed;
* genomes whose U is the gradient itself (SGD, momentum, Nesterov) without momentum skip the
  plan: ``p += c g`` straight from the gradients, one multiply-add as
  ``torch.optim.SGD(foreach=True)`` does, after a multi-tensor finiteness check of g;
* folded plans (``exact=False``) without momentum never form ``c * U`` on the CPU: the guard
  bounds it with one reduction (``|c| * ||U||_2``, NaN or inf if U holds one) and
  ``weights += c U`` writes it; only when the bound cannot prove it finite is ``c * U`` formed and
  checked element by element.

The guarantee is the reference's: a non-finite update never reaches the weights, and a skipped
chunk keeps its weights and momentum as they were (EMA and node state have moved on). On the CPU
the host reads the check; on an accelerator the check stays on the device (a
flag per chunk, the update zeroed and the momentum kept where it is false), and the flags are read
once at the end of the step: one synchronisation per step instead of one per chunk
(:class:`~nosplug.optim.chunks.Guard`, shared with the exported optimizer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nosplug.optim.chunks import Chunk, Guard, Workspace, direct_sgd
from nosplug.optim.lowering import Plan
from nosplug.optim.program import MOMENTUM_KEY, Program
from nosplug.primitives.base import ExecContext

#: Margin on the norm bound: ||U||_2 is computed in the parameters' dtype with some rounding.
_BOUND_MARGIN = 2.0


def eager_step(
    program: Program,
    plan: Plan,
    chunk: Chunk,
    ws: Workspace,
    ctx: ExecContext,
    guard: Guard,
    *,
    step: int,
    decays: Sequence[float],
    lr: float,
    momentum: float,
    tag: object = None,
) -> bool | None:
    """Run one step on ``chunk``: advance state, check, and write the weights and the momentum if
    the update is finite. Returns the guard's outcome (None: decided on the device)."""
    slots = [chunk.scratch(ws, f"slot{i}") for i in range(plan.n_slots)]
    g = chunk.gradient(chunk.scratch(ws, "grad") if not chunk.single else None)  # type: ignore[arg-type]
    w = None
    if program.needs_weight:
        w = chunk.weight(chunk.scratch(ws, "weight") if not chunk.single else None)  # type: ignore[arg-type]
    u = plan.run(slots, chunk.state, w, g, step=step, decays=decays, ctx=ctx)
    m = chunk.state.get(MOMENTUM_KEY)
    if plan.exact:
        delta, nxt = _exact_update(program, chunk, ws, u, lr, momentum)
        return guard.commit(chunk, delta, nxt, m, tag=tag)
    t, s = u
    if t is None:  # a constant update
        t = chunk.scratch(ws, "scaled").fill_(s)
        s = 1.0
    c = s * program.sign * lr
    if program.momentum == "none":
        if not guard.device_side and _bounded(t, c):
            chunk.add_(t, c)
            return True
        return guard.commit(chunk, torch.mul(t, c, out=chunk.scratch(ws, "delta")), tag=tag)
    delta, nxt = _momentum_terms(program, chunk, ws, t, c, momentum)
    return guard.commit(chunk, delta, nxt, m, tag=tag)


def _exact_update(
    program: Program, chunk: Chunk, ws: Workspace, u: tuple, lr: float, mu: float
) -> tuple[Tensor, Tensor | None]:
    """Program.delta_and_momentum's arithmetic (bit-identical), into the workspace's buffers."""
    t, s = u
    c = program.sign * lr
    if t is None:  # a constant U: the reference's 0-d tensor times the scalar, then expanded
        scaled = chunk.scratch(ws, "scaled").fill_(float(torch.tensor(s, dtype=ws.dtype) * c))
    elif chunk.is_scratch(t):  # s is +-1 here (a negation the plan did not materialize): exact
        scaled = t.mul_(s * c)  # in place: the plan is done with its buffers
    else:
        scaled = torch.mul(t, s * c, out=chunk.scratch(ws, "scaled"))
    if program.momentum == "none":
        return scaled, None
    nxt = torch.mul(chunk.state[MOMENTUM_KEY], mu, out=chunk.scratch(ws, "next_momentum"))
    nxt.add_(scaled)
    if program.momentum == "momentum":
        return nxt, nxt
    if program.nesterov == "standard":
        delta = torch.mul(nxt, mu, out=chunk.scratch(ws, "delta"))
        return delta.add_(scaled), nxt
    return torch.add(nxt, scaled, out=chunk.scratch(ws, "delta")), nxt  # the search code's form


def _momentum_terms(
    program: Program, chunk: Chunk, ws: Workspace, t: Tensor, c: float, mu: float
) -> tuple[Tensor, Tensor]:
    """Folded plans with momentum: the next buffer ``mu m + c U`` and the update."""
    nxt = torch.mul(chunk.state[MOMENTUM_KEY], mu, out=chunk.scratch(ws, "next_momentum"))
    nxt.add_(t, alpha=c)
    if program.momentum == "momentum":
        return nxt, nxt
    if program.nesterov == "standard":
        delta = torch.mul(nxt, mu, out=chunk.scratch(ws, "delta"))
        return delta.add_(t, alpha=c), nxt
    return torch.add(nxt, t, alpha=c, out=chunk.scratch(ws, "delta")), nxt


@dataclass
class SgdCheck:
    """Buffers of the direct SGD path's gradient check, per device."""

    found: Tensor
    one: Tensor


def sgd_step(
    program: Program, plan: Plan, params: list[Tensor], lr: float, guard: Guard, check: SgdCheck, tag=None
) -> bool:
    """U = +-g without momentum: :func:`nosplug.optim.chunks.direct_sgd` with ``c = +-lr``."""
    c = plan.gradient_sign * program.sign * lr
    return direct_sgd(params, c, guard, check.found, check.one, tag)


def _bounded(t: Tensor, c: float) -> bool:
    """True if every element of ``c * t`` is provably finite: ``|c| ||t||_2`` (NaN or inf if t
    holds one) stays below the dtype's largest value with margin."""
    big = torch.finfo(t.dtype).max
    if not math.isfinite(c) or abs(c) >= big:
        return False
    norm = float(torch.linalg.vector_norm(t))
    return math.isfinite(norm) and abs(c) * norm * _BOUND_MARGIN < big
