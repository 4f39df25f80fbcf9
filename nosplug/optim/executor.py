"""One eager optimizer step of a lowered genome on a chunk of parameters.

What a step costs is the number of passes over the parameters' memory (and, for tensors this
large, any fresh allocation: the page faults of a new 5 MB buffer cost as much as a pass), so
this module spends as few as it can around the plan (:mod:`nosplug.optim.lowering`):

* gradients (and weights, if the genome reads them) are gathered with one multi-tensor copy
  (``torch._foreach_copy_``) into a flat buffer allocated once per chunk; every other buffer
  (the plan's, lr * U, the next momentum, the update) is allocated once per chunk too;
* exact plans form ``lr * U`` and the momentum terms with the reference's operations
  (:meth:`Program.delta_and_momentum`), in place where the operand is scratch; the next
  momentum is written into a spare buffer and swapped in after the guard passed (no copy);
* genomes whose U is the gradient itself (SGD, momentum, Nesterov) without momentum skip the
  gathering: ``p += c g`` straight from the gradients, one multiply-add as
  ``torch.optim.SGD(foreach=True)`` does, after a multi-tensor finiteness check of g;
* folded plans (``exact=False``) without momentum never form ``c * U``: the guard bounds it with
  one reduction (``|c| * ||U||_2``, NaN or inf if U holds one) and ``torch._foreach_add_(params,
  U, alpha=c)`` writes it; only when the bound cannot prove it finite is ``c * U`` formed and
  checked element by element.

The guarantee is the reference's: a non-finite update never reaches the weights, and a skipped
step leaves the weights and the momentum as they were (EMA and node state have moved on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from nosplug.optim.lowering import Plan, Workspace
from nosplug.optim.program import MOMENTUM_KEY, Program
from nosplug.primitives.base import ExecContext

#: Margin on the norm bound: ||U||_2 is computed in the parameters' dtype with some rounding.
_BOUND_MARGIN = 2.0


@dataclass
class EagerChunk:
    """Buffers of one chunk (parameters of one group sharing device, dtype and step)."""

    params: list[Tensor]
    sizes: list[int]
    ws: Workspace
    gbuf: Tensor | None = None
    wbuf: Tensor | None = None
    spare: Tensor | None = None  # the momentum buffer being written
    scaled: Tensor | None = None  # lr * U
    delta: Tensor | None = None
    found_inf: Tensor | None = None  # for the gradients' finiteness check
    one: Tensor | None = None
    _views: dict[int, list[Tensor]] = field(default_factory=dict)  # id(buffer) -> views

    @classmethod
    def create(cls, params: list[Tensor], plan: Plan, state: dict[str, Tensor]) -> EagerChunk:
        """Buffers for ``params``; ``state`` holds the chunk's flat state buffers (kept alive by
        the caller as long as this chunk), whose views are cached too."""
        ref = params[0]
        sizes = [p.numel() for p in params]
        ws = Workspace(sum(sizes), ref.dtype, ref.device)
        chunk = cls(params, sizes, ws)
        for buf in state.values():
            chunk.own_buffer(buf)
        if len(params) > 1:
            chunk.gbuf = chunk.own_buffer()
            if plan.program.needs_weight:
                chunk.wbuf = chunk.own_buffer()
        return chunk

    def own_buffer(self, buf: Tensor | None = None) -> Tensor:
        """Register (or allocate) a flat buffer that lives as long as the chunk."""
        if buf is None:
            buf = torch.empty(self.ws.numel, dtype=self.ws.dtype, device=self.ws.device)
        self._views[id(buf)] = self._split(buf)
        return buf

    def _split(self, flat: Tensor) -> list[Tensor]:
        if len(self.params) == 1:
            return [flat.view_as(self.params[0])]
        return [v.view_as(p) for v, p in zip(flat.split(self.sizes), self.params)]

    def views(self, flat: Tensor) -> list[Tensor]:
        """``flat`` split into tensors shaped like the parameters (cached for own buffers)."""
        got = self._views.get(id(flat))
        if got is None:
            if any(flat is s for s in self.ws.slots):
                got = self._views[id(flat)] = self._split(flat)
            else:
                return self._split(flat)
        return got

    def gather(self, needs_weight: bool) -> tuple[Tensor, Tensor | None]:
        """The chunk's gradient (and weight) as flat tensors."""
        if len(self.params) == 1:
            p = self.params[0]
            return p.grad.reshape(-1), (p.reshape(-1) if needs_weight else None)  # type: ignore[union-attr]
        torch._foreach_copy_(self.views(self.gbuf), [p.grad for p in self.params])  # type: ignore[arg-type, misc]
        if needs_weight:
            torch._foreach_copy_(self.views(self.wbuf), self.params)  # type: ignore[arg-type]
        return self.gbuf, self.wbuf  # type: ignore[return-value]

    def scratch(self, t: Tensor) -> bool:
        """True for this chunk's scratch buffers (gathered gradient and weight, plan slots), which
        the step may overwrite once the plan has run; never the state or the user's tensors."""
        return t is self.gbuf or t is self.wbuf or any(t is s for s in self.ws.slots)

    def own(self, name: str) -> Tensor:
        """A flat buffer of this chunk kept across steps (``spare``, ``scaled`` or ``delta``)."""
        buf = getattr(self, name)
        if buf is None:
            buf = self.own_buffer()
            setattr(self, name, buf)
        return buf


