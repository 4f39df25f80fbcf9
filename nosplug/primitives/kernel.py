"""The fast-kernel contract: how one primitive runs inside GraphOptimizer's lowered plan.

GraphOptimizer does not call a primitive's reference function on every step: it *lowers* the
genome once (:mod:`nosplug.optim.lowering`) into a plan whose steps write into buffers assigned
ahead of time, so a step allocates nothing. Each op node of the plan asks its record's ``kernel``
field (a :data:`Lowering`) for a :class:`Kernel`: given what the plan knows about the arguments
(:class:`KernelRequest`), it returns how to compute the op into the plan's buffers, or None to
run the record's function instead (correct, but allocating a result each step). A plugin's op
gets the fast path by setting ``kernel``; :func:`unary_out` and :func:`binary_out` build one from
an *out-form*, a function that writes the op's result into a given buffer.

A value travels through the plan as ``(tensor, scale)``: ``scale * tensor`` with the scale a Python
float, the same for every element; ``(None, x)`` is the constant ``x``. With ``exact=True`` (the
default of GraphOptimizer) a kernel must perform exactly the float operations of the record's
function, in the same order, so the results are bit-identical to the reference interpreter; the
helpers here do that by materializing every scaled argument first (the multiplication the
reference makes on a decayed edge). ``exact=False`` lets a kernel fold scales into the op it runs
anyway (see :mod:`nosplug.builtin.operation_kernels` for the built-in ops' folding).

This module imports only torch and the primitives' base records: primitives define their kernels
with it, and the optimizer runs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nosplug.primitives.base import ExecContext

#: ``scale * tensor``; ``(None, x)`` is the scalar x.
Val = tuple[Tensor | None, float]


@dataclass
class Runtime:
    """What kernels read besides their arguments during one step."""

    dtype: torch.dtype
    device: torch.device
    step: int  # 1-based, as operands and stateful ops see it
    ctx: ExecContext
    state: dict[str, Tensor]

    def scalar(self, x: float) -> Tensor:
        """``x`` as the 0-d tensor on the parameters' device the reference interpreter holds where a
        constant meets a tensor (made by a fill, so creating it never waits for the device)."""
        return torch.full((), x, dtype=self.dtype, device=self.device)

    def host_scalar(self, x: float) -> Tensor:
        """``x`` as a 0-d CPU tensor of the parameters' dtype: ops whose arguments are all
        constants run on these, so reading their result back as a float never synchronises an
        accelerator (on the CPU this is exactly :meth:`scalar`)."""
        return torch.tensor(x, dtype=self.dtype)


Run = Callable[[list[Val], Tensor | None, list[Tensor], Runtime], Val]


@dataclass(frozen=True)
class Kernel:
    """How one primitive runs: ``run(args, out, temps, rt) -> Val``.

    ``out`` says where the result's tensor lives, which the plan needs to reuse buffers:
    ``"slot"`` (the ``out`` buffer the plan assigns), ``"alias0"``/``"alias1"`` (argument 0's/1's
    tensor with another scale), ``"state"`` (the node's state buffer), ``"new"`` (allocated by the
    kernel, e.g. a record's function) or ``"scalar"`` (no tensor). ``temps`` scratch buffers of the
    argument's size are handed to ``run``. ``nonneg``: every element of the tensor is +0 or more,
    or NaN (so a later ``|.|`` can be skipped).
    """

    run: Run
    out: str
    temps: int = 0
    nonneg: bool = False
    negates: bool = False  # an alias that flips the scale's sign (the result's scale is not 1)


@dataclass(frozen=True)
class ArgInfo:
    """What the plan knows about an argument before running: scalar or tensor, sign, and
    whether it may arrive with a scale other than +-1 (through a decayed edge)."""

    scalar: bool
    nonneg: bool = False
    scaled: bool = True


@dataclass(frozen=True)
class KernelRequest:
    """What a record's :data:`Lowering` is asked to lower: the node's arguments, whether the
    result must be bit-identical to the record's function, and (state-holding ops) the key of
    the node's state tensor in :attr:`Runtime.state`."""

    args: tuple[ArgInfo, ...]
    exact: bool = True
    state_key: str | None = None


#: A record's ``kernel`` field: the kernel for a request, or None for the record's function.
Lowering = Callable[[KernelRequest], Kernel | None]


def safe(s: float) -> bool:
    """A scale we may divide by and move through an op: finite and non-zero."""
    return s != 0.0 and math.isfinite(s)


def fdiv(a: float, b: float) -> float:
    """``a / b`` with IEEE results (inf, NaN) instead of ZeroDivisionError."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def materialize(v: Val, buf: Tensor) -> Tensor:
    """``scale * tensor`` as a tensor, written into ``buf`` unless the scale is 1."""
    t, s = v
    if s == 1.0:
        return t  # type: ignore[return-value]
    torch.mul(t, s, out=buf)  # type: ignore[arg-type]
    return buf


def as_tensor(v: Val, buf: Tensor | None, rt: Runtime) -> Tensor:
    """Materialized tensor, or the 0-d tensor of a scalar (the reference's representation)."""
    if v[0] is None:
        return rt.scalar(v[1])
    if buf is None:
        t, s = v
        return t if s == 1.0 else t * s
    return materialize(v, buf)


UnaryForm = Callable[[Tensor, Tensor, list[Tensor]], None]
BinaryForm = Callable[[Tensor, Tensor, Tensor, list[Tensor]], None]


def unary_out(form: UnaryForm, *, temps: int = 0, nonneg: bool = False) -> Lowering:
    """The lowering of an elementwise unary op from its out-form ``form(x, out, temps)``, which
    writes op(x) into ``out`` (``out`` may be ``x`` itself; ``temps`` are ``temps`` scratch
    buffers of x's size). The argument is materialized first, so the kernel computes exactly
    what the record's function computes on the reference's value (``exact`` or not)."""

    def lower(req: KernelRequest) -> Kernel:
        def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            form(materialize(a[0], o), o, t)  # type: ignore[arg-type]
            return o, 1.0

        return Kernel(run, "slot", temps=temps, nonneg=nonneg)

    return lower


def binary_out(form: BinaryForm, *, temps: int = 0) -> Lowering:
    """The lowering of an elementwise binary op from its out-form ``form(x, y, out, temps)``:
    op(x, y) into ``out``, which may be ``x`` (never ``y``); either argument may be a 0-d tensor
    (a constant), so a form that writes an intermediate of ``y`` into a temp must check
    ``y.dim()``. Both arguments are materialized first (x into ``out``), exactly the reference's
    arithmetic."""

    def lower(req: KernelRequest) -> Kernel:
        b = req.args[1]
        k = 0 if b.scalar or not b.scaled else 1

        def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            x = as_tensor(a[0], o, rt)
            y = as_tensor(a[1], t[0] if k else None, rt)  # without a buffer: the scale is 1
            form(x, y, o, t[k:])  # type: ignore[arg-type]
            return o, 1.0

        return Kernel(run, "slot", temps=k + temps)

    return lower


def into(fn: Callable[..., Tensor], x: Tensor, buf: Tensor) -> Tensor:
    """``fn(x)`` into ``buf``, or a fresh 0-d tensor when ``x`` is a 0-d constant (writing a 0-d
    result into a buffer would resize the buffer): for out-forms that transform ``y``."""
    if x.dim() == 0:
        return fn(x)
    fn(x, out=buf)
    return buf


__all__ = [
    "ArgInfo",
    "Kernel",
    "KernelRequest",
    "Lowering",
    "Runtime",
    "Val",
    "as_tensor",
    "binary_out",
    "fdiv",
    "into",
    "materialize",
    "safe",
    "unary_out",
]
