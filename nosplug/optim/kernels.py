"""Choose the kernel of every op node of a lowered genome (:mod:`nosplug.optim.lowering`).

A record's ``kernel`` field (:mod:`nosplug.primitives.kernel`) says how it runs allocation-free; the
built-in ops carry theirs (:mod:`nosplug.builtin.operation_kernels`) and a plugin's op may carry
one too. Here only what every op shares: ops whose arguments are all constants are computed once
as scalars, and an op without a kernel (or whose kernel declines the request) runs through its
record's function, correct and allocating. Nothing here knows a primitive by name.
"""

from __future__ import annotations

from torch import Tensor

from nosplug.primitives.base import BinaryOp, StatefulOp, UnaryOp
from nosplug.primitives.kernel import (
    ArgInfo,
    Kernel,
    KernelRequest,
    Runtime,
    Val,
    as_tensor,
    fdiv,
)

__all__ = ["ArgInfo", "Kernel", "Runtime", "Val", "fdiv", "lower_binary", "lower_unary"]


def _scalar_unary(rec: UnaryOp) -> Kernel:
    """A unary op of a constant: computed in the parameters' dtype on the CPU (no device sync)."""

    def run(args: list[Val], out: Tensor | None, temps: list[Tensor], rt: Runtime) -> Val:
        return None, float(rec.fn(rt.host_scalar(args[0][1])))

    return Kernel(run, "scalar")


def _generic_unary(rec: UnaryOp | StatefulOp, node_key: str | None) -> Kernel:
    """The record's own function on the materialized input (no kernel, per-tensor ops)."""
    if isinstance(rec, StatefulOp):

        def run(args: list[Val], out: Tensor | None, temps: list[Tensor], rt: Runtime) -> Val:
            rt.ctx._cache["step"] = rt.step
            return rec.fn(as_tensor(args[0], None, rt), rt.state[node_key], rt.ctx), 1.0  # type: ignore[index]

        return Kernel(run, "new")
    if rec.needs_ctx or rec.stochastic:

        def run(args: list[Val], out: Tensor | None, temps: list[Tensor], rt: Runtime) -> Val:
            return rec.fn(as_tensor(args[0], None, rt), rt.ctx), 1.0

        return Kernel(run, "new")

    def run(args: list[Val], out: Tensor | None, temps: list[Tensor], rt: Runtime) -> Val:
        return rec.fn(as_tensor(args[0], None, rt)), 1.0

    return Kernel(run, "new")


def lower_unary(rec: UnaryOp | StatefulOp, arg: ArgInfo, node_key: str, exact: bool = True) -> Kernel:
    """The kernel of unary op ``rec`` (a state-holding one keeps its state under ``node_key``).

    ``exact``: the same float operations in the same order as the reference interpreter (so the
    results are bit-identical), only without allocations and copies; otherwise scales are folded.
    """
    stateful = isinstance(rec, StatefulOp)
    if not stateful and arg.scalar and not (rec.needs_ctx or rec.stochastic):
        return _scalar_unary(rec)  # type: ignore[arg-type]
    lowering = getattr(rec, "kernel", None)
    if lowering is not None:
        kernel = lowering(KernelRequest((arg,), exact, node_key if stateful else None))
        if kernel is not None:
            return kernel
    return _generic_unary(rec, node_key)


def _scalar_binary(rec: BinaryOp) -> Kernel:
    def run(args: list[Val], out: Tensor | None, temps: list[Tensor], rt: Runtime) -> Val:
        return None, float(rec.fn(rt.host_scalar(args[0][1]), rt.host_scalar(args[1][1])))

    return Kernel(run, "scalar")


def lower_binary(rec: BinaryOp, a: ArgInfo, b: ArgInfo, exact: bool = True) -> Kernel:
    """The kernel of binary op ``rec`` for arguments of the given kinds (``exact``: see
    :func:`lower_unary`)."""
    if a.scalar and b.scalar:
        return _scalar_binary(rec)
    lowering = getattr(rec, "kernel", None)
    if lowering is not None:
        kernel = lowering(KernelRequest((a, b), exact))
        if kernel is not None:
            return kernel

    def run_generic(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        return rec.fn(as_tensor(args[0], None, rt), as_tensor(args[1], None, rt)), 1.0

    return Kernel(run_generic, "new")
