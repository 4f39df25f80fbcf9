"""The integrity check of many genomes in one stacked pass (spec §6).

:func:`nosplug.evaluation.integrity.integrity_check` runs one genome's 12 sphere problems (6
rates x 2 signs, 5 variables each) as one 60-element vector: a few hundred tiny tensor ops per
genome, so the time goes into per-op overhead, not arithmetic. Here G genomes run together: every
genome's values live in one register file ``[G * registers, 60]``, and each step runs

* the EMA updates and the operands once for all genomes (elementwise, so per genome exactly
  what the single check computes);
* instruction by instruction position ("level"), one call per *primitive* present at that level:
  the rows of every genome whose instruction there is that primitive are gathered, multiplied by
  their edges' decay values, put through the op's own function and scattered back. Different
  genome structures therefore share the op calls: about 35 primitives x 5 levels, whatever G is;
* momentum, the sign flip and the per-run learning rates as in :meth:`Program.delta`.

Per-parameter ops (clip-by-norm) see each run of each genome as its own segment, state-holding
ops a state row per genome and node, and stochastic ops (dropout) the very random numbers the
single check would draw: the generator is seeded alike for every genome, so its d-th draw (in the
order the single check makes them) is precomputed once, each genome picks its own, and the op's
``batched`` form (the op given its draws, a field of its record) applies it. Every genome
therefore computes the single check's operations on the same values, and the results are the
single check's up to the last bit of some vectorised math functions (tested: identical decisions
on random genomes of the paper's space).

Genomes the stacked pass cannot reproduce exactly (a stochastic op without a ``batched`` form)
are left to the single check by the caller (:func:`stackable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from nosplug.evaluation.sphere import IntegrityConfig, Layout
from nosplug.genome.graph import DecayGraph, DecayNode
from nosplug.genome.ids import HIDDEN
from nosplug.optim.program import Program
from nosplug.optim.schedules import cycled_momentum, warmup_hold_cosine_factor
from nosplug.primitives.base import ExecContext, OperandContext, StatefulOp
from nosplug.primitives.registry import Registry


class DecayValues:
    """``evaluate_decay`` for many decay graphs, sharing the schedules' values: the same functions
    on the same inputs (so the same values), each schedule computed once per run length instead
    of once per decay graph (which was most of a batch's set-up)."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self._schedules: dict[tuple[str, int], Tensor] = {}

    def __call__(self, decay: DecayGraph, total_steps: int) -> Tensor:
        """d(t) for t = 0 .. total_steps-1, as :func:`nosplug.genome.decay.evaluate_decay`."""
        local: dict[str, Tensor] = {}

        def source(name: str) -> Tensor:
            if name == HIDDEN:
                if name not in local:
                    local[name] = node(decay.hidden)
                return local[name]
            key = (name, total_steps)
            if key not in self._schedules:
                t = torch.arange(total_steps, dtype=torch.float64)
                self._schedules[key] = self.reg.schedule(name).fn(t, total_steps)
            return self._schedules[key]

        def node(n: DecayNode) -> Tensor:
            args = [source(s) for s in n.inputs]
            if n.arity == 1:
                return self.reg.decay_unary(n.unary).fn(args[0])
            return self.reg.decay_binary(n.binary).fn(args[0], args[1])

        return node(decay.out)

    def check(self, decay: DecayGraph, steps: int) -> bool:
        """:func:`nosplug.genome.decay.decay_check`: finite and within [0, 1] over ``steps``."""
        v = self(decay, steps)
        return bool(torch.isfinite(v).all() and (v >= 0).all() and (v <= 1).all())

    def table(self, program: Program, total_steps: int) -> Tensor | None:
        """:meth:`Program.decay_table`, or None without decays."""
        if not program.decays:
            return None
        return torch.stack([self(d, total_steps) for d in program.decays])


def stackable(program: Program) -> bool:
    """False if a stochastic op has no ``batched`` form (its random draws cannot be replayed)."""
    return all(not _draws(ins.record) or ins.record.batched is not None for ins in program.instructions)


def _draws(rec: Any) -> bool:
    """Whether the op draws random numbers (one uniform draw shaped like its input per call)."""
    return bool(getattr(rec, "stochastic", False))


@dataclass
class _Group:
    """One op call per step: rows of the genomes whose instruction at this level is ``record``."""

    record: Any
    rows: list[int] = field(default_factory=list)  # genome indices
    outs: list[int] = field(default_factory=list)  # register of the result, per row
    args: list[list[int]] = field(default_factory=list)  # per argument: register per row
    decays: list[list[Tensor | None]] = field(default_factory=list)  # per argument: d(t) per row
    ranks: list[int] = field(default_factory=list)  # stochastic: this node's rank among its genome's
    per_step: list[int] = field(default_factory=list)  # stochastic: the genome's draws per step

    def freeze(self, n_regs: int, steps: int) -> _Frozen:
        k = len(self.rows)
        rows = torch.tensor(self.rows)
        args = [rows * n_regs + torch.tensor(a) for a in self.args]
        factors: list[Tensor | None] = []
        for per_row in self.decays:
            if all(d is None for d in per_row):
                factors.append(None)
                continue
            ones = torch.ones(steps, dtype=torch.float64)
            table = torch.stack([ones if d is None else d[:steps] for d in per_row], dim=1)  # [steps, k]
            factors.append(table.unsqueeze(-1))
        draws = None
        if self.ranks:
            draws = (torch.tensor(self.per_step), torch.tensor(self.ranks))
        return _Frozen(self.record, k, rows, rows * n_regs + torch.tensor(self.outs), args, factors, draws)


@dataclass
class _Frozen:
    record: Any
    k: int
    rows: Tensor
    out: Tensor  # flat register index per row
    args: list[Tensor]
    factors: list[Tensor | None]  # [steps, k, 1] decay values, or None (no decayed edge)
    draws: tuple[Tensor, Tensor] | None  # stochastic: (draws per step, rank) per row


def sphere_finals(
    programs: Sequence[Program],
    cfg: IntegrityConfig,
    seed: int = 0,
    tables: Sequence[Tensor | None] | None = None,
) -> Tensor:
    """Run the integrity check's sphere problems for every program; the sphere value after
    ``iterations - 1`` updates per (program, run): ``[len(programs), runs]`` float64.
    ``tables``: each program's :meth:`Program.decay_table` for ``cfg.iterations``, if known."""
    lay = Layout.of(cfg)
    e = lay.e
    G, T = len(programs), cfg.iterations
    f64 = torch.float64

    # registers: the union of operands, then each genome's instructions by position
    operand_refs: dict[str, int] = {}
    for p in programs:
        for op in p.operands:
            operand_refs.setdefault(op.name, len(operand_refs))
    operands = {}
    for p in programs:
        for op in p.operands:
            operands.setdefault(op.name, op)
    n_ops = len(operand_refs)
    n_regs = n_ops + max((len(p.instructions) for p in programs), default=0)
    specs: dict[str, Any] = {}
    for p in programs:
        for spec in p.ema_specs:
            specs.setdefault(spec.key, spec)

    groups: dict[tuple[int, int], _Group] = {}
    results: list[int] = []
    stateful_slots: dict[tuple[int, int], int] = {}
    for j, p in enumerate(programs):
        table = tables[j] if tables is not None else (p.decay_table(T) if p.decays else None)
        op_reg = [operand_refs[op.name] for op in p.operands]
        regs: list[int] = []  # register of each instruction's value (identity nodes alias)
        n_drop = sum(1 for ins in p.instructions if _draws(ins.record))
        rank = 0
        for i, ins in enumerate(p.instructions):
            arg_regs = [op_reg[a.index] if a.kind == "operand" else regs[a.index] for a in ins.args]
            arg_decays = [None if a.decay < 0 else table[a.decay] for a in ins.args]  # type: ignore[index]
            if ins.identity and arg_decays[0] is None:
                regs.append(arg_regs[0])
                continue
            grp = groups.setdefault((i, id(ins.record)), _Group(ins.record))
            grp.rows.append(j)
            grp.outs.append(n_ops + i)
            if not grp.args:
                grp.args = [[] for _ in arg_regs]
                grp.decays = [[] for _ in arg_regs]
            for a, reg, d in zip(range(len(arg_regs)), arg_regs, arg_decays):
                grp.args[a].append(reg)
                grp.decays[a].append(d)
            if _draws(ins.record):
                grp.ranks.append(rank)
                grp.per_step.append(n_drop)
                rank += 1
            if ins.stateful:
                stateful_slots[(j, i)] = len(stateful_slots)
            regs.append(n_ops + i)
        results.append(j * n_regs + regs[-1])
    frozen = [groups[key].freeze(n_regs, T - 1) for key in sorted(groups, key=lambda k: k[0])]
    max_draws = max((int(g.draws[0].max()) for g in frozen if g.draws is not None), default=0) * (T - 1)
    gen = torch.Generator().manual_seed(seed)
    draws = (
        torch.stack([torch.rand((e,), generator=gen, dtype=f64) for _ in range(max_draws)])
        if max_draws
        else None
    )
    state_rows = {
        id(g): torch.tensor(
            [
                stateful_slots[(row, int(o) % n_regs - n_ops)]
                for row, o in zip(g.rows.tolist(), g.out.tolist())
            ]
        )
        for g in frozen
        if isinstance(g.record, StatefulOp)
    }
    node_states = torch.zeros(max(1, len(stateful_slots)), e, dtype=f64)
    result_idx = torch.tensor(results)

    x = lay.x0.repeat(G)
    b = lay.b.repeat(G)
    signed_lr = lay.signed_lr
    sign = torch.tensor([p.sign for p in programs], dtype=f64).unsqueeze(1)
    kinds = [p.momentum if p.momentum != "nesterov" else f"nesterov-{p.nesterov}" for p in programs]
    has = {kind: torch.tensor([k == kind for k in kinds]).unsqueeze(1) for kind in set(kinds)}
    emas = {key: torch.zeros(G * e, dtype=f64) for key in specs}
    momentum = torch.zeros(G, e, dtype=f64)
    vals = torch.zeros(G * n_regs, e, dtype=f64)
    vals3 = vals.view(G, n_regs, e)
    seg_cache: dict[int, Tensor] = {}
    W = cfg.warmup_steps
    with torch.no_grad():
        for t in range(T - 1):
            g = 2.0 * (x - b)
            for spec in specs.values():  # Program.update_value's EMA updates
                spec.update(emas[spec.key], g)
            octx = OperandContext(g=g, w=x, step=t + 1, emas=emas)
            for name, o in operand_refs.items():
                v = operands[name].compute(octx)
                if isinstance(v, Tensor):
                    vals3[:, o, :] = v.view(G, e) if v.dim() else v
                else:
                    vals3[:, o, :] = torch.tensor(v, dtype=f64)  # the reference's 0-d constant, broadcast
            for grp in frozen:
                xs = []
                for idx, fac in zip(grp.args, grp.factors):
                    v = vals.index_select(0, idx)
                    xs.append(v if fac is None else v * fac[t])
                out = _apply(grp, xs, t, lay.seg, node_states, state_rows, draws, seg_cache)
                vals.index_copy_(0, grp.out, out)
            u = vals.index_select(0, result_idx)
            lr = signed_lr * warmup_hold_cosine_factor(t, T, W, 0)
            mu = cycled_momentum(t, T, W, 0)
            scaled = u * lr * sign  # Program.delta_and_momentum with a tensor lr
            new_buf = momentum * mu + scaled
            delta = scaled
            if "momentum" in has:
                delta = torch.where(has["momentum"], new_buf, delta)
            if "nesterov-standard" in has:
                delta = torch.where(has["nesterov-standard"], new_buf * mu + scaled, delta)
            if "nesterov-reference" in has:
                delta = torch.where(has["nesterov-reference"], new_buf + scaled, delta)
            momentum = torch.where(has.get("none", torch.zeros(1, 1, dtype=torch.bool)), momentum, new_buf)
            x = x + delta.reshape(-1)
    return lay.finals(x.view(G, e))


def _apply(
    grp: _Frozen,
    xs: list[Tensor],
    t: int,
    seg: Tensor,
    node_states: Tensor,
    state_rows: dict[int, Tensor],
    draws: Tensor | None,
    seg_cache: dict[int, Tensor],
) -> Tensor:
    """The op on the gathered rows ``xs`` (each ``[k, e]``), flat as the single check sees them."""
    rec, k = grp.record, grp.k
    e, n_seg = seg.numel(), int(seg[-1]) + 1
    flat = [v.reshape(-1) for v in xs]
    if grp.draws is not None:  # a stochastic op: the single check's own draws, replayed
        per_step, rank = grp.draws
        return rec.batched(xs[0], draws.index_select(0, per_step * t + rank))  # type: ignore[union-attr]
    needs_ctx = isinstance(rec, StatefulOp) or getattr(rec, "needs_ctx", False)
    if not needs_ctx:
        return rec.fn(*flat).view(k, e)
    segs = seg_cache.get(k)
    if segs is None:  # every run (and the padding) of every genome is its own "parameter tensor"
        segs = seg_cache[k] = (torch.arange(k).unsqueeze(1) * n_seg + seg).reshape(-1)
    ctx = ExecContext(numel=k * e, segment_ids=segs, num_segments=k * n_seg)
    ctx._cache["step"] = t + 1
    if isinstance(rec, StatefulOp):
        rows = state_rows[id(grp)]
        state = node_states.index_select(0, rows).reshape(-1)
        out = rec.fn(flat[0], state, ctx)
        node_states.index_copy_(0, rows, state.view(k, e))
        return out.view(k, e)
    return rec.fn(flat[0], ctx).view(k, e)
