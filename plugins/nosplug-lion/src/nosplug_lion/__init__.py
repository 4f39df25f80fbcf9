"""nosplug plugin for Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Alg. 2).

Lion, per parameter with gradient g, momentum m (zero at the start), learning rate eta, betas
beta1 = 0.9, beta2 = 0.99 and decoupled weight decay lambda::

    c = beta1 * m + (1 - beta1) * g        # uses m from BEFORE this step's update
    w <- w - eta * (sign(c) + lambda * w)
    m <- beta2 * m + (1 - beta2) * g

What this plugin registers (entry point ``lion = "nosplug_lion"``), all tagged ``"lion"`` and not
``"paper"``, so none of it enters the paper's default search space unless a study lists it:

* unary op ``sign``: elementwise sign (``torch.sign``, so ``sign(0) = 0``);
* state-holding unary op ``lion_interp``: returns c and then advances m (betas 0.9 / 0.99);
* zoo genomes ``lion`` (lambda = 0) and ``lionw`` (lambda = 0.01).

Why a state-holding op and not an EMA operand: nosplug advances its shared EMA slots *before*
operands are computed (see :class:`nosplug.primitives.OperandContext`), so ``ema(beta=0.99)``
would hand the graph the post-update m and the interpolation would not be Lion's. A
:class:`~nosplug.primitives.StatefulOp` owns its state and decides the order itself.

Why no weight-decay operand of its own: the built-in family ``weight(scale=...)`` already
computes ``scale * w`` (it is what the paper's ``w_1e-3`` operands are made of). A second
name for the same computation would give equal update rules different canonical hashes, which
a search then counts as different optimizers. ``lionw`` therefore reads ``weight(scale=0.01)``.

Stateful ops are referenced by a bare name in a node's unary slot, so they carry no parameters;
other betas are registered under their own name with :func:`lion_interp_op` from a plugin of
your own (see the README).

Both primitives carry a :class:`~nosplug.primitives.base.SourceForm`, so ``nosplug genome export
lion`` writes Lion as a standalone PyTorch optimizer; ``lion_interp_op`` writes the source with the
betas it was built with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from nosplug.hookspecs import hookimpl
from nosplug.primitives import ExecContext, StatefulOp, UnaryOp
from nosplug.primitives.base import SourceForm
from nosplug.primitives.fmt import num

__version__ = "0.1.0"

#: Tags of everything this plugin registers: outside the paper's space, listable in ``[space]``.
TAGS = frozenset({"lion"})
#: The paper's defaults (Chen et al. 2023, Algorithm 2 and section 3).
BETA1, BETA2 = 0.9, 0.99
#: Name of the registered interpolation op with the paper's betas.
LION_INTERP = "lion_interp"
#: Decoupled weight decay of the ``lionw`` zoo genome.
LIONW_WEIGHT_DECAY = 0.01
#: Default learning rate of both zoo genomes (the paper: 3-10x smaller than AdamW's).
DEFAULT_LR = 1e-4
SOURCE = "Chen et al. 2023, 'Symbolic Discovery of Optimization Algorithms' (arXiv:2302.06675), Algorithm 2"

SIGN = UnaryOp(
    "sign",
    torch.sign,
    "sign($0)",
    "\\operatorname{sign}\\left($0\\right)",
    tags=TAGS,
    description="elementwise sign, sign(0) = 0 (Lion's update direction)",
    source=SourceForm("torch.sign($0)", "torch._foreach_sign($0)"),
)

#: Source of the interpolation for exported optimizers: the arithmetic of ``_interp_fn`` on lists.
_INTERP_HELPER = """\
def _lion_interp(xs, ms, beta1, beta2):
    \"\"\"Lion: c = beta1*m + (1 - beta1)*x from m before its update; m <- beta2*m + (1 - beta2)*x.\"\"\"
    c = torch._foreach_mul(ms, beta1)
    torch._foreach_add_(c, torch._foreach_mul(xs, 1.0 - beta1))
    torch._foreach_mul_(ms, beta2)
    torch._foreach_add_(ms, torch._foreach_mul(xs, 1.0 - beta2))
    return c
