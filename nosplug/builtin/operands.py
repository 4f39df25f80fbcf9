"""Built-in plugin: the paper's 20 operands, plus the parameterised families they are made of.

The paper's operands (spec §1) are fixed instances of the families below (for example
``v_hat`` is ``ema(power=1, beta=0.9, bias_correction=true)``), so spaces beyond the paper's
fixed betas are registered by calling the same families with other parameters, either in a
genome (``"ema(power=2, beta=0.999)"``) or in a plugin of your own.

Each factory also writes the operand's :class:`~nosplug.primitives.base.SourceForm` for exported
optimizers, with the parameters it was called with and the same arithmetic as ``compute``.
"""

from __future__ import annotations

import torch

from nosplug.hookspecs import hookimpl
from nosplug.primitives.base import PAPER, EMASpec, Operand, OperandContext, OperandFamily, SourceForm
from nosplug.primitives.fmt import latex_num, num

_EXTRA = frozenset({"extra"})
_SYMBOL = {1: ("m", "m"), 2: ("v", "v"), 3: ("l", "\\lambda")}


def _gpow_text(power: int) -> tuple[str, str]:
    return ("g", "g") if power == 1 else (f"g^{power}", f"g^{{{power}}}")


def _gpow_source(power: int) -> tuple[str, str]:
    """``g**power`` as OperandContext.gpow computes it: (per-tensor, foreach) source."""
    if power == 1:
        return "$g", "$g"
    if power == 2:
        return "$g * $g", "torch._foreach_mul($g, $g)"
    return f"$g.pow({power})", f"torch._foreach_pow($g, {power})"


def _ema_hat_source(beta: float) -> tuple[str, str]:
    """The bias-corrected EMA (OperandContext.ema_hat): (per-tensor, foreach) source."""
    corr = f"1.0 - {beta!r}**$step"
    return f"$ema0 / ({corr})", f"torch._foreach_div($ema0, {corr})"


def _gpow_out(power: int, into: str) -> str:
    """Statements writing ``g**power`` into ``into`` (OperandContext.gpow's arithmetic)."""
    if power == 2:
        return f"torch.mul($g, $g, out={into})"
    return f"torch.pow($g, {power}, out={into})"


def _gpow_arg(power: int) -> tuple[str, str]:
    """(statements computing g**power into $tmp, the expression to read it); g itself for power 1."""
    return ("", "$g") if power == 1 else (_gpow_out(power, "$tmp") + "\n", "$tmp")


def ema(power: int = 1, beta: float = 0.9, bias_correction: bool = True) -> Operand:
    """EMA of ``g**power`` with decay ``beta``; bias-corrected with ``1 - beta**step`` if asked."""
    spec = EMASpec(int(power), float(beta))
    sym, lsym = _SYMBOL.get(spec.power, (f"e{spec.power}", f"e_{{{spec.power}}}"))
    if bias_correction:
        text, latex = f"{sym}_{num(beta)}", f"\\hat{{{lsym}}}_{{{num(beta)}}}"

        def compute(ctx: OperandContext) -> torch.Tensor:
            return ctx.ema_hat(spec)

        source = SourceForm(
            *_ema_hat_source(spec.beta), out=f"torch.div($ema0, 1.0 - {spec.beta!r}**$step, out=$out)"
        )
    else:
        text, latex = f"{sym}raw_{num(beta)}", f"{lsym}_{{{num(beta)}}}"

        def compute(ctx: OperandContext) -> torch.Tensor:
            return ctx.ema(spec)

        source = SourceForm("$ema0", "$ema0")

    form = ("ema", spec, bool(bias_correction))
    return Operand("ema", compute, text, latex, requires=(spec,), tags=_EXTRA, source=source, form=form)


def grad(power: int = 1) -> Operand:
    """``g**power``."""
    text, latex = _gpow_text(int(power))
    source = SourceForm(*_gpow_source(int(power)), out=None if power == 1 else _gpow_out(int(power), "$out"))
    return Operand(
        "grad",
        lambda ctx: ctx.gpow(int(power)),
        text,
        latex,
        tags=_EXTRA,
        source=source,
        form=("grad", int(power)),
    )


def const(value: float = 1.0) -> Operand:
    """A constant; kept as a Python float so it costs nothing to compute."""
    v = float(value)
    source = SourceForm(repr(v), scalar=True)
    return Operand(
        "const", lambda ctx: v, num(v), latex_num(v), tags=_EXTRA, source=source, form=("const", v)
    )


def weight(scale: float = 1.0) -> Operand:
    """``scale * w`` (the paper's weight-decay-like operands use scales 1e-6 ... 1e-3)."""
    s = float(scale)
    text = "w" if s == 1 else f"{num(s)}*w"
    latex = "w" if s == 1 else f"{latex_num(s)}\\,w"
    source = SourceForm(
        f"$w * {s!r}", f"torch._foreach_mul($w, {s!r})", out=f"torch.mul($w, {s!r}, out=$out)"
    )
    return Operand(
        "weight",
        lambda ctx: ctx.w * s,
        text,
        latex,
        tags=_EXTRA,
        uses_weight=True,
        source=source,
        form=("weight", s),
    )