def eager_step(
    program: Program,
    plan: Plan,
    chunk: EagerChunk,
    state: dict[str, Tensor],
    ctx: ExecContext,
    *,
    step: int,
    decays: Sequence[float],
    lr: float,
    momentum: float,
) -> tuple[bool, Tensor | None]:
    """Run one step on ``chunk``: advance state, check, and write the weights if finite.

    Returns (finite, next momentum buffer or None). The caller commits the momentum buffer (it
    owns the per-parameter state views) only when the step was finite; a non-finite step has
    changed neither the weights nor the momentum.
    """
    direct = plan.gradient_only and program.momentum == "none" and len(chunk.params) > 1
    if direct and _sgd_step(program, plan, chunk, lr):
        return True, None
    g, w = chunk.gather(program.needs_weight)
    u = plan.run(chunk.ws, state, w, g, step=step, decays=decays, ctx=ctx)
    if plan.exact:
        delta, nxt = _exact_update(program, chunk, state, u, lr, momentum)
    else:
        delta, nxt = _folded_update(program, chunk, state, u, lr, momentum)
        if delta is None:  # written already (the update was provably finite)
            return True, None
    if not all_finite(delta):
        return False, None
    add_update(chunk, delta, 1.0)
    return True, nxt


def _exact_update(
    program: Program, chunk: EagerChunk, state: dict[str, Tensor], u: tuple, lr: float, mu: float
) -> tuple[Tensor, Tensor | None]:
    """Program.delta_and_momentum's arithmetic (bit-identical), into the chunk's buffers."""
    t, s = u
    c = program.sign * lr
    if t is None:  # a constant U: the reference's 0-d tensor times the scalar, then expanded
        scaled = chunk.own("scaled").fill_(float(torch.tensor(s, dtype=chunk.ws.dtype) * c))
    elif chunk.scratch(t):  # s is +-1 here (a negation the plan did not materialize): exact
        scaled = t.mul_(s * c)  # in place: the plan is done with its buffers
    else:
        scaled = torch.mul(t, s * c, out=chunk.own("scaled"))
    if program.momentum == "none":
        return scaled, None
    nxt = torch.mul(state[MOMENTUM_KEY], mu, out=chunk.own("spare"))
    nxt.add_(scaled)
    if program.momentum == "momentum":
        return nxt, nxt
    if program.nesterov == "standard":
        delta = torch.mul(nxt, mu, out=chunk.own("delta"))
        return delta.add_(scaled), nxt
    return torch.add(nxt, scaled, out=chunk.own("delta")), nxt  # the search code's form


