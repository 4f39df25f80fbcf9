"""Random genomes drawn as the reference search draws them (spec §5), reproducibly from a seed.

The only deliberate difference: a hidden node never reads itself. The reference can draw such a
self-loop (its self-exclusion compares indices of two different ranges) and then relies on the
cycle check, which misses inactive self-loops; we never draw them, so every genome validates.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from nosplug.genome.decay import random_decay_graph
from nosplug.genome.graph import DecayGraph, Edge, GenomeError, Node
from nosplug.genome.ids import ROOT
from nosplug.genome.model import Genome
from nosplug.genome.space import SearchSpace
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry

#: Draws before :func:`random_genome` gives up (each draw is cheap; checks are not).
MAX_DRAWS = 10_000


def random_genome(
    space: SearchSpace | None = None,
    rng: random.Random | None = None,
    *,
    accept: Callable[[Genome], bool] | None = None,
    reg: Registry | None = None,
    max_draws: int = MAX_DRAWS,
) -> Genome:
    """Draw until a genome is valid (no active cycle) and ``accept`` (e.g. the integrity check) agrees."""
    reg = reg or default_registry()
    space = space or SearchSpace.paper(reg)
    rng = rng or random.Random()
    for _ in range(max_draws):
        g = draw_genome(space, rng, reg)
        try:
            g.validate(reg)
        except GenomeError:
            continue
        if accept is None or accept(g):
            return g
    raise RuntimeError(f"no acceptable random genome in {max_draws} draws")


def draw_genome(space: SearchSpace, rng: random.Random, reg: Registry | None = None) -> Genome:
    """One draw of spec §5; it may contain an active cycle (:func:`random_genome` redraws those)."""
    reg = reg or default_registry()
    hidden = [f"h{i}" for i in range(space.hidden_nodes)]
    nodes: list[Node] = []
    for nid in hidden:
        unary, binary = _ops(space, rng)
        others = [h for h in hidden if h != nid]
        first = _arg(space, rng, others)
        if rng.random() < space.p_hidden_unary:
            srcs = [first]
        else:
            second = first
            while second == first:
                second = _arg(space, rng, others)
            srcs = [first, second]
        nodes.append(
            Node(nid, len(srcs), unary, binary, [_edge(s, space, rng, reg, space.p_decay) for s in srcs])
        )
    unary, binary = _ops(space, rng)
    if rng.random() < space.p_root_unary:
        root = Node(
            ROOT, 1, unary, binary, [_edge(rng.choice(hidden), space, rng, reg, space.p_decay_unary_root)]
        )
    else:
        if rng.random() < space.p_operand_arg:
            srcs = [rng.choice(space.operands), rng.choice(hidden)]
        else:
            first = rng.choice(hidden)
            if rng.random() < space.p_operand_arg or len(hidden) == 1:
                second = rng.choice(space.operands)
            else:
                second = rng.choice([h for h in hidden if h != first])
            srcs = [first, second]
        root = Node(ROOT, 2, unary, binary, [_edge(s, space, rng, reg, space.p_decay) for s in srcs])
    nodes.append(root)
    return Genome(nodes, momentum=rng.choice(space.momentum_types), nesterov=space.nesterov)


def _ops(space: SearchSpace, rng: random.Random) -> tuple[str, str]:
    unary = "identity" if rng.random() < space.p_identity else rng.choice(space.unary_ops)
    return unary, rng.choice(space.binary_ops)


def _arg(space: SearchSpace, rng: random.Random, other_hidden: list[str]) -> str:
    if not other_hidden or rng.random() < space.p_operand_arg:
        return rng.choice(space.operands)
    return rng.choice(other_hidden)


def _edge(src: str, space: SearchSpace, rng: random.Random, reg: Registry, p: float) -> Edge:
    return Edge(src, new_decay(space, rng, reg) if rng.random() < p else None)


def new_decay(space: SearchSpace, rng: random.Random, reg: Registry | None = None) -> DecayGraph:
    """A random decay graph from the space's schedules and decay ops (spec §3.3)."""
    return random_decay_graph(
        rng, list(space.schedules), list(space.decay_unary_ops), list(space.decay_binary_ops), reg
    )