def sign_grad() -> Operand:
    return Operand(
        "sign_grad",
        lambda ctx: torch.sign(ctx.g),
        "sign(g)",
        "\\operatorname{sign}(g)",
        tags=_EXTRA,
        source=SourceForm("torch.sign($g)", "torch._foreach_sign($g)", out="torch.sign($g, out=$out)"),
        form=("sign_grad",),
    )


def sign_ema(power: int = 1, beta: float = 0.9) -> Operand:
    """Sign of the EMA of ``g**power`` (bias correction cannot change a sign)."""
    spec = EMASpec(int(power), float(beta))
    sym, lsym = _SYMBOL.get(spec.power, (f"e{spec.power}", f"e_{{{spec.power}}}"))
    return Operand(
        "sign_ema",
        lambda ctx: torch.sign(ctx.ema(spec)),
        f"sign({sym}_{num(beta)})",
        f"\\operatorname{{sign}}(\\hat{{{lsym}}}_{{{num(beta)}}})",
        requires=(spec,),
        tags=_EXTRA,
        source=SourceForm(
            "torch.sign($ema0)", "torch._foreach_sign($ema0)", out="torch.sign($ema0, out=$out)"
        ),
        form=("sign_ema", spec),
    )


def quasi_hyperbolic(power: int = 1, beta: float = 0.9, nu: float = 0.7) -> Operand:
    """QHM-style interpolation ``(1 - nu) * g**power + nu * ema_hat``."""
    spec = EMASpec(int(power), float(beta))
    p, n = int(power), float(nu)
    sym, lsym = _SYMBOL.get(spec.power, (f"e{spec.power}", f"e_{{{spec.power}}}"))
    gt, gl = _gpow_text(p)

    def compute(ctx: OperandContext) -> torch.Tensor:
        return torch.lerp(ctx.gpow(p), ctx.ema_hat(spec), n)

    (g_expr, g_each), (e_expr, e_each) = _gpow_source(p), _ema_hat_source(spec.beta)
    g_first, g_read = _gpow_arg(p)
    source = SourceForm(
        f"torch.lerp({g_expr}, {e_expr}, {n!r})",
        f"torch._foreach_lerp({g_each}, {e_each}, {n!r})",
        out=(
            f"{g_first}torch.div($ema0, 1.0 - {spec.beta!r}**$step, out=$out)\n"
            f"torch.lerp({g_read}, $out, {n!r}, out=$out)"
        ),
    )

    return Operand(
        "qh",
        compute,
        f"({num(1 - n)}*{gt} + {num(n)}*{sym}_{num(beta)})",
        f"({num(1 - n)}{gl} + {num(n)}\\hat{{{lsym}}}_{{{num(beta)}}})",
        requires=(spec,),
        tags=_EXTRA,
        source=source,
        form=("qh", p, spec, n),
    )


def aggmo(power: int = 1, beta: float = 0.9, betas: tuple[float, ...] = (0.0, 0.9, 0.999)) -> Operand:
    """AggMo-style ``mean_b(b * ema_raw - g**power)`` over ``betas`` (raw EMA, spec §1 ops 17-19)."""
    spec = EMASpec(int(power), float(beta))
    p = int(power)
    c = sum(float(b) for b in betas) / len(betas)
    sym, lsym = _SYMBOL.get(spec.power, (f"e{spec.power}", f"e_{{{spec.power}}}"))
    gt, gl = _gpow_text(p)

    def compute(ctx: OperandContext) -> torch.Tensor:
        return ctx.ema(spec) * c - ctx.gpow(p)

    g_expr, g_each = _gpow_source(p)
    g_first, g_read = _gpow_arg(p)
    source = SourceForm(
        f"$ema0 * {c!r} - {g_expr}",
        f"torch._foreach_sub(torch._foreach_mul($ema0, {c!r}), {g_each})",
        out=f"{g_first}torch.mul($ema0, {c!r}, out=$out)\n$out.sub_({g_read})",
    )

    return Operand(
        "aggmo",
        compute,
        f"({num(round(c, 5))}*{sym}raw_{num(beta)} - {gt})",
        f"({num(round(c, 5))}{lsym}_{{{num(beta)}}} - {gl})",
        requires=(spec,),
        tags=_EXTRA,
        source=source,
        form=("aggmo", p, spec, c),
    )