def _folded_update(
    program: Program, chunk: EagerChunk, state: dict[str, Tensor], u: tuple, lr: float, mu: float
) -> tuple[Tensor | None, Tensor | None]:
    """The update with U's scale folded into the ops: without momentum, written directly when
    provably finite (returns None), else formed for the element-wise check."""
    t, s = u
    if t is None:  # a constant update
        t = chunk.own("scaled").fill_(s)
        s = 1.0
    c = s * program.sign * lr
    if program.momentum == "none":
        if _bounded(t, c):
            add_update(chunk, t, c)
            return None, None
        return torch.mul(t, c, out=chunk.own("delta")), None
    nxt = torch.mul(state[MOMENTUM_KEY], mu, out=chunk.own("spare"))
    nxt.add_(t, alpha=c)
    if program.momentum == "momentum":
        return nxt, nxt
    if program.nesterov == "standard":
        delta = torch.mul(nxt, mu, out=chunk.own("delta"))
        return delta.add_(t, alpha=c), nxt
    return torch.add(nxt, t, alpha=c, out=chunk.own("delta")), nxt


def _sgd_step(program: Program, plan: Plan, chunk: EagerChunk, lr: float) -> bool:
    """U = +-g without momentum: ``p += c g`` straight from the gradients, as
    ``torch.optim.SGD(foreach=True)`` does (one multiply-add, no gathering). The guard reads the
    gradients once with the multi-tensor finiteness check of AMP's grad scaler (scale 1: every
    value is written back unchanged); finite g and |c| <= 1 make every c g finite. False (nothing
    written) when that cannot be shown cheaply: the caller then takes the general path, which
    checks the update itself."""
    c = plan.gradient_sign * program.sign * lr
    if not abs(c) <= 1.0:
        return False
    grads = [p.grad for p in chunk.params]
    if any(g.requires_grad for g in grads):  # type: ignore[union-attr]
        return False
    found = chunk.found_inf
    if found is None:
        found = chunk.found_inf = torch.zeros(1, device=chunk.ws.device)
        chunk.one = torch.ones(1, device=chunk.ws.device)
    found.zero_()
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, chunk.one)  # type: ignore[arg-type]
    except RuntimeError:  # e.g. an expanded gradient that cannot be written back
        return False
    if found.item() != 0.0:
        return False
    torch._foreach_add_(chunk.params, grads, alpha=c)  # type: ignore[arg-type]
    return True


def _bounded(t: Tensor, c: float) -> bool:
    """True if every element of ``c * t`` is provably finite: ``|c| ||t||_2`` (NaN or inf if t
    holds one) stays below the dtype's largest value with margin."""
    big = torch.finfo(t.dtype).max
    if not math.isfinite(c) or abs(c) >= big:
        return False
    norm = float(torch.linalg.vector_norm(t))
    return math.isfinite(norm) and abs(c) * norm * _BOUND_MARGIN < big


def add_update(chunk: EagerChunk, t: Tensor, alpha: float = 1.0) -> None:
    """``params += alpha * t`` (``t`` flat over the chunk)."""
    if len(chunk.params) == 1:
        chunk.params[0].add_(t.view_as(chunk.params[0]), alpha=alpha)
    else:
        torch._foreach_add_(chunk.params, chunk.views(t), alpha=alpha)


def all_finite(x: Tensor, total: Tensor | None = None) -> bool:
    """True if no element is NaN/inf. A sum is ~10x cheaper than ``isfinite().all()`` and is
    finite whenever all elements are (barring float overflow of the sum itself, which the
    exact check below then rules in or out). ``total`` is ``x.sum()`` if the caller has it
    (the compiled step computes it in the same loops as ``x``)."""
    if bool(torch.isfinite(x.sum() if total is None else total)):
        return True
    return bool(torch.isfinite(x).all())
