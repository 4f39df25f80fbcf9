"""Built-in plugin: the paper's operations (spec §2).

23 scalar unary ops (identity included), 3 state-holding unary ops, 10 binary ops, plus a few
``extra`` ops outside the paper's space that the zoo needs to express torch's optimizers exactly
(``div_exact``). ε is Keras' 1e-7, as in the reference code.

Deliberate choices (documented in docs/paper-nos.md):
* ``ema95`` is the *intended* bias-corrected EMA (beta 0.95). The reference code divides by
  ``1 - 0.95**0 = 0``, which makes the op always NaN/inf and so dead; we implement what it meant.
* ``delta_change`` follows the reference code (``n <- x - n``, an alternating sum), since that is
  what the published search actually explored.
* ``max_value`` follows the code: a running max that starts from 0.

Each record carries every form of its op: the function, its fast kernel for GraphOptimizer's
lowered plan (:mod:`nosplug.builtin.operation_kernels`), dropout's ``batched`` form (the op given
its draws, which the batched integrity check replays) and its
:class:`~nosplug.primitives.base.SourceForm` (the same arithmetic in the same order, so an
exported optimizer matches GraphOptimizer); tests/test_lowering.py and tests/test_export.py check
every kernel and source form against the record's function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nosplug.builtin.operation_kernels import (
    EPS,
    binary_kernel,
    clip_norm_kernel,
    dropout_kernel,
    stateful_kernel,
    unary_kernel,
)
from nosplug.hookspecs import hookimpl
from nosplug.primitives.base import (
    BinaryOp,
    ExecContext,
    SourceForm,
    StatefulOp,
    UnaryOp,
    bias_correction,
    stochastic_unary,
)

_EXTRA = frozenset({"extra"})


def _dropout(p: float):
    """``batched(x, u)`` of dropout with probability ``p``: zero where the draw ``u`` is not below
    ``1 - p``, scale the survivors by ``1 / (1 - p)``."""
    keep = 1.0 - p

    def batched(x: Tensor, u: Tensor) -> Tensor:
        return x * (u < keep) / keep

    return batched


def _dropout_source(p: float) -> SourceForm:
    """The record's draw and mask on a flat chunk (one draw per chunk, as GraphOptimizer's)."""
    keep = repr(1.0 - p)
    return SourceForm(
        f"$0 * (torch.rand($0.shape, generator=$rng, dtype=$0.dtype, device=$0.device) < {keep}) / {keep}",
        out=(
            f"torch.rand($0.shape, generator=$rng, out=$tmp)\n"
            f"torch.lt($tmp, {keep}, out=$tmp)\n"
            "torch.mul($0, $tmp, out=$out)\n"
            f"$out.div_({keep})"
        ),
    )


_CLIP_NORM_HELPER = """\
def _clip_factor(norm):
    \"\"\"The factor that scales a tensor of L2 norm ``norm`` down to norm 1 if it is larger.\"\"\"
    return torch.where(norm > 1.0, 1.0 / norm, torch.ones_like(norm))


def _clip_norm(x):
    \"\"\"x scaled down to L2 norm 1 over the whole tensor if its norm is larger.\"\"\"
    return x * _clip_factor((x * x).sum().sqrt())
