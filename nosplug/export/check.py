"""Which primitives an export needs, whether each has a source form, and their helper code.

A genome is exportable when every primitive its *active* graph uses (operands, node ops, and the
schedules and ops of the decay graphs on active edges) carries a
:class:`~nosplug.primitives.base.SourceForm`. Otherwise :class:`ExportError` names each primitive
without one and the plugin that registered it, in one message.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

from nosplug.errors import UserError
from nosplug.genome.graph import DecayGraph
from nosplug.genome.ids import HIDDEN
from nosplug.genome.model import Genome
from nosplug.optim.program import Program
from nosplug.primitives.base import SourceForm, StatefulOp
from nosplug.primitives.registry import Registry

#: The only modules an exported optimizer imports.
ALLOWED_IMPORTS = frozenset({"torch", "math"})


class ExportError(ValueError, UserError):
    """The genome cannot be written as plain PyTorch; the message names the primitive(s)."""


@dataclass(frozen=True)
class Used:
    """One primitive the export needs: its kind label, name, record and registering plugin."""

    label: str
    name: str
    record: object
    plugin: str

    @property
    def source(self) -> SourceForm | None:
        return getattr(self.record, "source", None)

    def describe(self) -> str:
        return f"{self.label} {self.name!r} (plugin {self.plugin!r})"


def used_primitives(genome: Genome, program: Program, reg: Registry) -> list[Used]:
    """Every primitive the compiled program runs, in first-use order, without repeats."""
    out: dict[tuple[str, str], Used] = {}

    def add(label: str, kind: str, name: str, record: object, plugin_key: str | None = None) -> None:
        if (label, name) not in out:
            plugin = reg.provenance.get((kind, plugin_key or name), "?")
            out[(label, name)] = Used(label, name, record, plugin)

    for op in program.operands:
        family = op.name.split("(", 1)[0] if "(" in op.name else None
        kind = "operand_families" if family else "operands"
        add("operand", kind, op.name, op, family)
    for node in genome.topological_order():
        if node.arity == 1:
            kind = "stateful_ops" if reg.is_stateful(node.unary) else "unary_ops"
            add(
                "stateful op" if kind == "stateful_ops" else "unary op",
                kind,
                node.unary,
                reg.unary(node.unary),
            )
        else:
            add("binary op", "binary_ops", node.binary, reg.binary(node.binary))
    for decay in program.decays:
        for label, kind, name, record in decay_primitives(decay, reg):
            add(label, kind, name, record)
    return list(out.values())


def decay_primitives(decay: DecayGraph, reg: Registry) -> Iterator[tuple[str, str, str, object]]:
    """(label, registry kind, name, record) of the schedules and ops a decay graph evaluates."""
    nodes = [decay.hidden, decay.out] if decay.hidden_active() else [decay.out]
    for node in nodes:
        for src in node.inputs:
            if src != HIDDEN:
                yield "schedule", "schedules", src, reg.schedule(src)
        if node.arity == 1:
            yield "decay unary op", "decay_unary_ops", node.unary, reg.decay_unary(node.unary)
        else:
            yield "decay binary op", "decay_binary_ops", node.binary, reg.decay_binary(node.binary)


def templates(src: SourceForm | None) -> list[str]:
    """The templates of a source form the export may use: its out form and expr, or else its
    foreach form."""
    if src is None:
        return []
    chosen = [t for t in (src.out, src.expr) if t]
    return chosen or ([src.foreach] if src.foreach else [])


def check_exportable(genome: Genome, used: list[Used]) -> None:
    """Raise :class:`ExportError` naming every primitive without a usable source form."""
    problems = []
    for u in used:
        src = u.source
        if src is None:
            problems.append(f"{u.describe()} has no source form")
        elif u.label.startswith(("schedule", "decay", "operand")) and not src.expr:
            problems.append(f"{u.describe()} needs an expr in its source form")
        elif not (src.expr or src.foreach or src.out):
            problems.append(f"{u.describe()} has an empty source form")
        elif isinstance(u.record, StatefulOp) and not any("$state" in t for t in templates(src)):
            problems.append(f"{u.describe()} is state-holding but its source form never reads $state")
    if problems:
        raise ExportError(
            f"genome {genome.canonical_hash()} cannot be exported as PyTorch source: "
            + "; ".join(problems)
            + ". A plugin gives a primitive its source form with the `source` field of its record "
            "(nosplug.primitives.base.SourceForm, see docs/export.md)."
        )


def collect_helpers(used: list[Used], taken: set[str]) -> list[str]:
    """The helper sources of ``used`` that the export calls (the templates it uses name one of
    their functions), each once, checked: top-level names must not clash with each other or with
    ``taken`` (names the module defines itself), and only torch and math may be imported."""
    helpers: list[str] = []
    owner: dict[str, tuple[str, str]] = {}
    for u in used:
        text = u.source.helpers.strip("\n") if u.source else ""
        if not text or text in helpers:
            continue
        defined = set(re.findall(r"^(?:def|class) (\w+)|^(\w+)\s*=", text, re.M))
        names = {a or b for a, b in defined}
        used_here = [
            t for t in templates(u.source) if any(re.search(rf"\b{re.escape(n)}\b", t) for n in names)
        ]
        if names and not used_here:
            continue  # e.g. the helper of a foreach form the export does not use
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            raise ExportError(f"the helpers of {u.describe()} are not valid Python: {exc}") from None
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                bad = [m for m in mods if m.split(".")[0] not in ALLOWED_IMPORTS]
                if bad:
                    raise ExportError(
                        f"the helpers of {u.describe()} import {', '.join(bad)}; "
                        "an exported optimizer may import only torch and math"
                    )
        for node in tree.body:
            for name in _defined_names(node):
                if name in taken:
                    raise ExportError(
                        f"the helpers of {u.describe()} define {name!r}, a name the export uses"
                    )
                if name in owner and owner[name][1] != text:
                    other = owner[name][0]
                    raise ExportError(
                        f"the helpers of {u.describe()} and of {other} both define {name!r} differently"
                    )
                owner[name] = (u.describe(), text)
        helpers.append(text)
    return helpers


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []
