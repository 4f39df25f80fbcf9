"""Lower a compiled genome (:class:`~nosplug.optim.program.Program`) to an allocation-free plan.

The reference interpreter (:meth:`Program.update_value`) allocates a fresh tensor for every
primitive and multiplies by every scalar as it comes: an Adam step costs about a dozen passes
over the parameters, and the allocations of large tensors cost page faults on top. The plan runs
the same computation with

* **scalar folding**: values are ``(tensor, scale)`` pairs, so bias corrections, constants,
  weight factors and decay values ride along as Python floats and are folded into an op the
  genome needs anyway (each op's kernel, see :mod:`nosplug.primitives.kernel`);
* **preallocated buffers**: every intermediate result is written (``out=``) into one of a few
  buffers, assigned once by liveness (a buffer is reused as soon as the last reader has run);
  EMA and state buffers are read in place, never copied.

A plan depends only on the program; it runs on the buffers it is given (``n_slots`` flat buffers
of the chunk's size: the optimizer's workspace, :mod:`nosplug.optim.chunks`).
:mod:`nosplug.optim.executor` adds momentum, the finiteness guard and the write into the
parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nosplug.optim.kernels import ArgInfo, Kernel, Runtime, Val, fdiv, lower_binary, lower_unary
from nosplug.optim.program import Program, node_state_key
from nosplug.primitives.base import EMASpec, ExecContext, Operand, OperandContext

G, W = 0, 1  # registers of the gradient and the weight
#: Tests set this: every kernel's result is checked to live where the plan assigned it.
CHECK_BUFFERS = False


@dataclass
class _Def:
    """One step of the plan: run ``kernel`` on registers ``args`` (each optionally scaled by an
    edge's decay), write register ``out`` (-1: an in-place effect such as an EMA update)."""

    kernel: Kernel
    args: tuple[tuple[int, int], ...]  # (register, decay index or -1)
    out: int
    out_slot: int = -1
    temp_slots: tuple[int, ...] = ()


@dataclass
class _Reg:
    scalar: bool = False
    nonneg: bool = False
    buf: object = None  # ("slot", i) | ("state", key) | ("input", name) | None (own allocation/scalar)
    alias_of: int = -1  # the register whose tensor this one is (with another scale)
    unit: bool = True  # exact plans: the scale is exactly 1 (not a negation's -1)


class Plan:
    """``program`` lowered: :meth:`run` advances EMA and node state and returns U as ``(tensor,
    scale)`` (or ``(None, x)`` for a constant U), writing only into the workspace's buffers."""

    def __init__(self, program: Program, exact: bool = True) -> None:
        self.program = program
        self.exact = exact
        self.regs: list[_Reg] = [_Reg(buf=("input", "g")), _Reg(buf=("input", "w"))]
        self.defs: list[_Def] = []
        self._gpow: dict[int, int] = {1: G}
        for spec in program.ema_specs:  # g**p of higher EMAs first: operands may share it
            if spec.power >= 3:
                self._gpow_reg(spec.power)
        for spec in program.ema_specs:
            args = ((G, -1), (self._gpow_reg(spec.power), -1)) if spec.power >= 3 else ((G, -1),)
            self.defs.append(_Def(_ema_update(spec), args, -1))
        operand_regs = [self._operand(op) for op in program.operands]
        instr_regs: list[int] = []
        #: the register of each operand and instruction (what the exporter asks about signs)
        self.operand_regs, self.instr_regs = operand_regs, instr_regs
        for ins in program.instructions:
            args = tuple(
                (operand_regs[a.index] if a.kind == "operand" else instr_regs[a.index], a.decay)
                for a in ins.args
            )
            infos = [
                ArgInfo(
                    self.regs[r].scalar, self.regs[r].nonneg, k >= 0 or not exact or not self.regs[r].unit
                )
                for r, k in args
            ]
            if len(args) == 1:
                kernel = lower_unary(ins.record, infos[0], node_state_key(ins.node_id), exact)  # type: ignore[arg-type]
            else:
                kernel = lower_binary(ins.record, infos[0], infos[1], exact)  # type: ignore[arg-type]
            instr_regs.append(self._define(kernel, args, state_key=node_state_key(ins.node_id)))
        self.result = instr_regs[-1]

        self.n_slots = self._assign_slots()
        #: U is +-g itself (identity and negation nodes only): SGD and its momentum forms
        self.gradient_only = self.regs[self.result].buf == ("input", "g") and all(
            d.kernel.out.startswith("alias") and all(k < 0 for _, k in d.args) for d in self.defs
        )
        self.gradient_sign = 1.0  # U = gradient_sign * g when gradient_only
        if self.gradient_only:  # the alias kernels only flip signs: run them on a stand-in
            regs: list[Val] = [(None, 1.0)] * len(self.regs)
            for d in self.defs:
                regs[d.out] = d.kernel.run([regs[r] for r, _ in d.args], None, [], None)  # type: ignore[arg-type]
            self.gradient_sign = regs[self.result][1]

    def nonneg_arg(self, instruction: int, arg: int) -> bool:
        """Whether argument ``arg`` of instruction ``instruction`` is known to be +0 or more (or
        NaN) in every element, and arrives without a decay (its own value, not a scaled one)."""
        a = self.program.instructions[instruction].args[arg]
        if a.decay >= 0:
            return False
        reg = self.operand_regs[a.index] if a.kind == "operand" else self.instr_regs[a.index]
        return self.regs[reg].nonneg and self.regs[reg].unit

    # -- building ---------------------------------------------------------------------------
    def _define(self, kernel: Kernel, args: tuple[tuple[int, int], ...], state_key: str | None = None) -> int:
        reg = _Reg(scalar=kernel.out == "scalar", nonneg=kernel.nonneg)
        if kernel.out.startswith("alias"):
            reg.alias_of = args[int(kernel.out[-1])][0]
            reg.unit = self.regs[reg.alias_of].unit and not kernel.negates
        elif kernel.out == "state":
            reg.buf = ("state", state_key)
        self.regs.append(reg)
        self.defs.append(_Def(kernel, args, len(self.regs) - 1))
        return len(self.regs) - 1

    def _gpow_reg(self, power: int) -> int:
        if power not in self._gpow:
            if power == 2:

                def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                    torch.mul(a[0][0], a[0][0], out=o)  # OperandContext.gpow: g * g
                    return o, 1.0

            else:

                def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                    torch.pow(a[0][0], power, out=o)  # type: ignore[arg-type]
                    return o, 1.0

            self._gpow[power] = self._define(Kernel(run, "slot", nonneg=power % 2 == 0), ((G, -1),))
        return self._gpow[power]

    def _operand(self, op: Operand) -> int:
        form = op.form
        kind = form[0] if form else None
        if kind == "grad":
            return self._gpow_reg(form[1])
        if kind == "const":
            value = float(form[1])
            return self._define(Kernel(lambda a, o, t, rt: (None, _rounded(value, rt)), "scalar"), ())
        if kind == "weight":
            scale = float(form[1])
            if self.exact:

                def run_weight(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                    torch.mul(a[0][0], scale, out=o)  # type: ignore[arg-type]
                    return o, 1.0

                return self._define(Kernel(run_weight, "slot"), ((W, -1),))
            return self._define(Kernel(lambda a, o, t, rt: (a[0][0], scale), "alias0"), ((W, -1),))
        if kind == "ema":
            return self._ema_operand(form[1], form[2])
        if kind in ("sign_grad", "sign_ema"):
            key = form[1].key if kind == "sign_ema" else None

            def run_sign(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                torch.sign(a[0][0] if key is None else rt.state[key], out=o)  # type: ignore[arg-type]
                return o, 1.0

            return self._define(Kernel(run_sign, "slot"), ((G, -1),))
        if kind == "qh":
            _, power, spec, nu = form

            def run_qh(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                torch.div(rt.state[spec.key], 1.0 - spec.beta**rt.step, out=o)  # OperandContext.ema_hat
                torch.lerp(a[0][0], o, nu, out=o)  # type: ignore[arg-type]
                return o, 1.0

            return self._define(Kernel(run_qh, "slot"), ((self._gpow_reg(power), -1),))
        if kind == "aggmo":
            _, power, spec, c = form

            def run_aggmo(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                torch.mul(rt.state[spec.key], c, out=o)
                o.sub_(a[0][0])  # type: ignore[union-attr, arg-type]
                return o, 1.0

            return self._define(Kernel(run_aggmo, "slot"), ((self._gpow_reg(power), -1),))

        def run_generic(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            g, w = a[0][0], a[1][0]
            v = op.compute(OperandContext(g=g, w=w, step=rt.step, emas=rt.state))  # type: ignore[arg-type]
            if not isinstance(v, Tensor) or v.dim() == 0:  # a constant, full as a 0-d would broadcast
                return torch.full_like(g, float(v)), 1.0  # type: ignore[arg-type]
            return v, 1.0

        return self._define(Kernel(run_generic, "new"), ((G, -1), (W, -1)))

    def _ema_operand(self, spec: EMASpec, bias_correction: bool) -> int:
        nonneg = spec.power % 2 == 0 and 0.0 <= spec.beta <= 1.0
        if not bias_correction or (0.0 <= spec.beta < 1.0 and not self.exact):  # a finite scale >= 1

            def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                scale = 1.0 / (1.0 - spec.beta**rt.step) if bias_correction else 1.0
                return rt.state[spec.key], scale

            return self._define(Kernel(run, "state", nonneg=nonneg), (), state_key=spec.key)

        def run_div(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            torch.div(rt.state[spec.key], 1.0 - spec.beta**rt.step, out=o)
            return o, 1.0

        return self._define(Kernel(run_div, "slot", nonneg=nonneg and spec.beta < 1.0), ())

    def _assign_slots(self) -> int:
        """Give every ``slot`` result and kernel temp a buffer, reusing buffers whose readers have
        all run. A result never shares a buffer with an argument (kernels may read arguments
        after starting to write), and the result U stays live to the end."""
        last_use = [-1] * len(self.regs)
        for i, d in enumerate(self.defs):
            for r, _ in d.args:
                last_use[r] = i
            if d.out >= 0:
                last_use[d.out] = max(last_use[d.out], i)
        last_use[self.result] = len(self.defs)
        refs: dict[int, int] = {}
        free: list[int] = []
        n = 0

        def take(exclude: set[int]) -> int:
            nonlocal n
            for s in sorted(free):
                if s not in exclude:
                    free.remove(s)
                    return s
            n += 1
            return n - 1

        for i, d in enumerate(self.defs):
            used: set[int] = set()
            if d.kernel.out == "slot":
                d.out_slot = take(used)
                used.add(d.out_slot)
                self.regs[d.out].buf = ("slot", d.out_slot)
            temps = []
            for _ in range(d.kernel.temps):
                s = take(used)
                used.add(s)
                temps.append(s)
            d.temp_slots = tuple(temps)
            free.extend(temps)
            if d.out >= 0 and self.regs[d.out].alias_of >= 0:
                self.regs[d.out].buf = self.regs[self.regs[d.out].alias_of].buf
            if d.out >= 0:
                buf = self.regs[d.out].buf
                if isinstance(buf, tuple) and buf[0] == "slot":
                    refs[buf[1]] = refs.get(buf[1], 0) + 1
            for r in {r for r, _ in d.args} | ({d.out} if d.out >= 0 else set()):
                if last_use[r] == i:
                    buf = self.regs[r].buf
                    if isinstance(buf, tuple) and buf[0] == "slot":
                        refs[buf[1]] -= 1
                        if refs[buf[1]] == 0:
                            free.append(buf[1])
        return n

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        slots: Sequence[Tensor],
        state: dict[str, Tensor],
        w: Tensor | None,
        g: Tensor,
        *,
        step: int,
        decays: Sequence[float],
        ctx: ExecContext,
    ) -> Val:
        """Advance EMA and node state with gradient ``g`` (0-based ``step``) and return U, using
        ``slots`` (at least :attr:`n_slots` buffers shaped like ``g``) for every intermediate."""
        rt = Runtime(g.dtype, g.device, step + 1, ctx, state)
        regs: list[Val] = [(g, 1.0), (w, 1.0)] + [(None, 0.0)] * (len(self.regs) - 2)  # type: ignore[list-item]
        exact = self.exact
        for d in self.defs:
            args = [regs[r] if k < 0 else _decayed(regs[r], decays[k], exact, rt) for r, k in d.args]
            out = slots[d.out_slot] if d.out_slot >= 0 else None
            v = d.kernel.run(args, out, [slots[s] for s in d.temp_slots], rt)
            if d.out >= 0:
                regs[d.out] = v
                if CHECK_BUFFERS:
                    _check(d, v, args, out, state)
        return regs[self.result]


def _check(d: _Def, v: Val, args: list[Val], out: Tensor | None, state: dict[str, Tensor]) -> None:
    kind, t = d.kernel.out, v[0]
    if kind == "slot":
        assert t is out, f"{d.kernel.run.__qualname__} did not write its slot"
    elif kind.startswith("alias"):
        assert t is args[int(kind[-1])][0], f"{d.kernel.run.__qualname__} is no alias"
    elif kind == "state":
        assert any(t is s for s in state.values())
    elif kind == "scalar":
        assert t is None


def _decayed(v: Val, d: float, exact: bool, rt: Runtime) -> Val:
    """A value that travels along an edge with decay value ``d``. Tensors take d into their
    scale (a kernel applies it: fl(x * d), as the reference); an exact constant is multiplied as
    the reference's 0-d tensor would be."""
    t, s = v
    if t is None and exact:
        return None, float(rt.host_scalar(s) * d)
    return t, s * d


def _ema_update(spec: EMASpec) -> Kernel:
    """The EMA update of the reference interpreter, in place (an effect, no result)."""
    beta, power = spec.beta, spec.power

    def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        buf, g = rt.state[spec.key], a[0][0]
        if power == 1:
            buf.lerp_(g, 1.0 - beta)
        elif power == 2:
            buf.mul_(beta).addcmul_(g, g, value=1.0 - beta)
        else:
            buf.mul_(beta).add_(a[1][0], alpha=1.0 - beta)  # type: ignore[arg-type]
        return None, 0.0

    return Kernel(run, "effect")


_ROUNDED: dict[tuple[float, torch.dtype], float] = {}


def _rounded(value: float, rt: Runtime) -> float:
    """A constant as the reference holds it: rounded to the parameters' dtype."""
    key = (value, rt.dtype)
    r = _ROUNDED.get(key)
    if r is None:
        r = _ROUNDED[key] = float(torch.tensor(value, dtype=rt.dtype)) if math.isfinite(value) else value
    return r


__all__ = ["Plan", "fdiv"]