"""


def _clip_norm(x: Tensor, ctx: ExecContext) -> Tensor:
    x = ctx.full(x, like=x)
    norm = ctx.segment_sum(x * x).sqrt()
    return x * torch.where(norm > 1.0, 1.0 / norm, torch.ones_like(norm))


def _sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


S = SourceForm


UNARY_OPS: tuple[UnaryOp, ...] = (
    UnaryOp(
        "identity",
        lambda x: x,
        "$0",
        "$0",
        description="x (code -1)",
        source=S("$0", "$0"),
        kernel=unary_kernel("identity"),
    ),
    UnaryOp(
        "neg",
        torch.neg,
        "-($0)",
        "-\\left($0\\right)",
        description="-x (code 0)",
        source=S("torch.neg($0)", "torch._foreach_neg($0)", out="torch.neg($0, out=$out)"),
        kernel=unary_kernel("neg"),
    ),
    UnaryOp(
        "ln_abs",
        lambda x: torch.log(x.abs() + EPS),
        "ln(|$0|)",
        "\\ln\\left|$0\\right|",
        description="ln(|x| + eps) (code 1)",
        source=S(
            f"torch.log($0.abs() + {EPS!r})",
            f"torch._foreach_log(torch._foreach_add(torch._foreach_abs($0), {EPS!r}))",
            out="torch.abs($0, out=$out)\n$out.add_(1e-07).log_()",
        ),
        kernel=unary_kernel("ln_abs"),
    ),
    UnaryOp(
        "sqrt_abs",
        lambda x: x.abs().sqrt(),
        "sqrt(|$0|)",
        "\\sqrt{\\left|$0\\right|}",
        description="code 2",
        source=S(
            "$0.abs().sqrt()",
            "torch._foreach_sqrt(torch._foreach_abs($0))",
            out="torch.abs($0, out=$out)\n$out.sqrt_()",
            out_nonneg="torch.sqrt($0, out=$out)",
        ),
        kernel=unary_kernel("sqrt_abs"),
    ),
    UnaryOp(
        "exp",
        torch.exp,
        "exp($0)",
        "e^{$0}",
        description="code 3",
        source=S("torch.exp($0)", "torch._foreach_exp($0)", out="torch.exp($0, out=$out)"),
        kernel=unary_kernel("exp"),
    ),
    UnaryOp(
        "abs",
        torch.abs,
        "|$0|",
        "\\left|$0\\right|",
        description="code 4",
        source=S("torch.abs($0)", "torch._foreach_abs($0)", out="torch.abs($0, out=$out)", out_nonneg="$0"),
        kernel=unary_kernel("abs"),
    ),
    UnaryOp(
        "sigmoid",
        _sigmoid,
        "sig($0)",
        "\\sigma\\left($0\\right)",
        description="code 5",
        source=S("torch.sigmoid($0)", "torch._foreach_sigmoid($0)", out="torch.sigmoid($0, out=$out)"),
        kernel=unary_kernel("sigmoid"),
    ),
    UnaryOp(
        "dsoft",
        lambda x: 1.0 / (1.0 + x.abs()),
        "1/(1+|$0|)",
        "\\frac{1}{1+\\left|$0\\right|}",
        description="1/(1+|x|) (code 6)",
        # 1.0 / t is torch's reciprocal(t) * 1.0, so the foreach form is the same arithmetic
        source=S(
            "1.0 / (1.0 + $0.abs())",
            "torch._foreach_reciprocal(torch._foreach_add(torch._foreach_abs($0), 1.0))",
            out="torch.abs($0, out=$out)\n$out.add_(1.0).reciprocal_()",
        ),
        kernel=unary_kernel("dsoft"),
    ),
    UnaryOp(
        "softplus",
        lambda x: torch.log(torch.exp(x) + (1.0 + EPS)),
        "ln(1+exp($0))",
        "\\ln\\left(1+e^{$0}\\right)",
        description="ln(|1+e^x| + eps) (code 7)",
        source=S(
            f"torch.log(torch.exp($0) + (1.0 + {EPS!r}))",
            f"torch._foreach_log(torch._foreach_add(torch._foreach_exp($0), 1.0 + {EPS!r}))",
            out="torch.exp($0, out=$out)\n$out.add_(1.0 + 1e-07).log_()",
        ),
        kernel=unary_kernel("softplus"),
    ),
    UnaryOp(
        "erf",
        torch.erf,
        "erf($0)",
        "\\operatorname{erf}\\left($0\\right)",
        description="code 8",
        source=S("torch.erf($0)", "torch._foreach_erf($0)", out="torch.erf($0, out=$out)"),
        kernel=unary_kernel("erf"),
    ),
    UnaryOp(
        "erfc",
        torch.erfc,
        "erfc($0)",
        "\\operatorname{erfc}\\left($0\\right)",
        description="code 9",
        source=S("torch.erfc($0)", "torch._foreach_erfc($0)", out="torch.erfc($0, out=$out)"),
        kernel=unary_kernel("erfc"),
    ),
    UnaryOp(
        "asinh",
        torch.asinh,
        "arcsinh($0)",
        "\\operatorname{arcsinh}\\left($0\\right)",
        description="code 10",
        source=S("torch.asinh($0)", out="torch.asinh($0, out=$out)"),
        kernel=unary_kernel("asinh"),
    ),
    UnaryOp(
        "tanh",
        torch.tanh,
        "tanh($0)",
        "\\tanh\\left($0\\right)",
        description="code 11",
        source=S("torch.tanh($0)", "torch._foreach_tanh($0)", out="torch.tanh($0, out=$out)"),
        kernel=unary_kernel("tanh"),
    ),
    UnaryOp(
        "atan",
        torch.atan,
        "arctan($0)",
        "\\arctan\\left($0\\right)",
        description="code 12",
        source=S("torch.atan($0)", "torch._foreach_atan($0)", out="torch.atan($0, out=$out)"),
        kernel=unary_kernel("atan"),
    ),
    UnaryOp(
        "recip",
        lambda x: 1.0 / (x + EPS),
        "1/($0)",
        "\\frac{1}{$0}",
        description="1/(x + eps), eps added not |x|+eps (code 13)",
        source=S(
            f"1.0 / ($0 + {EPS!r})",
            f"torch._foreach_reciprocal(torch._foreach_add($0, {EPS!r}))",
            out="torch.add($0, 1e-07, out=$out)\n$out.reciprocal_()",
        ),
        kernel=unary_kernel("recip"),
    ),
    UnaryOp(
        "bessel_i1e",
        torch.special.i1e,
        "bessel_i1e($0)",
        "I_{1e}\\left($0\\right)",
        description="exp(-|x|) I1(x) (code 14)",
        source=S("torch.special.i1e($0)", out="torch.special.i1e($0, out=$out)"),
        kernel=unary_kernel("bessel_i1e"),
    ),
    UnaryOp(
        "relu",
        torch.relu,
        "max($0, 0)",
        "\\max\\left($0, 0\\right)",
        description="code 15",
        source=S(
            "torch.relu($0)", "torch._foreach_clamp_min($0, 0.0)", out="torch.clamp_min($0, 0.0, out=$out)"
        ),
        kernel=unary_kernel("relu"),
    ),
    UnaryOp(
        "min0",
        lambda x: torch.clamp(x, max=0.0),
        "min($0, 0)",
        "\\min\\left($0, 0\\right)",
        description="code 16",
        source=S(
            "torch.clamp($0, max=0.0)",
            "torch._foreach_clamp_max($0, 0.0)",
            out="torch.clamp($0, max=0.0, out=$out)",
        ),
        kernel=unary_kernel("min0"),
    ),
    stochastic_unary(
        "drop0.5",
        _dropout(0.5),
        "drop($0, 0.5)",
        "\\operatorname{drop}_{0.5}\\left($0\\right)",
        description="dropout p=0.5, survivors x2 (code 17)",
        source=_dropout_source(0.5),
        kernel=dropout_kernel(1.0 - 0.5),
    ),
    stochastic_unary(
        "drop0.3",
        _dropout(0.3),
        "drop($0, 0.3)",
        "\\operatorname{drop}_{0.3}\\left($0\\right)",
        description="dropout p=0.3 (code 18)",
        source=_dropout_source(0.3),
        kernel=dropout_kernel(1.0 - 0.3),
    ),
    stochastic_unary(
        "drop0.1",
        _dropout(0.1),
        "drop($0, 0.1)",
        "\\operatorname{drop}_{0.1}\\left($0\\right)",
        description="dropout p=0.1 (code 19)",
        source=_dropout_source(0.1),
        kernel=dropout_kernel(1.0 - 0.1),
    ),
    UnaryOp(
        "clip_norm",
        _clip_norm,
        "norm($0)",
        "\\operatorname{clipnorm}\\left($0\\right)",
        needs_ctx=True,
        description="clip by L2 norm 1 over each parameter tensor (code 20)",
        kernel=clip_norm_kernel(_clip_norm),
        source=S(
            "_clip_norm($0)",
            helpers=_CLIP_NORM_HELPER,
            out="torch.mul($0, $0, out=$tmp)\ntorch.mul($0, _clip_factor($tmp.sum().sqrt()), out=$out)",
        ),  # a per-tensor reduction: no foreach
    ),
    UnaryOp(
        "softsign",
        lambda x: x / (1.0 + x.abs()),
        "softsign($0)",
        "\\frac{$0}{1+\\left|$0\\right|}",
        description="x/(1+|x|) (code 21)",
        source=S(
            "$0 / (1.0 + $0.abs())",
            "torch._foreach_div($0, torch._foreach_add(torch._foreach_abs($0), 1.0))",
            out="torch.abs($0, out=$tmp)\n$tmp.add_(1.0)\ntorch.div($0, $tmp, out=$out)",
        ),
        kernel=unary_kernel("softsign"),
    ),
)


def _ema95(x: Tensor, state: Tensor, ctx: ExecContext) -> Tensor:
    # state[...] holds the EMA; the step count lives in the context (same for every element).
    state.lerp_(ctx.full(x, like=state), 0.05)
    return state / bias_correction(0.95, ctx._cache["step"], ctx._cache.get("corrections"))


def _delta_change(x: Tensor, state: Tensor, ctx: ExecContext) -> Tensor:
    torch.sub(ctx.full(x, like=state), state, out=state)
    return state.clone()


def _max_value(x: Tensor, state: Tensor, ctx: ExecContext) -> Tensor:
    torch.maximum(ctx.full(x, like=state), state, out=state)
    return state.clone()


_EMA95_HELPERS = """\
def _ema95(xs, states, step):
    \"\"\"Bias-corrected EMA with beta 0.95, one state tensor per parameter (updated in place).\"\"\"
    torch._foreach_lerp_(states, xs, 0.05)
    return torch._foreach_div(states, 1.0 - 0.95**step)
