"""The genome: a typed DAG over operands, with optional decay graphs on its edges.

Layout (spec §5): operand leaves, hidden nodes ``h0 .. h{n-1}`` and one output node ``out``.
Every node stores both a unary and a binary op and its ``arity`` says which one is in use, so
the unary<->binary mutation can switch back to the op it had. Each input edge may carry a
:class:`DecayGraph` whose scalar value d(t) in [0, 1] multiplies what travels along the edge.

A genome is plain data: it knows nothing about tensors. :mod:`nosplug.optim.program` compiles
it for execution; :mod:`nosplug.genome.render` draws it; :mod:`nosplug.genome.mutation` and
:mod:`nosplug.genome.random` change and create it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nosplug.genome.graph import (
    DecayGraph,
    Edge,
    GenomeError,
    Node,
    arity_of,
    known_primitive,
    nonempty_str,
    require_keys,
)
from nosplug.genome.ids import ROOT
from nosplug.primitives.registry import Registry, UnknownPrimitiveError
from nosplug.primitives.registry import registry as default_registry

FORMAT = "nosplug-genome"
FORMAT_VERSION = 1
MOMENTUM_TYPES = ("none", "momentum", "nesterov")
NESTEROV_FORMS = ("standard", "reference")


@dataclass
class Genome:
    """An optimizer: update graph, momentum type, sign flip and free-form metadata.

    ``meta`` (name, description, default hyperparameters, recommended schedule, provenance)
    travels with the JSON but never enters :meth:`canonical_hash`.
    """

    nodes: list[Node]
    momentum: str = "none"
    nesterov: str = "standard"
    flip: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    # -- structure ----------------------------------------------------------------------
    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]

    @property
    def hidden_ids(self) -> list[str]:
        return [n.id for n in self.nodes if n.id != ROOT]

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise GenomeError(f"no node {node_id!r}")

    @property
    def root(self) -> Node:
        return self.node(ROOT)

    def is_node(self, ref: str) -> bool:
        return any(n.id == ref for n in self.nodes)

    def active_ids(self) -> list[str]:
        """Nodes reachable from the root (breadth-first, root first)."""
        ids = set(self.node_ids)
        seen = [ROOT]
        queue = [ROOT]
        while queue:
            cur = self.node(queue.pop(0))
            for e in cur.inputs:
                if e.src in ids and e.src not in seen:
                    seen.append(e.src)
                    queue.append(e.src)
        return seen

    def active_nodes(self) -> list[Node]:
        return [self.node(i) for i in self.active_ids()]

    def find_active_cycle(self) -> list[str] | None:
        """A cycle among active nodes as a list of ids, or None."""
        ids = set(self.node_ids)
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(nid: str) -> list[str] | None:
            state[nid] = 1
            stack.append(nid)
            for e in self.node(nid).inputs:
                if e.src not in ids:
                    continue
                if state.get(e.src) == 1:
                    return [*stack[stack.index(e.src) :], e.src]
                if e.src not in state:
                    found = visit(e.src)
                    if found:
                        return found
            stack.pop()
            state[nid] = 2
            return None

        return visit(ROOT)

    def topological_order(self) -> list[Node]:
        """Active nodes, inputs before the nodes that read them; the root is last."""
        cycle = self.find_active_cycle()
        if cycle:
            raise GenomeError(f"active nodes form a cycle: {' -> '.join(cycle)}")
        ids = set(self.node_ids)
        order: list[str] = []
        done: set[str] = set()

        def visit(nid: str) -> None:
            if nid in done:
                return
            for e in self.node(nid).inputs:
                if e.src in ids:
                    visit(e.src)
            done.add(nid)
            order.append(nid)

        visit(ROOT)
        return [self.node(i) for i in order]

    def active_operands(self, reg: Registry | None = None) -> list[str]:
        """Operand references read by active nodes, in first-use order."""
        ids = set(self.node_ids)
        out: list[str] = []
        for n in self.topological_order():
            for e in n.inputs:
                if e.src not in ids and e.src not in out:
                    out.append(e.src)
        return out

    def edges(self) -> Iterator[tuple[Node, int, Edge]]:
        for n in self.nodes:
            for i, e in enumerate(n.inputs):
                yield n, i, e

    def copy(self) -> Genome:
        return copy.deepcopy(self)

    # -- validation ----------------------------------------------------------------------
    def validate(self, reg: Registry | None = None) -> Genome:
        """Raise :class:`GenomeError` naming the node and the problem; return self if valid."""
        reg = reg or default_registry()
        ids = self.node_ids
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise GenomeError(f"node id {dup!r} appears more than once")
        if ROOT not in ids:
            raise GenomeError(f"the genome has no output node {ROOT!r}")
        if self.momentum not in MOMENTUM_TYPES:
            raise GenomeError(f"momentum {self.momentum!r} is not one of {', '.join(MOMENTUM_TYPES)}")
        if self.nesterov not in NESTEROV_FORMS:
            raise GenomeError(f"nesterov form {self.nesterov!r} is not one of {', '.join(NESTEROV_FORMS)}")
        if not isinstance(self.flip, bool):
            raise GenomeError("flip must be true or false")
        for n in self.nodes:
            where = f"node {n.id!r}"
            if n.id != ROOT and not (n.id.startswith("h") and n.id[1:].isdigit()):
                raise GenomeError(f"{where}: hidden node ids must look like h0, h1, ...")
            if n.arity not in (1, 2):
                raise GenomeError(f"{where}: arity must be 1 or 2, got {n.arity!r}")
            if len(n.inputs) != n.arity:
                raise GenomeError(f"{where}: arity {n.arity} but {len(n.inputs)} input(s)")
            known_primitive(reg.unary, n.unary, where)
            known_primitive(reg.binary, n.binary, where)
            for i, e in enumerate(n.inputs):
                ew = f"{where} input {i}"
                if e.src == n.id:
                    raise GenomeError(f"{ew}: the node reads itself")
                if e.src not in ids:
                    try:
                        reg.operand(e.src)
                    except UnknownPrimitiveError as exc:
                        raise GenomeError(
                            f"{ew}: {e.src!r} is neither a node of this genome "
                            f"nor a registered operand ({exc})"
                        ) from None
                if e.decay is not None:
                    e.decay.validate(reg, f"{ew} decay")
        cycle = self.find_active_cycle()
        if cycle:
            raise GenomeError(f"active nodes form a cycle: {' -> '.join(cycle)}")
        return self

    # -- identity -----------------------------------------------------------------------
    def canonical_expression(self, reg: Registry | None = None) -> str:
        """A string equal for genomes that compute the same update.

        Inactive nodes do not appear, identity nodes are transparent, operand references are
        normalised, and the inputs of commutative ops are sorted.
        """
        reg = reg or default_registry()
        ids = set(self.node_ids)
        memo: dict[str, str] = {}

        def edge(e: Edge) -> str:
            inner = node_expr(e.src) if e.src in ids else reg.canonical_operand_ref(e.src)
            return f"[{e.decay.canonical(reg)}]({inner})" if e.decay is not None else inner

        def node_expr(nid: str) -> str:
            if nid in memo:
                return memo[nid]
            n = self.node(nid)
            args = [edge(e) for e in n.inputs]
            if n.arity == 1:
                s = args[0] if n.unary == "identity" else f"{n.unary}({args[0]})"
            else:
                if reg.binary(n.binary).commutative:
                    args.sort()
                s = f"{n.binary}({', '.join(args)})"
            memo[nid] = s
            return s

        self.topological_order()  # raises on an active cycle
        mom = self.momentum + (f"/{self.nesterov}" if self.momentum == "nesterov" else "")
        return f"{mom}|flip={int(self.flip)}|{node_expr(ROOT)}"

    def canonical_hash(self, reg: Registry | None = None) -> str:
        return hashlib.sha256(self.canonical_expression(reg).encode()).hexdigest()[:16]

    def default(self, name: str, fallback: float) -> float:
        """The genome's own default hyperparameter ``name`` (``meta.defaults``), else ``fallback``."""
        meta = self.meta if isinstance(self.meta, dict) else {}
        defaults = meta.get("defaults", {}) if isinstance(meta.get("defaults"), dict) else {}
        return float(defaults.get(name, fallback))

    @property
    def default_lr(self) -> float:
        """The learning rate to use when the caller gives none: the genome's own default, else
        :data:`nosplug.config.FALLBACK_LR`."""
        from nosplug.config.defaults import FALLBACK_LR

        return self.default("lr", FALLBACK_LR)

    def formula(self, reg: Registry | None = None, latex: bool = False) -> str:
        from nosplug.genome.render import render

        return render(self, reg or default_registry(), latex=latex)

    def latex(self, reg: Registry | None = None) -> str:
        return self.formula(reg, latex=True)

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "flip": self.flip,
            "nodes": [n.to_dict() for n in self.nodes],
        }
        if self.meta:
            d["meta"] = self.meta
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Any, reg: Registry | None = None) -> Genome:
        if not isinstance(d, dict):
            raise GenomeError(f"a genome must be a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise GenomeError(f"not a nosplug genome: 'format' must be {FORMAT!r}, got {d.get('format')!r}")
        if d.get("version") != FORMAT_VERSION:
            raise GenomeError(
                f"unsupported genome format version {d.get('version')!r} (this nosplug reads 1)"
            )
        allowed = {"format", "version", "momentum", "nesterov", "flip", "nodes", "meta"}
        extra = set(d) - allowed
        if extra:
            raise GenomeError(f"unknown genome key(s): {', '.join(sorted(extra))}")
        nodes_raw = d.get("nodes")
        if not isinstance(nodes_raw, list) or not nodes_raw:
            raise GenomeError("'nodes' must be a non-empty list")
        reg = reg or default_registry()
        nodes = []
        for k, nd in enumerate(nodes_raw):
            where = f"node #{k}" if not (isinstance(nd, dict) and "id" in nd) else f"node {nd['id']!r}"
            if not isinstance(nd, dict):
                raise GenomeError(f"{where}: expected an object")
            require_keys(nd, {"id", "arity", "unary", "binary", "inputs"}, where)
            if not isinstance(nd["inputs"], list):
                raise GenomeError(f"{where}: 'inputs' must be a list")
            edges = []
            for i, raw in enumerate(nd["inputs"]):
                ew = f"{where} input {i}"
                if isinstance(raw, str):
                    edges.append(Edge(raw))
                elif isinstance(raw, dict):
                    require_keys(raw, {"src"}, ew, optional={"decay"})
                    decay = raw.get("decay")
                    edges.append(
                        Edge(
                            nonempty_str(raw["src"], ew, "src"),
                            DecayGraph.from_dict(decay, f"{ew} decay") if decay is not None else None,
                        )
                    )
                else:
                    raise GenomeError(f"{ew}: expected a name or an object with 'src'")
            nodes.append(
                Node(
                    nonempty_str(nd["id"], where, "id"),
                    arity_of(nd["arity"], where),
                    nonempty_str(nd["unary"], where, "unary"),
                    nonempty_str(nd["binary"], where, "binary"),
                    edges,
                )
            )
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise GenomeError("'meta' must be an object")
        g = cls(nodes, d.get("momentum", "none"), d.get("nesterov", "standard"), d.get("flip", False), meta)
        g.validate(reg)
        # store family operand references in their normal form so equal genomes serialise equally
        ids = set(g.node_ids)
        for _, _, e in g.edges():
            if e.src not in ids:
                e.src = reg.canonical_operand_ref(e.src)
        return g

    @classmethod
    def from_json(cls, text: str, reg: Registry | None = None) -> Genome:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GenomeError(f"genome JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data, reg)