FAMILIES = (
    OperandFamily("ema", ema, {"power": 1, "beta": 0.9, "bias_correction": True}, ema.__doc__ or ""),
    OperandFamily("grad", grad, {"power": 1}, grad.__doc__ or ""),
    OperandFamily("const", const, {"value": 1.0}, const.__doc__ or ""),
    OperandFamily("weight", weight, {"scale": 1.0}, weight.__doc__ or ""),
    OperandFamily("sign_grad", sign_grad, {}, "sign(g)"),
    OperandFamily("sign_ema", sign_ema, {"power": 1, "beta": 0.9}, sign_ema.__doc__ or ""),
    OperandFamily(
        "qh", quasi_hyperbolic, {"power": 1, "beta": 0.9, "nu": 0.7}, quasi_hyperbolic.__doc__ or ""
    ),
    OperandFamily("aggmo", aggmo, {"power": 1, "beta": 0.9, "betas": (0.0, 0.9, 0.999)}, aggmo.__doc__ or ""),
)


def _paper(name: str, op: Operand, text: str, latex: str, description: str) -> Operand:
    from dataclasses import replace

    return replace(op, name=name, text=text, latex=latex, tags=frozenset({PAPER}), description=description)


#: The paper's operand set in its index order (spec §1). Betas 0.9 / 0.99 / 0.999 for g, g², g³.
PAPER_OPERANDS: tuple[Operand, ...] = (
    _paper("g", grad(1), "g", "g", "the gradient"),
    _paper("g2", grad(2), "g^2", "g^{2}", "squared gradient"),
    _paper("g3", grad(3), "g^3", "g^{3}", "cubed gradient"),
    _paper("v_hat", ema(1, 0.9), "v_hat", "\\hat{v}", "bias-corrected EMA of g, beta 0.9"),
    _paper("s_hat", ema(2, 0.99), "s_hat", "\\hat{s}", "bias-corrected EMA of g^2, beta 0.99"),
    _paper("lam_hat", ema(3, 0.999), "lam_hat", "\\hat{\\lambda}", "bias-corrected EMA of g^3, beta 0.999"),
    _paper("one", const(1.0), "1", "1", "the constant 1"),
    _paper("two", const(2.0), "2", "2", "the constant 2"),
    _paper("w_1e-6", weight(1e-6), "1e-6*w", "10^{-6}w", "1e-6 times the weight"),
    _paper("w_1e-5", weight(1e-5), "1e-5*w", "10^{-5}w", "1e-5 times the weight"),
    _paper("w_1e-4", weight(1e-4), "1e-4*w", "10^{-4}w", "1e-4 times the weight"),
    _paper("w_1e-3", weight(1e-3), "1e-3*w", "10^{-3}w", "1e-3 times the weight"),
    _paper("sign_g", sign_grad(), "sign(g)", "\\operatorname{sign}(g)", "sign of the gradient"),
    _paper("sign_v_hat", sign_ema(1, 0.9), "sign(v_hat)", "\\operatorname{sign}(\\hat{v})", "sign of v_hat"),
    _paper("qhm_g", quasi_hyperbolic(1, 0.9, 0.7), "(0.3*g + 0.7*v_hat)", "(0.3g + 0.7\\hat{v})", "QHM term"),
    _paper(
        "qhm_g2",
        quasi_hyperbolic(2, 0.99, 0.95),
        "(0.05*g^2 + 0.95*s_hat)",
        "(0.05g^{2} + 0.95\\hat{s})",
        "QH interpolation of g^2 and s_hat",
    ),
    _paper(
        "qhm_g3",
        quasi_hyperbolic(3, 0.999, 0.99),
        "(0.01*g^3 + 0.99*lam_hat)",
        "(0.01g^{3} + 0.99\\hat{\\lambda})",
        "QH interpolation of g^3 and lam_hat (the reference log mislabels it g^2; it computes g^3)",
    ),
    _paper(
        "aggmo_g",
        aggmo(1, 0.9, (0.0, 0.9, 0.999)),
        "mean(beta*v - g)",
        "\\overline{\\beta v - g}",
        "mean over beta in {0, 0.9, 0.999} of (beta*v - g), raw v",
    ),
    _paper(
        "aggmo_g2",
        aggmo(2, 0.99, (0.0, 0.99, 0.999)),
        "mean(beta*s - g^2)",
        "\\overline{\\beta s - g^{2}}",
        "mean over beta in {0, 0.99, 0.999} of (beta*s - g^2), raw s",
    ),
    _paper(
        "aggmo_g3",
        aggmo(3, 0.999, (0.0, 0.999, 0.9999)),
        "mean(beta*lam - g^3)",
        "\\overline{\\beta \\lambda - g^{3}}",
        "mean over beta in {0, 0.999, 0.9999} of (beta*lam - g^3), raw lam",
    ),
)


@hookimpl
def nosplug_operands() -> list[Operand]:
    return list(PAPER_OPERANDS)


@hookimpl
def nosplug_operand_families() -> list[OperandFamily]:
    return list(FAMILIES)