"""

_DELTA_CHANGE_HELPERS = """\
def _delta_change(xs, states):
    \"\"\"n <- x - n (an alternating sum of the inputs, as the reference search computes it).\"\"\"
    new = torch._foreach_sub(xs, states)
    for state, n in zip(states, new):
        state.copy_(n)
    return new
"""

_MAX_VALUE_HELPERS = """\
def _max_value(xs, states):
    \"\"\"Running elementwise maximum, starting from 0.\"\"\"
    new = torch._foreach_maximum(xs, states)
    for state, n in zip(states, new):
        state.copy_(n)
    return new
"""

STATEFUL_OPS: tuple[StatefulOp, ...] = (
    StatefulOp(
        "ema95",
        _ema95,
        "ema95($0)",
        "\\operatorname{EMA}_{0.95}\\left($0\\right)",
        description="bias-corrected EMA, beta 0.95 (code 22; the reference divides by zero, see docs)",
        source=S(
            None,
            "_ema95($0, $state, $step)",
            _EMA95_HELPERS,
            out="$state.lerp_($0, 0.05)\ntorch.div($state, 1.0 - 0.95**$step, out=$out)",
        ),
        kernel=stateful_kernel("ema95"),
    ),
    StatefulOp(
        "delta_change",
        _delta_change,
        "delta($0)",
        "\\Delta\\left($0\\right)",
        description="n <- x - n, as the reference code computes it (code 23)",
        source=S(
            None,
            "_delta_change($0, $state)",
            _DELTA_CHANGE_HELPERS,
            out="torch.sub($0, $state, out=$state)\n$out.copy_($state)",
        ),
        kernel=stateful_kernel("delta_change"),
    ),
    StatefulOp(
        "max_value",
        _max_value,
        "maxval($0)",
        "\\operatorname{maxval}\\left($0\\right)",
        description="running elementwise max, starting at 0 (code 24)",
        source=S(
            None,
            "_max_value($0, $state)",
            _MAX_VALUE_HELPERS,
            out="torch.maximum($0, $state, out=$state)\n$out.copy_($state)",
        ),
        kernel=stateful_kernel("max_value"),
    ),
)


def _clip(x: Tensor, y: Tensor) -> Tensor:
    bound = torch.as_tensor(y).abs()
    return torch.maximum(torch.minimum(torch.as_tensor(x), bound), -bound)


_CLIP_HELPERS = """\
def _clip(xs, ys):
    \"\"\"x clipped to [-|y|, |y|], elementwise.\"\"\"
    bounds = torch._foreach_abs(ys)
    return torch._foreach_maximum(torch._foreach_minimum(xs, bounds), torch._foreach_neg(bounds))
