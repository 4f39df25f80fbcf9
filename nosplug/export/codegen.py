"""Text utilities of the exporter: placeholders, identifiers, line length, docstrings.

The exported module must pass the project's ruff configuration (line length 110) even when a
plugin's templates are long, so statements are wrapped at call arguments, and a line that still
cannot be shortened gets ``# noqa: E501`` rather than breaking the check.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import textwrap
import tokenize
from collections.abc import Mapping

#: Maximum line length of the generated module (the project's ruff setting).
WIDTH = 110
_PLACEHOLDER = re.compile(r"\$(\w+)")


class TemplateError(ValueError):
    """A template names a placeholder that is not available where it is used."""


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` placeholders by the variable names in ``values``."""

    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            known = ", ".join(f"${k}" for k in values) or "none"
            raise TemplateError(f"unknown placeholder ${key} (available here: {known})")
        return values[key]

    return _PLACEHOLDER.sub(repl, template)


def placeholders(template: str) -> set[str]:
    return set(_PLACEHOLDER.findall(template))


class Names:
    """Allocates readable, unique Python identifiers."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()) -> None:
        self.taken = set(reserved)

    def new(self, wanted: str) -> str:
        base = identifier(wanted)
        name, k = base, 1
        while name in self.taken or keyword.iskeyword(name):
            name = f"{base}_{k}" if k > 1 else f"{base}_"
            k += 1
        self.taken.add(name)
        return name


def identifier(text: str) -> str:
    """``ema(beta=0.999, power=2)`` -> ``ema_0_999_2``; ``w_1e-6`` -> ``w_1e_6``."""
    m = re.fullmatch(r"\s*([A-Za-z_][\w.\-]*)\s*\((.*)\)\s*", text)
    if m:  # a family reference: keep the values, drop the parameter names
        values = [v.split("=", 1)[-1] for v in m.group(2).split(",") if v.strip()]
        text = "_".join([m.group(1), *values])
    name = re.sub(r"\W+", "_", text.replace(".", "_")).strip("_") or "x"
    return f"x_{name}" if name[0].isdigit() else name


def camel_case(text: str) -> str:
    """``adam-paper`` -> ``AdamPaper``; ``opt6`` -> ``Opt6``."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", text) if p]
    name = "".join(p[:1].upper() + p[1:] for p in parts)
    return name if name and not name[0].isdigit() else f"Opt{name}"


def statement(code: str, indent: str) -> list[str]:
    """``code`` (one simple statement) as lines of at most :data:`WIDTH` characters where possible."""
    line = indent + code
    if len(line) <= WIDTH:
        return [line]
    tree = ast.parse(code).body[0]
    if isinstance(tree, ast.Assign) and len(tree.targets) == 1:
        prefix = ast.unparse(tree.targets[0]) + " = "
        return _expr_lines(tree.value, indent, prefix, "")
    if isinstance(tree, ast.Expr):
        return _expr_lines(tree.value, indent, "", "")
    return [line]


def _expr_lines(expr: ast.expr, indent: str, prefix: str, suffix: str) -> list[str]:
    """Break a call after its opening parenthesis, one argument per line, recursively."""
    text = ast.unparse(expr)
    line = f"{indent}{prefix}{text}{suffix}"
    inner = indent + "    "
    if len(line) <= WIDTH:
        return [line]
    if isinstance(expr, ast.Call) and (expr.args or expr.keywords):
        out = [f"{indent}{prefix}{ast.unparse(expr.func)}("]
        for a in expr.args:
            out += _expr_lines(a, inner, "", ",")
        for kw in expr.keywords:
            out += _expr_lines(kw.value, inner, f"{kw.arg}=" if kw.arg else "**", ",")
        return [*out, f"{indent}){suffix}"]
    if isinstance(expr, ast.List) and expr.elts:
        items = [line for e in expr.elts for line in _expr_lines(e, inner, "", ",")]
        return [f"{indent}{prefix}[", *items, f"{indent}]{suffix}"]
    if isinstance(expr, ast.ListComp) and len(expr.generators) == 1:
        gen = expr.generators[0]
        target, source = ast.unparse(gen.target), ast.unparse(gen.iter)
        return [
            f"{indent}{prefix}[",
            *_expr_lines(expr.elt, inner, "", ""),
            f"{inner}for {target} in {source}",
            f"{indent}]{suffix}",
        ]
    return [line]


def mark_long_lines(source: str) -> str:
    """Append ``# noqa: E501`` to code lines still longer than :data:`WIDTH` (not inside strings)."""
    lines = source.split("\n")
    if all(len(line) <= WIDTH for line in lines):
        return source
    in_string: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            in_string.update(range(tok.start[0], tok.end[0] + 1))
    for i, line in enumerate(lines, start=1):
        if len(line) > WIDTH and i not in in_string and "#" not in line:
            lines[i - 1] = line + "  # noqa: E501"
    return "\n".join(lines)


def docstring(text: str, indent: str) -> list[str]:
    """``text`` as a triple-quoted docstring whose lines fit :data:`WIDTH`.

    Runs of unindented lines are reflowed as paragraphs; an indented line (a formula, code, an
    ``Args:`` entry) keeps its place and is wrapped, if too long, with 4 more spaces of indent.
    Backslashes and triple quotes are escaped, so any text (a plugin's formula) is safe.
    """
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    width = WIDTH - len(indent)
    body: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            body.extend(textwrap.wrap(" ".join(prose), width, break_on_hyphens=False))
            prose.clear()

    for line in text.strip("\n").split("\n"):
        if not line.strip():
            flush()
            body.append("")
        elif line[0] in " \t":
            flush()
            lead = line[: len(line) - len(line.lstrip())]
            body += textwrap.wrap(
                line.strip(),
                width,
                initial_indent=lead,
                subsequent_indent=lead + "    ",
                break_on_hyphens=False,
            )
        else:
            prose.append(line.strip())
    flush()
    first = body[0] if body else ""
    lines = (
        [f'{indent}"""{first}'] if len(indent) + 3 + len(first) <= WIDTH else [f'{indent}"""', indent + first]
    )
    lines += [(indent + line).rstrip() for line in body[1:]]
    if len(lines) == 1 and len(lines[0]) + 3 <= WIDTH:
        return [lines[0] + '"""']
    return [*lines, f'{indent}"""']
