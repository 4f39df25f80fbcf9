"""The built-in operations' fast kernels: their ``kernel`` fields (:mod:`nosplug.builtin.operations`).

Each kernel computes its op into buffers that GraphOptimizer's lowered plan assigns once per
chunk, so a step allocates nothing (:mod:`nosplug.primitives.kernel` states the contract). With
``exact=True`` a kernel performs exactly the float operations of the record's function (it
materializes scaled arguments, then runs the op's *out-form*: the same arithmetic written into a
buffer), so the plan is bit-identical to the reference interpreter. With ``exact=False`` it also
folds per-step scalars: a value travels as ``(tensor, scale)``, and a kernel moves the scale
into the one tensor op it has to run anyway instead of spending a pass over memory on a
multiplication: ``sqrt(|s v|)`` is ``sqrt(v)`` with scale ``sqrt(|s|)``, ``s_a a + s_b b`` is one
``torch.add(a, b, alpha=s_b / s_a)`` with scale ``s_a``, the eps of a division moves to ``eps / s``.
Scales are only moved where the identity holds for every value of the tensor (including inf and
NaN) and divided by only when they are finite and non-zero (checked every step, so a decay that
reaches 0 takes the plain path). tests/test_lowering.py checks every kernel against its record's
function.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from nosplug.primitives.kernel import (
    ArgInfo,
    Kernel,
    KernelRequest,
    Lowering,
    Runtime,
    Val,
    as_tensor,
    fdiv,
    into,
    materialize,
    safe,
)

#: The operations' epsilon (Keras' 1e-7, as in the reference code).
EPS = 1e-7


# ----------------------------------------------------------------------------- unary ops
def _unary_out_forms() -> dict[str, Callable[[Tensor, Tensor, list[Tensor]], None]]:
    """``form(x, out, temps)`` writes op(x) into ``out`` (which may be ``x``), op by op the same
    arithmetic as the record's function in nosplug.builtin.operations."""

    def ln_abs(x: Tensor, o: Tensor, _: list[Tensor]) -> None:
        torch.abs(x, out=o)
        o.add_(EPS).log_()

    def dsoft(x: Tensor, o: Tensor, _: list[Tensor]) -> None:
        torch.abs(x, out=o)
        o.add_(1.0).reciprocal_()  # 1.0 / t is reciprocal(t) * 1.0 in torch

    def softplus(x: Tensor, o: Tensor, _: list[Tensor]) -> None:
        torch.exp(x, out=o)
        o.add_(1.0 + EPS).log_()

    def recip(x: Tensor, o: Tensor, _: list[Tensor]) -> None:
        torch.add(x, EPS, out=o)
        o.reciprocal_()

    def softsign(x: Tensor, o: Tensor, temps: list[Tensor]) -> None:
        d = temps[0]
        torch.abs(x, out=d)
        d.add_(1.0)
        torch.div(x, d, out=o)

    def sqrt_abs(x: Tensor, o: Tensor, _: list[Tensor]) -> None:
        torch.abs(x, out=o)
        o.sqrt_()

    def simple(fn: Callable[..., Tensor]) -> Callable[[Tensor, Tensor, list[Tensor]], None]:
        return lambda x, o, _: fn(x, out=o)

    return {
        "ln_abs": ln_abs,
        "sqrt_abs": sqrt_abs,
        "exp": simple(torch.exp),
        "abs": simple(torch.abs),
        "sigmoid": simple(torch.sigmoid),
        "dsoft": dsoft,
        "softplus": softplus,
        "erf": simple(torch.erf),
        "erfc": simple(torch.erfc),
        "asinh": simple(torch.asinh),
        "tanh": simple(torch.tanh),
        "atan": simple(torch.atan),
        "recip": recip,
        "bessel_i1e": simple(torch.special.i1e),
        "relu": lambda x, o, _: torch.clamp_min(x, 0.0, out=o),  # torch.relu is clamp_min(x, 0)
        "min0": lambda x, o, _: torch.clamp(x, max=0.0, out=o),
        "softsign": softsign,
    }


UNARY_FORMS = _unary_out_forms()
#: ops whose output is >= +0 or NaN for every input
NONNEG_UNARY = frozenset({"abs", "sqrt_abs", "exp", "sigmoid", "dsoft", "softplus", "erfc"})


def unary_kernel(name: str) -> Lowering:
    """The ``kernel`` field of built-in unary op ``name`` (identity, neg or one of UNARY_FORMS)."""
    return lambda req: _lower_unary(name, req.args[0], req.exact)


