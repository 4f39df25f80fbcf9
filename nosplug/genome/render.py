"""Readable text and LaTeX for a genome's active update rule.

Templates of primitives use ``$0``/``$1`` placeholders. An argument that is itself an infix
expression (``a + b``) is parenthesised unless the template already delimits it, as in
``max($0, $1)`` or ``\\frac{$0}{$1}``. A decayed edge renders as ``[d](x)``.
"""

from __future__ import annotations

import re
from typing import Protocol

from nosplug.genome.graph import DecayGraph, DecayNode, Edge, Node
from nosplug.genome.ids import HIDDEN, ROOT
from nosplug.primitives.registry import Registry


class Drawable(Protocol):
    """What :func:`render` reads of a genome (:class:`~nosplug.genome.model.Genome`, which calls
    it from ``formula()``, so this module cannot import it)."""

    momentum: str
    nesterov: str
    flip: bool

    @property
    def node_ids(self) -> list[str]: ...

    def node(self, node_id: str) -> Node: ...

    def topological_order(self) -> list[Node]: ...


_OPEN = ("(", "|", "{", ", ", "[")
_CLOSE = (")", "|", "}", ",", "\\right", "]")
_PLACEHOLDER = re.compile(r"\$([01])")


def fill(template: str, args: list[tuple[str, bool]], latex: bool) -> str:
    """Substitute ``(text, is_infix)`` arguments into ``template``."""

    def repl(m: re.Match[str]) -> str:
        text, infix = args[int(m.group(1))]
        before, after = template[: m.start()], template[m.end() :]
        delimited = before.endswith(_OPEN) and after.startswith(_CLOSE)
        if infix and not delimited:
            return f"\\left({text}\\right)" if latex else f"({text})"
        return text

    return _PLACEHOLDER.sub(repl, template)


def _wrapped(text: str) -> bool:
    """True if ``text`` is one parenthesised group, like ``(a + b)``."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return False
    return True


def _is_infix_template(template: str) -> bool:
    stripped = template.strip()
    return bool(re.fullmatch(r"\$0 .+ \$1", stripped)) or stripped.startswith("$0 ")


def render_decay(decay: DecayGraph, reg: Registry, latex: bool = False) -> str:
    def node(n: DecayNode) -> tuple[str, bool]:
        args = [node(decay.hidden) if s == HIDDEN else _schedule(s) for s in n.inputs]
        if n.arity == 1:
            op = reg.decay_unary(n.unary)
            if n.unary == "identity":
                return args[0]
            return fill(op.latex if latex else op.text, args, latex), False
        bop = reg.decay_binary(n.binary)
        tpl = bop.latex if latex else bop.text
        return fill(tpl, args, latex), bop.infix

    def _schedule(name: str) -> tuple[str, bool]:
        s = reg.schedule(name)
        return (s.latex if latex else s.text), False

    return node(decay.out)[0]


def render(genome: Drawable, reg: Registry, latex: bool = False) -> str:
    ids = set(genome.node_ids)
    memo: dict[str, tuple[str, bool]] = {}

    def edge(e: Edge) -> tuple[str, bool]:
        if e.src in ids:
            inner = node(e.src)
        else:
            op = reg.operand(e.src)
            inner = ((op.latex if latex else op.text), False)
        if e.decay is None:
            return inner
        d = render_decay(e.decay, reg, latex)
        if latex:
            return f"\\left[{d}\\right]\\left({inner[0]}\\right)", False
        body = inner[0] if _wrapped(inner[0]) else f"({inner[0]})"
        return f"[{d}]{body}", False

    def node(nid: str) -> tuple[str, bool]:
        if nid in memo:
            return memo[nid]
        n = genome.node(nid)
        args = [edge(e) for e in n.inputs]
        if n.arity == 1:
            if n.unary == "identity":
                out = args[0]
            else:
                op = reg.unary(n.unary)
                out = (fill(op.latex if latex else op.text, args, latex), False)
        else:
            bop = reg.binary(n.binary)
            tpl = bop.latex if latex else bop.text
            out = (fill(tpl, args, latex), bop.infix or _is_infix_template(tpl))
        memo[nid] = out
        return out

    genome.topological_order()  # raises on an active cycle
    body = node(ROOT)[0]
    prefix = []
    if genome.momentum == "momentum":
        prefix.append("Momentum")
    elif genome.momentum == "nesterov":
        prefix.append("Nesterov" if genome.nesterov == "standard" else "Nesterov(reference)")
    if genome.flip:
        prefix.append("flipped")
    if not prefix:
        return body
    sep = " \\sim " if latex else " ~ "
    return ", ".join(prefix) + sep + body
