"""Compile a genome into a straight-line program over flat tensors.

The program is what both :class:`~nosplug.optim.GraphOptimizer` and the integrity check run.
It works on one flat vector per chunk of parameters (all tensors of a param group that share
device, dtype and step), so each primitive is one tensor op however many parameter tensors
the model has; per-tensor reductions go through :class:`~nosplug.primitives.ExecContext`.

Only what the active graph reads is computed and stored: the EMA slots its operands require,
the state of its state-holding nodes, and a momentum buffer if the genome has momentum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nosplug.genome.graph import DecayGraph
from nosplug.genome.model import Genome
from nosplug.primitives.base import EMASpec, ExecContext, Operand, OperandContext
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry

MOMENTUM_KEY = "momentum_buffer"


def node_state_key(node_id: str) -> str:
    return f"node_{node_id}"


@dataclass(frozen=True)
class _Arg:
    kind: str  # "operand" | "node"
    index: int  # operand index or instruction index
    decay: int  # index into Program.decays, or -1


@dataclass(frozen=True)
class _Instr:
    node_id: str
    fn: object
    args: tuple[_Arg, ...]
    stateful: bool
    needs_ctx: bool
    identity: bool
    record: object = None  # the op's registry record (UnaryOp, StatefulOp or BinaryOp)


class Program:
    """A genome compiled for execution: operands, instructions, decays and state layout."""

    def __init__(self, genome: Genome, reg: Registry | None = None) -> None:
        reg = reg or default_registry()
        genome.validate(reg)
        self.genome = genome
        self.momentum = genome.momentum
        self.nesterov = genome.nesterov
        self.sign = 1.0 if genome.flip else -1.0
        order = genome.topological_order()
        ids = set(genome.node_ids)

        operand_refs: list[str] = []
        self.decays: list[DecayGraph] = []
        position: dict[str, int] = {}
        instrs: list[_Instr] = []
        for node in order:
            args = []
            for e in node.inputs:
                decay_idx = -1
                if e.decay is not None:
                    self.decays.append(e.decay)
                    decay_idx = len(self.decays) - 1
                if e.src in ids:
                    args.append(_Arg("node", position[e.src], decay_idx))
                else:
                    if e.src not in operand_refs:
                        operand_refs.append(e.src)
                    args.append(_Arg("operand", operand_refs.index(e.src), decay_idx))
            if node.arity == 1:
                op = reg.unary(node.unary)
                stateful = reg.is_stateful(node.unary)
                needs_ctx = stateful or getattr(op, "needs_ctx", False)
                identity = node.unary == "identity"
            else:
                op = reg.binary(node.binary)
                stateful, needs_ctx, identity = False, False, False
            position[node.id] = len(instrs)
            instrs.append(_Instr(node.id, op.fn, tuple(args), stateful, needs_ctx, identity, op))
        self.instructions = tuple(instrs)
        self.operands: tuple[Operand, ...] = tuple(reg.operand(r) for r in operand_refs)
        specs: dict[str, EMASpec] = {}
        for op in self.operands:
            for spec in op.requires:
                specs.setdefault(spec.key, spec)
        self.ema_specs = tuple(specs.values())
        self.stateful_nodes = tuple(i.node_id for i in instrs if i.stateful)
        self.needs_weight = any(o.uses_weight for o in self.operands)
        self.needs_segments = any(i.needs_ctx and not i.stateful for i in instrs)
        self.stochastic = any(getattr(reg.unary(n.unary), "stochastic", False) for n in order if n.arity == 1)
        self._registry = reg
        self._decay_tables: dict[int, Tensor] = {}
        self._decay_rows: dict[int, list[list[float]]] = {}

    def correction_betas(self) -> tuple[float, ...]:
        """Betas whose bias correction ``1 - beta**step`` the genome may read (EMA operands and
        the ema95 op), for callers that precompute them."""
        return tuple(sorted({s.beta for s in self.ema_specs} | {0.95}))

    # -- state --------------------------------------------------------------------------
    def state_keys(self) -> list[str]:
        keys = [s.key for s in self.ema_specs]
        keys += [node_state_key(n) for n in self.stateful_nodes]
        if self.momentum != "none":
            keys.append(MOMENTUM_KEY)
        return keys

    def init_state(self, w: Tensor) -> dict[str, Tensor]:
        """Zero state shaped like ``w`` for every slot the program uses."""
        return {k: torch.zeros_like(w, memory_format=torch.preserve_format) for k in self.state_keys()}

    # -- decays ---------------------------------------------------------------------------
    def decay_values(self, step: int, total_steps: int | None) -> list[float]:
        """d(t) of every decayed edge at 0-based ``step`` of a run of ``total_steps``."""
        if not self.decays:
            return []
        if total_steps is None:
            raise ValueError(
                "this genome has decay functions, which depend on the run length: pass total_steps"
            )
        rows = self._decay_rows.get(total_steps)
        if rows is None:  # read once: no tensor is read back on every step
            rows = self._decay_rows[total_steps] = self.decay_table(total_steps).t().tolist()
            if len(self._decay_rows) > 8:
                self._decay_rows = {total_steps: rows}
        return rows[min(step, total_steps - 1)]

    def decay_column(self, step: int, total_steps: int | None) -> Tensor:
        """The same values as a float64 tensor (what a compiled step takes as an input)."""
        if total_steps is None:
            raise ValueError(
                "this genome has decay functions, which depend on the run length: pass total_steps"
            )
        return self.decay_table(total_steps)[:, min(step, total_steps - 1)]

    def decay_table(self, total_steps: int) -> Tensor:
        """d(t) of every decayed edge (rows) at every step t = 0 .. total_steps-1 (columns)."""
        table = self._decay_tables.get(total_steps)
        if table is None:
            from nosplug.genome.decay import evaluate_decay

            t = torch.arange(total_steps, dtype=torch.float64)
            rows = [evaluate_decay(d, t, total_steps, self._registry) for d in self.decays]
            table = torch.stack(rows) if rows else torch.empty(0, total_steps, dtype=torch.float64)
            if len(self._decay_tables) > 8:
                self._decay_tables.clear()
            self._decay_tables[total_steps] = table
        return table

    # -- execution ------------------------------------------------------------------------
    def update_value(
        self,
        state: dict[str, Tensor],
        w: Tensor,
        g: Tensor,
        *,
        step: int | Tensor,
        total_steps: int | None = None,
        ctx: ExecContext | None = None,
        decays: Sequence[float] | Tensor | None = None,
        corrections: Mapping[float, Tensor] | None = None,
    ) -> Tensor:
        """Advance EMA and node state with gradient ``g`` and return the root value U.

        ``step`` may be a 0-d tensor and ``decays`` (the edges' d(t), else computed from
        ``step`` and ``total_steps``) a tensor: a compiled step passes them as inputs, so that
        changing values never force a recompilation; it also passes the bias corrections
        ``1 - beta**step`` of :meth:`correction_betas` precomputed in ``corrections``.
        """
        k1 = step + 1
        for spec in self.ema_specs:
            spec.update(state[spec.key], g)
        octx = OperandContext(g=g, w=w, step=k1, emas=state, corrections=corrections)
        ref = g
        values: list[Tensor] = [_tensor(op.compute(octx), ref) for op in self.operands]
        if decays is None:
            decays = self.decay_values(int(step), total_steps)
        if ctx is None:
            ctx = ExecContext(numel=g.numel())
        ctx._cache["step"] = k1
        ctx._cache["corrections"] = corrections
        outs: list[Tensor] = []
        for ins in self.instructions:
            args = []
            for a in ins.args:
                v = values[a.index] if a.kind == "operand" else outs[a.index]
                if a.decay >= 0:
                    v = v * decays[a.decay]
                args.append(v)
            if ins.identity:
                out = args[0]
            elif ins.stateful:
                out = ins.fn(args[0], state[node_state_key(ins.node_id)], ctx)
            elif ins.needs_ctx:
                out = ins.fn(args[0], ctx)
            else:
                out = ins.fn(*args)
            outs.append(out)
        return outs[-1]

    def delta(
        self,
        state: dict[str, Tensor],
        w: Tensor,
        g: Tensor,
        *,
        step: int,
        total_steps: int | None = None,
        lr: float | Tensor,
        momentum: float | Tensor = 0.9,
        ctx: ExecContext | None = None,
        commit_momentum: bool = True,
    ) -> Tensor:
        """The change to add to ``w`` for one step (spec §4), including momentum and flip.

        With ``commit_momentum=False`` the momentum buffer is returned updated in
        ``state['_momentum_next']`` instead of in place, so a caller can drop the step.
        """
        delta, new_buf = self.delta_and_momentum(
            state, w, g, step=step, total_steps=total_steps, lr=lr, momentum=momentum, ctx=ctx
        )
        if new_buf is not None:
            if commit_momentum:
                state[MOMENTUM_KEY].copy_(new_buf)
            else:
                state["_momentum_next"] = new_buf
        return delta

    def delta_and_momentum(
        self,
        state: dict[str, Tensor],
        w: Tensor,
        g: Tensor,
        *,
        step: int | Tensor,
        total_steps: int | None = None,
        lr: float | Tensor,
        momentum: float | Tensor = 0.9,
        ctx: ExecContext | None = None,
        decays: Sequence[float] | Tensor | None = None,
        corrections: Mapping[float, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """The step's change and the next momentum buffer (None without momentum), without
        writing the buffer: the pure core of :meth:`delta`, which a compiled step wraps."""
        u = self.update_value(
            state, w, g, step=step, total_steps=total_steps, ctx=ctx, decays=decays, corrections=corrections
        )
        scaled = u * (self.sign * lr) if not isinstance(lr, Tensor) else u * lr * self.sign
        if self.momentum == "none":
            return scaled, None
        new_buf = state[MOMENTUM_KEY] * momentum + scaled
        if self.momentum == "momentum":
            return new_buf, new_buf
        if self.nesterov == "standard":
            return new_buf * momentum + scaled, new_buf
        return new_buf + scaled, new_buf  # the search code's form: w <- w + m - lr*U


def _tensor(v: Tensor | float, ref: Tensor) -> Tensor:
    if isinstance(v, Tensor):
        return v
    return torch.tensor(v, dtype=ref.dtype, device=ref.device)


def compile_genome(genome: Genome, reg: Registry | None = None) -> Program:
    """Compile ``genome``; programs are cheap to build, so no global cache is kept."""
    return Program(genome, reg)
