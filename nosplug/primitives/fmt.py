"""Number formatting shared by formulas and operand names."""

from __future__ import annotations


def num(x: float) -> str:
    """Short, exact-enough rendering: 1e-06 -> '1e-6', 0.999 -> '0.999', 2.0 -> '2'."""
    if float(x).is_integer() and abs(x) < 1e6:
        return str(int(x))
    s = format(x, ".6g")
    if "e" in s:
        mant, exp = s.split("e")
        sign = "-" if exp.startswith("-") else ""
        s = f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return s


def latex_num(x: float) -> str:
    s = num(x)
    if "e" in s:
        mant, exp = s.split("e")
        return (f"{mant}\\cdot " if mant != "1" else "") + f"10^{{{exp}}}"
    return s