"""


def _interp_fn(beta1: float, beta2: float) -> Callable[[Tensor, Tensor, ExecContext], Tensor]:
    def fn(x: Tensor, state: Tensor, ctx: ExecContext) -> Tensor:
        g = ctx.full(x, like=state)  # a constant input arrives as a 0-d tensor
        c = state * beta1 + g * (1.0 - beta1)  # from m before the update, as Lion requires
        state.mul_(beta2).add_(g * (1.0 - beta2))
        return c

    return fn


def lion_interp_op(beta1: float = BETA1, beta2: float = BETA2, name: str | None = None) -> StatefulOp:
    """The Lion interpolation as a state-holding unary op with the given betas.

    ``op(x)`` returns ``beta1 * m + (1 - beta1) * x`` and then sets ``m <- beta2 * m + (1 - beta2) * x``;
    ``m`` starts at zero and is kept per graph node and parameter. State-holding ops cannot take
    parameters in a genome, so each pair of betas is its own op: the default name is
    ``lion_interp`` for the paper's betas and ``lion_interp_<beta1>_<beta2>`` otherwise.
    Register it from your own plugin's ``nosplug_stateful_ops`` hook.
    """
    b1, b2 = float(beta1), float(beta2)
    for label, b in (("beta1", b1), ("beta2", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{label} must lie in [0, 1), got {b!r}")
    if name is None:
        name = LION_INTERP if (b1, b2) == (BETA1, BETA2) else f"{LION_INTERP}_{num(b1)}_{num(b2)}"
    return StatefulOp(
        name,
        _interp_fn(b1, b2),
        f"lion[{num(b1)},{num(b2)}]($0)",
        f"\\operatorname{{Lion}}_{{{num(b1)},{num(b2)}}}\\left($0\\right)",
        tags=TAGS,
        description=(
            f"Lion interpolation: {num(b1)}*m + {num(1 - b1)}*x with m before its update, "
            f"then m <- {num(b2)}*m + {num(1 - b2)}*x"
        ),
        source=SourceForm(None, f"_lion_interp($0, $state, {b1!r}, {b2!r})", _INTERP_HELPER),
    )


def lion_genome(
    weight_decay: float = 0.0,
    *,
    interp: str = LION_INTERP,
    lr: float = DEFAULT_LR,
    name: str = "lion",
    description: str | None = None,
) -> dict[str, Any]:
    """Lion as a nosplug genome (dict form): ``U = sign(interp(g)) [+ weight_decay * w]``.

    GraphOptimizer applies ``w <- w - lr * U`` for a genome without momentum, which is Lion's
    ``w <- w - eta * (sign(c) + lambda * w)``. ``interp`` names a registered Lion interpolation
    op (see :func:`lion_interp_op`), so genomes with other betas are one call away.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    node = {"arity": 1, "unary": "identity", "binary": "add"}
    nodes: list[dict[str, Any]] = [{**node, "id": "h0", "unary": interp, "inputs": ["g"]}]
    if weight_decay == 0:
        nodes.append({**node, "id": "out", "unary": "sign", "inputs": ["h0"]})
        what = "no weight decay"
    else:
        nodes.append({**node, "id": "h1", "unary": "sign", "inputs": ["h0"]})
        decay = f"weight(scale={weight_decay!r})"
        nodes.append({**node, "id": "out", "arity": 2, "binary": "add", "inputs": ["h1", decay]})
        what = f"decoupled weight decay {num(weight_decay)}"
    return {
        "format": "nosplug-genome",
        "version": 1,
        "momentum": "none",
        "nesterov": "standard",
        "flip": False,
        "nodes": nodes,
        "meta": {
            "name": name,
            "description": description or f"Lion (sign of an interpolated momentum), {what}",
            "source": SOURCE,
            "defaults": {"lr": lr},
        },
    }


@hookimpl
def nosplug_unary_ops() -> list[UnaryOp]:
    return [SIGN]


@hookimpl
def nosplug_stateful_ops() -> list[StatefulOp]:
    return [lion_interp_op()]


@hookimpl
def nosplug_zoo_genomes() -> dict[str, dict[str, Any]]:
    return {
        "lion": lion_genome(
            0.0,
            name="lion",
            description="Lion with the paper's betas 0.9/0.99 and no weight decay: U = sign(c)",
        ),
        "lionw": lion_genome(
            LIONW_WEIGHT_DECAY,
            name="lionw",
            description=(
                "Lion with the paper's betas 0.9/0.99 and decoupled weight decay 0.01: U = sign(c) + 0.01*w"
            ),
        ),
    }