"""

BINARY_OPS: tuple[BinaryOp, ...] = (
    BinaryOp(
        "add",
        torch.add,
        "$0 + $1",
        "$0 + $1",
        commutative=True,
        infix=True,
        description="code 0",
        source=S("$0 + $1", "torch._foreach_add($0, $1)", out="torch.add($0, $1, out=$out)"),
        kernel=binary_kernel("add"),
    ),
    BinaryOp(
        "sub",
        torch.sub,
        "$0 - $1",
        "$0 - $1",
        infix=True,
        description="code 1",
        source=S("$0 - $1", "torch._foreach_sub($0, $1)", out="torch.sub($0, $1, out=$out)"),
        kernel=binary_kernel("sub"),
    ),
    BinaryOp(
        "mul",
        torch.mul,
        "$0 * $1",
        "$0 \\cdot $1",
        commutative=True,
        infix=True,
        description="code 2",
        source=S("$0 * $1", "torch._foreach_mul($0, $1)", out="torch.mul($0, $1, out=$out)"),
        kernel=binary_kernel("mul"),
    ),
    BinaryOp(
        "max",
        torch.maximum,
        "max($0, $1)",
        "\\max\\left($0, $1\\right)",
        commutative=True,
        description="code 3",
        source=S(
            "torch.maximum($0, $1)", "torch._foreach_maximum($0, $1)", out="torch.maximum($0, $1, out=$out)"
        ),
        kernel=binary_kernel("max"),
    ),
    BinaryOp(
        "min",
        torch.minimum,
        "min($0, $1)",
        "\\min\\left($0, $1\\right)",
        commutative=True,
        description="code 4",
        source=S(
            "torch.minimum($0, $1)", "torch._foreach_minimum($0, $1)", out="torch.minimum($0, $1, out=$out)"
        ),
        kernel=binary_kernel("min"),
    ),
    BinaryOp(
        "div",
        lambda x, y: x / (y + EPS),
        "$0 / ($1 + eps)",
        "\\frac{$0}{$1 + \\epsilon}",
        description="x / (y + eps) (code 5)",
        source=S(
            f"$0 / ($1 + {EPS!r})",
            f"torch._foreach_div($0, torch._foreach_add($1, {EPS!r}))",
            out="torch.add($1, 1e-07, out=$tmp)\ntorch.div($0, $tmp, out=$out)",
        ),
        kernel=binary_kernel("div"),
    ),
    BinaryOp(
        "div_sqrt1p",
        lambda x, y: x / torch.sqrt(1.0 + y * y),
        "$0 / sqrt(1 + ($1)^2)",
        "\\frac{$0}{\\sqrt{1 + \\left($1\\right)^{2}}}",
        description="x / sqrt(1 + y^2) (code 6)",
        source=S(
            "$0 / torch.sqrt(1.0 + $1 * $1)",
            "torch._foreach_div($0, torch._foreach_sqrt("
            "torch._foreach_add(torch._foreach_mul($1, $1), 1.0)))",
            out="torch.mul($1, $1, out=$tmp)\n$tmp.add_(1.0).sqrt_()\ntorch.div($0, $tmp, out=$out)",
        ),
        kernel=binary_kernel("div_sqrt1p"),
    ),
    BinaryOp(
        "clip",
        _clip,
        "clip($0, $1)",
        "\\operatorname{clip}\\left($0, \\pm\\left|$1\\right|\\right)",
        description="clip x to [-|y|, |y|] (code 7)",
        source=S(
            "torch.maximum(torch.minimum($0, $1.abs()), -$1.abs())",
            "_clip($0, $1)",
            _CLIP_HELPERS,
            out=(
                "torch.abs($1, out=$tmp)\n"
                "torch.minimum($0, $tmp, out=$out)\n"
                "torch.maximum($out, $tmp.neg_(), out=$out)"
            ),
        ),
        kernel=binary_kernel("clip"),
    ),
    BinaryOp(
        "interp95",
        lambda x, y: torch.lerp(torch.as_tensor(x), torch.as_tensor(y), 0.05),
        "(0.95*$0 + 0.05*$1)",
        "\\left(0.95\\,$0 + 0.05\\,$1\\right)",
        description="0.95 x + 0.05 y (code 8)",
        source=S(
            "torch.lerp($0, $1, 0.05)",
            "torch._foreach_lerp($0, $1, 0.05)",
            out="torch.lerp($0, $1, 0.05, out=$out)",
        ),
        kernel=binary_kernel("interp95"),
    ),
    BinaryOp(
        "pow_abs",
        lambda x, y: torch.pow(torch.as_tensor(x).abs(), y),
        "|$0|^($1)",
        "\\left|$0\\right|^{$1}",
        description="|x|^y (code 9)",
        source=S(
            "torch.pow($0.abs(), $1)",
            "torch._foreach_pow(torch._foreach_abs($0), $1)",
            out="torch.abs($0, out=$tmp)\ntorch.pow($tmp, $1, out=$out)",
        ),
        kernel=binary_kernel("pow_abs"),
    ),
    BinaryOp(
        "div_exact",
        torch.div,
        "$0 / $1",
        "\\frac{$0}{$1}",
        tags=_EXTRA,
        description="x / y without epsilon (outside the paper's space; the zoo uses it for torch parity)",
        source=S("$0 / $1", "torch._foreach_div($0, $1)", out="torch.div($0, $1, out=$out)"),
        kernel=binary_kernel("div_exact"),
    ),
)


@hookimpl
def nosplug_unary_ops() -> list[UnaryOp]:
    return list(UNARY_OPS)


@hookimpl
def nosplug_stateful_ops() -> list[StatefulOp]:
    return list(STATEFUL_OPS)


@hookimpl
def nosplug_binary_ops() -> list[BinaryOp]:
    return list(BINARY_OPS)