def _lower_unary(name: str, arg: ArgInfo, exact: bool) -> Kernel | None:
    if name in ("identity", "neg"):
        if exact and arg.scaled:  # materialize fl(s x) first, as the reference holds it

            def run_copy(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
                x, s = a[0]
                torch.mul(x, s, out=o)  # type: ignore[arg-type]
                return o, (1.0 if name == "identity" else -1.0)

            return Kernel(run_copy, "slot")
        if name == "identity":
            return Kernel(lambda a, o, t, rt: a[0], "alias0", nonneg=arg.nonneg)
        return Kernel(lambda a, o, t, rt: (a[0][0], -a[0][1]), "alias0", negates=True)  # -(s x) == (-s) x
    if exact:
        return _exact_unary(name, arg)
    if name == "abs":  # |s x| == |s| |x| exactly
        if arg.nonneg:
            return Kernel(lambda a, o, t, rt: (a[0][0], abs(a[0][1])), "alias0", nonneg=True)

        def run_abs(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            torch.abs(a[0][0], out=o)  # type: ignore[arg-type]
            return o, abs(a[0][1])

        return Kernel(run_abs, "slot", nonneg=True)
    if name == "sqrt_abs":  # sqrt|s x| == sqrt|s| sqrt|x|, inf and NaN included
        nonneg = arg.nonneg

        def run_sqrt(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            x, s = a[0]
            if nonneg:
                torch.sqrt(x, out=o)  # type: ignore[arg-type]
            else:
                torch.abs(x, out=o)  # type: ignore[arg-type]
                o.sqrt_()  # type: ignore[union-attr]
            return o, math.sqrt(abs(s))

        return Kernel(run_sqrt, "slot", nonneg=True)
    if name in ("relu", "min0"):  # max(s x, 0) == s max(x, 0) for s > 0
        form = UNARY_FORMS[name]

        def run_clamp(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            x, s = a[0]
            if s > 0.0 and math.isfinite(s):
                form(x, o, t)  # type: ignore[arg-type]
                return o, s
            form(materialize(a[0], o), o, t)  # type: ignore[arg-type]
            return o, 1.0

        return Kernel(run_clamp, "slot")
    if name == "recip":  # 1 / (s x + eps) == (1/s) / (x + eps/s)

        def run_recip(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            x, s = a[0]
            if safe(s):
                torch.add(x, EPS / s, out=o)  # type: ignore[arg-type]
                o.reciprocal_()  # type: ignore[union-attr]
                return o, 1.0 / s
            UNARY_FORMS["recip"](materialize(a[0], o), o, t)  # type: ignore[arg-type]
            return o, 1.0

        return Kernel(run_recip, "slot")
    form = UNARY_FORMS.get(name)
    if form is None:
        return None
    temps = 1 if name == "softsign" else 0

    def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        form(materialize(a[0], o), o, t)  # type: ignore[arg-type]
        return o, 1.0

    return Kernel(run, "slot", temps=temps, nonneg=name in NONNEG_UNARY)


def _exact_unary(name: str, arg: ArgInfo) -> Kernel | None:
    """Materialize fl(s x) (as the reference's edge multiplication does), then the op's out-form;
    |.| is skipped only when x >= +0 and the scale is exactly 1."""
    form = UNARY_FORMS.get(name)
    if form is None:
        return None
    nonneg = arg.nonneg and name in ("abs", "sqrt_abs")
    temps = 1 if name == "softsign" else 0

    def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        if nonneg and name == "sqrt_abs" and abs(a[0][1]) == 1.0:  # |-x| == |x| == x for x >= +0
            torch.sqrt(a[0][0], out=o)  # type: ignore[arg-type]
            return o, 1.0
        form(materialize(a[0], o), o, t)  # type: ignore[arg-type]
        return o, 1.0

    if nonneg and name == "abs":  # an alias when the scale is 1, else the slot: not static
        return (
            Kernel(run, "slot", nonneg=True)
            if arg.scaled
            else Kernel(lambda a, o, t, rt: (a[0][0], 1.0), "alias0", nonneg=True)
        )
    return Kernel(run, "slot", temps=temps, nonneg=name in NONNEG_UNARY)


def dropout_kernel(keep: float) -> Lowering:
    """Dropout with survival probability ``keep``: ``x * (u < keep) / keep`` with ``u`` drawn into a
    scratch buffer from the context's generator (the record's draws, without allocating). The
    mask does not depend on x, so folded plans pass x's scale through. A constant input takes the
    record's function (it expands the constant first)."""

    def lower(req: KernelRequest) -> Kernel | None:
        if req.args[0].scalar:
            return None
        exact = req.exact

        def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            x, s = a[0]
            if exact:
                x, s = materialize(a[0], o), 1.0  # type: ignore[arg-type]
            u = t[0]
            torch.rand(u.shape, generator=rt.ctx.rng(u), out=u)
            torch.lt(u, keep, out=u)
            torch.mul(x, u, out=o)  # type: ignore[arg-type]
            o.div_(keep)  # type: ignore[union-attr]
            return o, s

        return Kernel(run, "slot", temps=1)

    return lower


def clip_norm_kernel(fn: Callable[..., Tensor]) -> Lowering:
    """Clip by L2 norm 1 over each parameter tensor, segment by segment of the chunk
    (``ctx.segment_sizes``): ``x * where(n > 1, 1 / n, 1)`` with ``n`` the square root of the
    segment's sum of ``x * x`` (the record's arithmetic, its norm a 0-d tensor per segment instead
    of one broadcast to every element). Without segment sizes (the integrity checks' segment ids)
    it runs ``fn``, the record's function."""

    def lower(req: KernelRequest) -> Kernel | None:
        if req.args[0].scalar:
            return None

        def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            x = materialize(a[0], o)  # type: ignore[arg-type]
            sizes = rt.ctx.segment_sizes
            if sizes is None:
                o.copy_(fn(x, rt.ctx))  # type: ignore[union-attr]
                return o, 1.0
            sq = torch.mul(x, x, out=t[0])
            for xs, ss, os in zip(x.split(sizes), sq.split(sizes), o.split(sizes)):  # type: ignore[union-attr]
                norm = ss.sum().sqrt()
                torch.mul(xs, torch.where(norm > 1.0, 1.0 / norm, torch.ones_like(norm)), out=os)
            return o, 1.0

        return Kernel(run, "slot", temps=1)

    return lower


def stateful_kernel(name: str) -> Lowering:
    """ema95 / delta_change / max_value updating the node's state in place. The result of the
    last two *is* the state buffer (the reference returns a copy); ema95's is the state with its
    bias correction as scale, or (exact) the state divided by it, as the reference computes."""

    def lower(req: KernelRequest) -> Kernel:
        node_key, exact = req.state_key, req.exact

        def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            state = rt.state[node_key]  # type: ignore[index]
            x = rt.scalar(a[0][1]) if a[0][0] is None else materialize(a[0], t[0])
            if name == "ema95":
                state.lerp_(x, 0.05)
                if exact:
                    torch.div(state, 1.0 - 0.95**rt.step, out=o)
                    return o, 1.0  # type: ignore[return-value]
                return state, fdiv(1.0, 1.0 - 0.95**rt.step)
            if name == "delta_change":
                torch.sub(x, state, out=state)
            else:
                torch.maximum(x, state, out=state)
            return state, 1.0

        return Kernel(run, "slot" if exact and name == "ema95" else "state", temps=1)

    return lower


# ----------------------------------------------------------------------------- binary ops
def _binary_out_forms() -> dict[str, Callable[[Tensor, Tensor, Tensor, list[Tensor]], None]]:
    """``form(x, y, out, temps)``: op(x, y) into ``out``, which may be ``x`` (never ``y``); either
    may be a 0-d tensor (a constant). Same arithmetic as nosplug.builtin.operations. Forms in
    ``FORM_TEMPS`` use ``temps[0]`` as scratch."""

    def clip(x: Tensor, y: Tensor, o: Tensor, t: list[Tensor]) -> None:
        bound = into(torch.abs, y, t[0])
        torch.minimum(x, bound, out=o)
        torch.maximum(o, bound.neg_(), out=o)

    def div_eps(x: Tensor, y: Tensor, o: Tensor, t: list[Tensor]) -> None:
        torch.div(x, into(lambda v, **kw: torch.add(v, EPS, **kw), y, t[0]), out=o)

    def div_sqrt1p(x: Tensor, y: Tensor, o: Tensor, t: list[Tensor]) -> None:
        d = into(lambda v, **kw: torch.mul(v, v, **kw), y, t[0])
        torch.div(x, d.add_(1.0).sqrt_(), out=o)

    def pow_abs(x: Tensor, y: Tensor, o: Tensor, t: list[Tensor]) -> None:
        torch.pow(into(torch.abs, x, t[0]), y, out=o)

    return {
        "add": lambda x, y, o, t: torch.add(x, y, out=o),
        "sub": lambda x, y, o, t: torch.sub(x, y, out=o),
        "mul": lambda x, y, o, t: torch.mul(x, y, out=o),
        "max": lambda x, y, o, t: torch.maximum(x, y, out=o),
        "min": lambda x, y, o, t: torch.minimum(x, y, out=o),
        "div": div_eps,
        "div_sqrt1p": div_sqrt1p,
        "clip": clip,
        "interp95": lambda x, y, o, t: torch.lerp(x, y, 0.05, out=o),
        "pow_abs": pow_abs,
        "div_exact": lambda x, y, o, t: torch.div(x, y, out=o),
    }


BINARY_FORMS = _binary_out_forms()
FORM_TEMPS = frozenset({"clip", "div", "div_sqrt1p", "pow_abs"})


def binary_kernel(name: str) -> Lowering:
    """The ``kernel`` field of built-in binary op ``name`` (one of BINARY_FORMS)."""
    return lambda req: _lower_binary(name, req.args[0], req.args[1], req.exact)


def _full_binary(name: str, b: ArgInfo) -> Kernel:
    """Materialize both arguments (x into the output, a tensor y into ``temps[0]``) and apply the
    op's out-form, which gets the remaining temps: exactly the reference's arithmetic."""
    form = BINARY_FORMS[name]
    k = 0 if b.scalar or not b.scaled else 1

    def run(a: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        x = as_tensor(a[0], o, rt)
        y = as_tensor(a[1], t[0] if k else None, rt)  # without a buffer: the scale is 1 here
        form(x, y, o, t[k:])  # type: ignore[arg-type]
        return o, 1.0

    return Kernel(run, "slot", temps=k + (name in FORM_TEMPS))


def _lower_binary(name: str, a: ArgInfo, b: ArgInfo, exact: bool) -> Kernel:
    full = _full_binary(name, b)
    if exact:
        return full
    if name in ("add", "sub"):
        return _add_sub(name == "sub", a, b) or full
    if name == "mul":
        return _mul(a, b)
    if name == "div_exact":
        return _div_exact(a, b)
    if name == "div":
        return _div_eps(a, b)
    if name == "div_sqrt1p":
        return _div_sqrt1p(a, b)
    if name in ("max", "min", "clip", "interp95") and not (a.scalar or b.scalar):
        return _same_scale(name, full)
    return full


def _add_sub(sub: bool, a: ArgInfo, b: ArgInfo) -> Kernel:
    """s_a x + s_b y == s_a (x + (s_b / s_a) y): one op whatever the scales."""
    sign = -1.0 if sub else 1.0
    if not a.scalar and not b.scalar:

        def run(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            (x, sa), (y, sb) = args
            if sa == sb:
                (torch.sub if sub else torch.add)(x, y, out=o)  # type: ignore[call-overload]
                return o, sa
            if safe(sa):
                torch.add(x, y, alpha=sign * sb / sa, out=o)  # type: ignore[arg-type]
                return o, sa
            if safe(sb):  # s_a x + sign s_b y == sign s_b (y + sign (s_a / s_b) x)
                torch.add(y, x, alpha=sign * sa / sb, out=o)  # type: ignore[arg-type]
                return o, sign * sb
            torch.mul(x, sa, out=o)  # type: ignore[arg-type]
            o.add_(y, alpha=sign * sb)  # type: ignore[union-attr, arg-type]
            return o, 1.0

        return Kernel(run, "slot")
    tensor_first = not a.scalar

    def run_scalar(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        (x, s), c = (args[0], args[1][1]) if tensor_first else (args[1], args[0][1])
        if safe(s):
            # s x +/- c == s (x +/- c/s);  c + s x == s (x + c/s);  c - s x == -s (x - c/s)
            torch.add(x, sign * c / s, out=o)  # type: ignore[arg-type]
            return o, s if tensor_first else sign * s
        torch.mul(x, s, out=o)  # type: ignore[arg-type]
        if tensor_first:
            o.add_(sign * c)  # type: ignore[union-attr]
        elif sub:
            torch.sub(rt.scalar(c), o, out=o)  # type: ignore[arg-type]
        else:
            o.add_(c)  # type: ignore[union-attr]
        return o, 1.0

    return Kernel(run_scalar, "slot")


def _mul(a: ArgInfo, b: ArgInfo) -> Kernel:
    if a.scalar:
        return Kernel(lambda x, o, t, rt: (x[1][0], x[0][1] * x[1][1]), "alias1", nonneg=b.nonneg)
    if b.scalar:
        return Kernel(lambda x, o, t, rt: (x[0][0], x[0][1] * x[1][1]), "alias0", nonneg=a.nonneg)

    def run(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        (x, sa), (y, sb) = args
        torch.mul(x, y, out=o)  # type: ignore[arg-type]
        return o, sa * sb

    return Kernel(run, "slot", nonneg=a.nonneg and b.nonneg)


def _div_exact(a: ArgInfo, b: ArgInfo) -> Kernel:
    if b.scalar:  # s x / c: IEEE scale arithmetic keeps c = 0, inf, NaN as the reference
        return Kernel(lambda x, o, t, rt: (x[0][0], fdiv(x[0][1], x[1][1])), "alias0", nonneg=a.nonneg)
    if a.scalar:

        def run_recip(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
            (_, c), (y, s) = args
            if safe(s):
                torch.reciprocal(y, out=o)  # type: ignore[arg-type]
                return o, c / s
            torch.mul(y, s, out=o)  # type: ignore[arg-type]
            o.reciprocal_()  # type: ignore[union-attr]
            return o, c

        return Kernel(run_recip, "slot")

    def run(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        (x, sa), (y, sb) = args
        if safe(sb):
            torch.div(x, y, out=o)  # type: ignore[arg-type]
            return o, sa / sb
        torch.mul(y, sb, out=o)  # type: ignore[arg-type]
        torch.div(x, o, out=o)  # type: ignore[arg-type]
        return o, sa

    return Kernel(run, "slot", nonneg=a.nonneg and b.nonneg)


def _div_eps(a: ArgInfo, b: ArgInfo) -> Kernel:
    """s_a x / (s_b y + eps) == (s_a / s_b) x / (y + eps / s_b); the numerator's scale passes."""
    if b.scalar:
        return Kernel(lambda x, o, t, rt: (x[0][0], fdiv(x[0][1], x[1][1] + EPS)), "alias0")

    def run(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        (x, sa), (y, sb) = args
        if safe(sb):
            torch.add(y, EPS / sb, out=o)  # type: ignore[arg-type]
            scale = fdiv(1.0, sb)
        else:
            torch.mul(y, sb, out=o)  # type: ignore[arg-type]
            o.add_(EPS)  # type: ignore[union-attr]
            scale = 1.0
        if x is None:  # c / d
            o.reciprocal_()  # type: ignore[union-attr]
        else:
            torch.div(x, o, out=o)  # type: ignore[arg-type]
        return o, sa * scale

    return Kernel(run, "slot")


def _div_sqrt1p(a: ArgInfo, b: ArgInfo) -> Kernel:
    """s_a x / sqrt(1 + y^2): the numerator's scale passes; y is materialized."""

    def run(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        (x, sa), yv = args
        if yv[0] is None:
            d = rt.host_scalar(yv[1])
            d = float((d * d + 1.0).sqrt())  # 1.0 + y*y in the parameters' dtype
            return (x, fdiv(sa, d)) if x is not None else (None, fdiv(sa, d))
        y = materialize(yv, o)  # type: ignore[arg-type]
        torch.mul(y, y, out=o)
        o.add_(1.0).sqrt_()  # type: ignore[union-attr]
        if x is None:
            o.reciprocal_()  # type: ignore[union-attr]
        else:
            torch.div(x, o, out=o)
        return o, sa

    if b.scalar:
        return Kernel(run, "alias0")
    return Kernel(run, "slot")


def _same_scale(name: str, full: Kernel) -> Kernel:
    """max/min/clip/interp95 of two tensors with the same scale s: s op(x, y) (min for max when
    s < 0); otherwise both are materialized."""
    form = BINARY_FORMS[name]
    mirrored = {"max": BINARY_FORMS["min"], "min": BINARY_FORMS["max"]}.get(name)

    def run(args: list[Val], o: Tensor | None, t: list[Tensor], rt: Runtime) -> Val:
        (x, sa), (y, sb) = args
        if sa == sb and safe(sa):
            (form if sa > 0.0 or mirrored is None else mirrored)(x, y, o, t)  # type: ignore[arg-type]
            return o, sa
        return full.run(args, o, t, rt)

    return Kernel(run, "slot", temps=full.temps)
