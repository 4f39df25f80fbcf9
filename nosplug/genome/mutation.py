"""The six mutations of spec §9.2 as pure functions: genome in, new genome (or None) out.

Each operator takes the node to change and a caller-owned ``random.Random`` and never touches
its input. An operator returns None when it does not apply (for example a momentum change in a
space with one momentum type). :func:`mutate` picks an active node and an operator with the
paper's probabilities and redraws until the child is a valid genome.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from nosplug.genome.decay import mutate_decay_graph
from nosplug.genome.graph import Edge, GenomeError
from nosplug.genome.ids import ROOT
from nosplug.genome.model import Genome
from nosplug.genome.random import new_decay
from nosplug.genome.space import MUTATIONS, SearchSpace
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry

Operator = Callable[[Genome, str, random.Random, SearchSpace, Registry], "Genome | None"]
#: Probability that a connection change on a binary node is an argument swap (spec §9.2).
P_SWAP = 0.2
MAX_TRIES = 1000


def operation_change(
    g: Genome, node_id: str, rng: random.Random, space: SearchSpace, reg: Registry
) -> Genome:
    """(1) A different op of the same arity; unary ops may become or leave identity."""
    g = g.copy()
    n = g.node(node_id)
    if n.arity == 2:
        n.binary = _other(rng, space.binary_ops, n.binary)
    elif n.unary == "identity":
        n.unary = rng.choice(space.mutation_unary_ops)
    elif rng.random() < space.p_identity:
        n.unary = "identity"
    else:
        n.unary = _other(rng, space.mutation_unary_ops, n.unary)
    return g


def argument_swap(
    g: Genome, node_id: str, rng: random.Random, space: SearchSpace, reg: Registry
) -> Genome | None:
    """(4) Swap the two arguments of a binary node (decays travel with their edges)."""
    g = g.copy()
    n = g.node(node_id)
    if n.arity != 2:
        return None
    n.inputs.reverse()
    return g


def connection_change(
    g: Genome, node_id: str, rng: random.Random, space: SearchSpace, reg: Registry
) -> Genome | None:
    """(2) Rewire one argument to a source it does not read yet; a binary node swaps 20% of the time.

    The root keeps at least one hidden-node argument. The new source may be any operand or
    node, so the child can contain a cycle; :func:`mutate` rejects those as the reference does.
    """
    n = g.node(node_id)
    if n.arity == 2 and rng.random() < P_SWAP:
        return argument_swap(g, node_id, rng, space, reg)
    g = g.copy()
    n = g.node(node_id)
    k = 0 if n.arity == 1 else rng.randrange(2)
    must_be_hidden = node_id == ROOT and not any(
        _is_hidden(g, e.src) for i, e in enumerate(n.inputs) if i != k
    )
    candidates = _sources(g, node_id, space, exclude={e.src for e in n.inputs}, hidden_only=must_be_hidden)
    if not candidates:
        return None
    n.inputs[k] = Edge(rng.choice(candidates), n.inputs[k].decay)
    return g


def arity_change(
    g: Genome, node_id: str, rng: random.Random, space: SearchSpace, reg: Registry
) -> Genome | None:
    """(3) Unary <-> binary, reusing the op the node stored for the other arity."""
    g = g.copy()
    n = g.node(node_id)
    if n.arity == 1:
        candidates = _sources(g, node_id, space, exclude={n.inputs[0].src})
        if not candidates:
            return None
        new = Edge(
            rng.choice(candidates), new_decay(space, rng, reg) if rng.random() < space.p_decay else None
        )
        n.inputs = [n.inputs[0], new] if rng.random() < 0.5 else [new, n.inputs[0]]
        n.arity = 2
        return g
    drop = 1 if rng.random() < 0.5 else 0
    if node_id == ROOT and not _is_hidden(g, n.inputs[1 - drop].src):
        drop = 1 - drop  # the root keeps its hidden-node argument
    n.inputs = [n.inputs[1 - drop]]
    n.arity = 1
    return g


def momentum_change(
    g: Genome, node_id: str, rng: random.Random, space: SearchSpace, reg: Registry
) -> Genome | None:
    """(5) Switch to another momentum type allowed by the space."""
    others = [m for m in space.momentum_types if m != g.momentum]
    if not others:
        return None
    g = g.copy()
    g.momentum = rng.choice(others)
    return g


def decay_change(g: Genome, node_id: str, rng: random.Random, space: SearchSpace, reg: Registry) -> Genome:
    """(6) On one incoming edge: add a decay graph, or delete (50%) / mutate (50%) the one there."""
    g = g.copy()
    n = g.node(node_id)
    e = n.inputs[rng.randrange(len(n.inputs))]
    if e.decay is None:
        e.decay = new_decay(space, rng, reg)
    elif rng.random() < 0.5:
        e.decay = None
    else:
        e.decay = mutate_decay_graph(
            e.decay,
            rng,
            list(space.schedules),
            list(space.decay_unary_ops),
            list(space.decay_binary_ops),
            reg,
            checked=space.checked_decay_mutation,
        )
    return g


OPERATORS: dict[str, Operator] = {
    "operation": operation_change,
    "connection": connection_change,
    "arity": arity_change,
    "momentum": momentum_change,
    "decay": decay_change,
}


def mutate(genome: Genome, space: SearchSpace, rng: random.Random, reg: Registry | None = None) -> Genome:
    """One valid child of ``genome`` (spec §9.2); ``child.meta`` records the mutation applied."""
    reg = reg or default_registry()
    kinds = [k for k in MUTATIONS if k in space.mutations]
    weights = [MUTATIONS[k] for k in kinds]
    active = genome.active_ids()
    for _ in range(MAX_TRIES):
        node_id = rng.choice(active)
        kind = rng.choices(kinds, weights)[0]
        child = OPERATORS[kind](genome, node_id, rng, space, reg)
        if child is None:
            continue
        try:
            child.validate(reg)
        except GenomeError:
            continue  # an active cycle: the reference redraws from a fresh copy too
        child.meta = {"mutation": kind, "node": node_id}
        return child
    raise RuntimeError(
        f"no valid mutation of this genome in {MAX_TRIES} draws (mutations: {', '.join(kinds)})"
    )


def _is_hidden(g: Genome, ref: str) -> bool:
    return ref != ROOT and g.is_node(ref)


def _sources(
    g: Genome, node_id: str, space: SearchSpace, exclude: set[str], hidden_only: bool = False
) -> list[str]:
    nodes = [n.id for n in g.nodes if n.id != node_id and (n.id != ROOT or not hidden_only)]
    pool = nodes if hidden_only else [*space.operands, *nodes]
    pool = [s for s in pool if s not in exclude and (not hidden_only or s != ROOT)]
    return pool


def _other(rng: random.Random, options: tuple[str, ...], current: str) -> str:
    rest = [o for o in options if o != current]
    return rng.choice(rest) if rest else current


__all__ = [
    "OPERATORS",
    "argument_swap",
    "arity_change",
    "connection_change",
    "decay_change",
    "momentum_change",
    "mutate",
    "operation_change",
]
