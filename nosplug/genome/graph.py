"""The parts a genome is built of: nodes, edges and the decay graphs that ride on edges.

Plain data with their JSON forms and checks (:class:`~nosplug.genome.model.Genome` assembles
them); :mod:`nosplug.genome.render` draws them, :mod:`nosplug.optim.program` compiles them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from nosplug.errors import UserError
from nosplug.genome.ids import HIDDEN
from nosplug.primitives.registry import Registry, UnknownPrimitiveError
from nosplug.primitives.registry import registry as default_registry


class GenomeError(ValueError, UserError):
    """A genome (or its JSON) is malformed; the message names the node and the problem."""


# ----------------------------------------------------------------------------- decay graphs
@dataclass
class DecayNode:
    """A node of a decay graph; ``inputs`` are schedule names or ``"hidden"``."""

    arity: int
    unary: str
    binary: str
    inputs: list[str]

    @property
    def op(self) -> str:
        return self.unary if self.arity == 1 else self.binary

    def to_dict(self) -> dict[str, Any]:
        return {"arity": self.arity, "unary": self.unary, "binary": self.binary, "inputs": list(self.inputs)}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> DecayNode:
        if not isinstance(d, dict):
            raise GenomeError(f"{where}: expected an object, got {type(d).__name__}")
        require_keys(d, {"arity", "unary", "binary", "inputs"}, where)
        inputs = d["inputs"]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise GenomeError(f"{where}: 'inputs' must be a list of schedule names")
        return cls(
            arity_of(d["arity"], where),
            nonempty_str(d["unary"], where, "unary"),
            nonempty_str(d["binary"], where, "binary"),
            list(inputs),
        )


@dataclass
class DecayGraph:
    """One hidden node and one output node over normalised-time schedules (spec §3.3)."""

    hidden: DecayNode
    out: DecayNode

    def hidden_active(self) -> bool:
        return HIDDEN in self.out.inputs

    def to_dict(self) -> dict[str, Any]:
        return {"hidden": self.hidden.to_dict(), "out": self.out.to_dict()}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> DecayGraph:
        if not isinstance(d, dict):
            raise GenomeError(f"{where}: decay must be an object with 'hidden' and 'out'")
        require_keys(d, {"hidden", "out"}, where)
        return cls(
            DecayNode.from_dict(d["hidden"], f"{where}.hidden"), DecayNode.from_dict(d["out"], f"{where}.out")
        )

    def validate(self, reg: Registry, where: str) -> None:
        for label, node in (("hidden", self.hidden), ("out", self.out)):
            w = f"{where} {label} node"
            if len(node.inputs) != node.arity:
                raise GenomeError(f"{w}: arity {node.arity} but {len(node.inputs)} input(s)")
            known_primitive(lambda n: reg.decay_unary(n), node.unary, w)
            known_primitive(lambda n: reg.decay_binary(n), node.binary, w)
            for src in node.inputs:
                if src == HIDDEN:
                    if label == "hidden":
                        raise GenomeError(f"{w}: the hidden node cannot read itself")
                    continue
                if src not in reg.items["schedules"]:
                    raise GenomeError(f"{w}: input {src!r} is not a registered schedule")

    def canonical(self, reg: Registry | None = None) -> str:
        reg = reg or default_registry()
        return self._expr(self.out, reg)

    def _expr(self, node: DecayNode, reg: Registry) -> str:
        args = [self._expr(self.hidden, reg) if s == HIDDEN else s for s in node.inputs]
        if node.arity == 1:
            return args[0] if node.unary == "identity" else f"{node.unary}({args[0]})"
        if reg.decay_binary(node.binary).commutative:
            args.sort()
        return f"{node.binary}({', '.join(args)})"

    def copy(self) -> DecayGraph:
        return copy.deepcopy(self)


# ----------------------------------------------------------------------------- update graph
@dataclass
class Edge:
    """An input of a node: an operand reference or a node id, optionally decayed."""

    src: str
    decay: DecayGraph | None = None

    def to_json_value(self) -> Any:
        if self.decay is None:
            return self.src
        return {"src": self.src, "decay": self.decay.to_dict()}


@dataclass
class Node:
    id: str
    arity: int
    unary: str
    binary: str
    inputs: list[Edge]

    @property
    def op(self) -> str:
        return self.unary if self.arity == 1 else self.binary

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "arity": self.arity,
            "unary": self.unary,
            "binary": self.binary,
            "inputs": [e.to_json_value() for e in self.inputs],
        }


def require_keys(d: dict, required: set[str], where: str, optional: set[str] = frozenset()) -> None:
    missing = required - set(d)
    if missing:
        raise GenomeError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    extra = set(d) - required - set(optional)
    if extra:
        raise GenomeError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")


def arity_of(v: Any, where: str) -> int:
    if v not in (1, 2) or isinstance(v, bool):
        raise GenomeError(f"{where}: arity must be 1 or 2, got {v!r}")
    return int(v)


def nonempty_str(v: Any, where: str, key: str) -> str:
    if not isinstance(v, str) or not v:
        raise GenomeError(f"{where}: {key!r} must be a non-empty string")
    return v


def known_primitive(lookup, name: str, where: str) -> None:
    try:
        lookup(name)
    except UnknownPrimitiveError as exc:
        raise GenomeError(f"{where}: {exc}") from None
