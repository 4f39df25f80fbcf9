"""Built-in plugin: the 14 decay schedules and the decay-graph operations (spec §3).

Schedules take ``t`` (a float tensor of 0-based steps) and ``T`` (the run's total steps).
``a14`` is the search code's ``0.95 - demon(t)``, which stays in [0, 1]; the final-optimizer
file's variant rises to 19 and would fail the decay check (spec §3.1, documented in the docs).
The decay binary ops are the code's 7, not the paper's 10 (spec §14 #4: we follow the code).
Every record's :class:`~nosplug.primitives.base.SourceForm` repeats its arithmetic in the same
order, for exported optimizers (checked against the functions by tests/test_export.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nosplug.hookspecs import hookimpl
from nosplug.primitives.base import DecayBinaryOp, DecayUnaryOp, Schedule, SourceForm

EPS = 1e-7
DEMON_BETA = 0.95


def _u(t: Tensor, T: int) -> Tensor:
    return t / T


def _r(t: Tensor, T: int) -> Tensor:
    return torch.remainder(2 * t, T) / T


def demon(t: Tensor, T: int) -> Tensor:
    """Chen et al.'s Demon decay, from 0.95 down to 0."""
    beta_d = DEMON_BETA * (1.0 - (t + 1) / T)
    return beta_d / ((1.0 - DEMON_BETA) + beta_d)


_DEMON_HELPER = """\
def _demon(t, T):
    \"\"\"Demon decay (Chen et al.) at 0-based steps t of a T-step run: 0.95 down to 0.\"\"\"
    beta_d = 0.95 * (1.0 - (t + 1) / T)
    return beta_d / ((1.0 - 0.95) + beta_d)
"""
_U = "($t / $T)"
_R = "(torch.remainder(2 * $t, $T) / $T)"

#: name, function, source expression (the same operations in the same order), description
_DEFS: tuple[tuple[str, object, str, str], ...] = (
    ("a1", lambda t, T: 1 - _u(t, T), f"1 - {_U}", "linear decay 1-u"),
    ("a2", lambda t, T: _u(t, T), "$t / $T", "linear increase u"),
    (
        "a3",
        lambda t, T: 0.5 * (1 + torch.cos(math.pi * _u(t, T))),
        f"0.5 * (1 + torch.cos(math.pi * {_U}))",
        "cosine decay",
    ),
    (
        "a4",
        lambda t, T: 0.5 * (1 - torch.cos(math.pi * _u(t, T))),
        f"0.5 * (1 - torch.cos(math.pi * {_U}))",
        "cosine increase",
    ),
    (
        "a5",
        lambda t, T: 0.5 * (1 + torch.cos(2 * math.pi * _u(t, T))),
        f"0.5 * (1 + torch.cos(2 * math.pi * {_U}))",
        "cyclic cosine 1 -> 0 -> 1",
    ),
    (
        "a6",
        lambda t, T: 0.5 * (1 - torch.cos(2 * math.pi * _u(t, T))),
        f"0.5 * (1 - torch.cos(2 * math.pi * {_U}))",
        "cyclic cosine 0 -> 1 -> 0",
    ),
    (
        "a7",
        lambda t, T: 0.5 * (1 + torch.cos(math.pi * _r(t, T))),
        f"0.5 * (1 + torch.cos(math.pi * {_R}))",
        "cosine decrease with restart (2 cycles)",
    ),
    (
        "a8",
        lambda t, T: 0.5 * (1 - torch.cos(math.pi * _r(t, T))),
        f"0.5 * (1 - torch.cos(math.pi * {_R}))",
        "cosine increase with restart (2 cycles)",
    ),
    ("a9", lambda t, T: 1 - _r(t, T), f"1 - {_R}", "linear decrease with restart (2 cycles)"),
    ("a10", lambda t, T: _r(t, T), _R[1:-1], "linear increase with restart (2 cycles)"),
    ("a11", lambda t, T: torch.pow(0.01, _u(t, T)), f"torch.pow(0.01, {_U})", "exponential decay 1 -> 0.01"),
    (
        "a12",
        lambda t, T: 1 - torch.pow(0.01, _u(t, T)),
        f"1 - torch.pow(0.01, {_U})",
        "exponential increase 0 -> 0.99",
    ),
    ("a13", demon, "_demon($t, $T)", "demon decay 0.95 -> 0"),
    (
        "a14",
        lambda t, T: DEMON_BETA - demon(t, T),
        "0.95 - _demon($t, $T)",
        "demon increase 0 -> 0.95 (search code's form)",
    ),
)

SCHEDULES: tuple[Schedule, ...] = tuple(
    Schedule(
        name,
        fn,  # type: ignore[arg-type]
        name,
        f"a_{{{name[1:]}}}",
        description=desc,
        source=SourceForm(expr, helpers=_DEMON_HELPER if "_demon" in expr else ""),
    )
    for name, fn, expr, desc in _DEFS
)


def _dtanh(x: Tensor) -> Tensor:
    th = torch.tanh(x)
    return 1 - th * th


def _dsigmoid(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 - s)


_DTANH_HELPER = """\
def _dtanh(x):
    th = torch.tanh(x)
    return 1 - th * th
"""
_DSIGMOID_HELPER = """\
def _dsigmoid(x):
    s = torch.sigmoid(x)
    return s * (1 - s)
"""
S = SourceForm

DECAY_UNARY_OPS: tuple[DecayUnaryOp, ...] = (
    DecayUnaryOp(
        "sigmoid", torch.sigmoid, "sig($0)", "\\sigma\\left($0\\right)", source=S("torch.sigmoid($0)")
    ),
    DecayUnaryOp(
        "dsoft",
        lambda x: 1.0 / (1.0 + x.abs()),
        "1/(1+|$0|)",
        "\\frac{1}{1+\\left|$0\\right|}",
        source=S("1.0 / (1.0 + $0.abs())"),
    ),
    DecayUnaryOp(
        "erf", torch.erf, "erf($0)", "\\operatorname{erf}\\left($0\\right)", source=S("torch.erf($0)")
    ),
    DecayUnaryOp(
        "erfc", torch.erfc, "erfc($0)", "\\operatorname{erfc}\\left($0\\right)", source=S("torch.erfc($0)")
    ),
    DecayUnaryOp("tanh", torch.tanh, "tanh($0)", "\\tanh\\left($0\\right)", source=S("torch.tanh($0)")),
    DecayUnaryOp("atan", torch.atan, "arctan($0)", "\\arctan\\left($0\\right)", source=S("torch.atan($0)")),
    DecayUnaryOp(
        "bessel_i1e",
        torch.special.i1e,
        "bessel_i1e($0)",
        "I_{1e}\\left($0\\right)",
        source=S("torch.special.i1e($0)"),
    ),
    DecayUnaryOp("square", torch.square, "($0)^2", "\\left($0\\right)^{2}", source=S("torch.square($0)")),
    DecayUnaryOp(
        "sqrt_abs",
        lambda x: x.abs().sqrt(),
        "sqrt(|$0|)",
        "\\sqrt{\\left|$0\\right|}",
        source=S("$0.abs().sqrt()"),
    ),
    DecayUnaryOp(
        "softsign",
        lambda x: x / (1.0 + x.abs()),
        "softsign($0)",
        "\\frac{$0}{1+\\left|$0\\right|}",
        source=S("$0 / (1.0 + $0.abs())"),
    ),
    DecayUnaryOp(
        "dtanh",
        _dtanh,
        "dtanh($0)",
        "\\left(1-\\tanh^{2}\\left($0\\right)\\right)",
        source=S("_dtanh($0)", helpers=_DTANH_HELPER),
    ),
    DecayUnaryOp(
        "dsigmoid",
        _dsigmoid,
        "dsig($0)",
        "\\sigma'\\left($0\\right)",
        source=S("_dsigmoid($0)", helpers=_DSIGMOID_HELPER),
    ),
    DecayUnaryOp("identity", lambda x: x, "$0", "$0", source=S("$0")),
)

DECAY_BINARY_OPS: tuple[DecayBinaryOp, ...] = (
    DecayBinaryOp("add", torch.add, "$0 + $1", "$0 + $1", commutative=True, infix=True, source=S("$0 + $1")),
    DecayBinaryOp("sub", torch.sub, "$0 - $1", "$0 - $1", infix=True, source=S("$0 - $1")),
    DecayBinaryOp(
        "mul", torch.mul, "$0 * $1", "$0 \\cdot $1", commutative=True, infix=True, source=S("$0 * $1")
    ),
    DecayBinaryOp(
        "max",
        torch.maximum,
        "max($0, $1)",
        "\\max\\left($0, $1\\right)",
        commutative=True,
        source=S("torch.maximum($0, $1)"),
    ),
    DecayBinaryOp(
        "min",
        torch.minimum,
        "min($0, $1)",
        "\\min\\left($0, $1\\right)",
        commutative=True,
        source=S("torch.minimum($0, $1)"),
    ),
    DecayBinaryOp(
        "div", lambda x, y: x / (y + EPS), "$0 / $1", "\\frac{$0}{$1}", source=S(f"$0 / ($1 + {EPS!r})")
    ),
    DecayBinaryOp(
        "div_sqrt1p",
        lambda x, y: x / torch.sqrt(1.0 + y * y),
        "$0 / sqrt(1 + ($1)^2)",
        "\\frac{$0}{\\sqrt{1+\\left($1\\right)^{2}}}",
        source=S("$0 / torch.sqrt(1.0 + $1 * $1)"),
    ),
)


@hookimpl
def nosplug_schedules() -> list[Schedule]:
    return list(SCHEDULES)


@hookimpl
def nosplug_decay_unary_ops() -> list[DecayUnaryOp]:
    return list(DECAY_UNARY_OPS)


@hookimpl
def nosplug_decay_binary_ops() -> list[DecayBinaryOp]:
    return list(DECAY_BINARY_OPS)
