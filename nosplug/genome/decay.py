"""Decay graphs: evaluation, the [0, 1] check, random creation and mutation (spec §3).

A decay graph is a tiny two-node program over normalised-time schedules (``a1`` .. ``a14``).
Its value d(t) multiplies what travels along one edge of the update graph, so on a linear
path it acts as a learned learning-rate schedule and inside a non-linear op as an internal
decay. Everything here is pure: random choices come from a caller-owned ``random.Random``.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from nosplug.genome.graph import DecayGraph, DecayNode
from nosplug.genome.ids import HIDDEN
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry

#: Steps of the decay integrity check and of the phenotype (spec §3.4).
CHECK_STEPS = 100
#: Mutants whose phenotype moved less than this (L2) count as unchanged (spec §3.4).
MIN_PHENOTYPE_CHANGE = 1e-4
#: How often a mutation is redrawn before giving up (the reference retries without a cap).
MAX_TRIES = 200


def evaluate_decay(decay: DecayGraph, t: Tensor, total_steps: int, reg: Registry | None = None) -> Tensor:
    """d(t) for a float tensor of 0-based steps ``t`` of a run of ``total_steps`` steps."""
    reg = reg or default_registry()
    cache: dict[str, Tensor] = {}

    def source(name: str) -> Tensor:
        if name not in cache:
            cache[name] = node(decay.hidden) if name == HIDDEN else reg.schedule(name).fn(t, total_steps)
        return cache[name]

    def node(n: DecayNode) -> Tensor:
        args = [source(s) for s in n.inputs]
        if n.arity == 1:
            return reg.decay_unary(n.unary).fn(args[0])
        return reg.decay_binary(n.binary).fn(args[0], args[1])

    return node(decay.out)


def phenotype(decay: DecayGraph, reg: Registry | None = None, steps: int = CHECK_STEPS) -> Tensor:
    """The decay's values at t = 0 .. steps-1 of a ``steps``-step run: its behavioural identity."""
    t = torch.arange(steps, dtype=torch.float64)
    return evaluate_decay(decay, t, steps, reg)


def decay_check(decay: DecayGraph, reg: Registry | None = None, T: int = CHECK_STEPS) -> bool:
    """True when every value of the T-step phenotype is finite and inside [0, 1] (spec §3.4)."""
    v = phenotype(decay, reg, T)
    return bool(torch.isfinite(v).all() and (v >= 0).all() and (v <= 1).all())


# ----------------------------------------------------------------------------- random creation
def random_decay_graph(
    rng: random.Random,
    schedules: list[str],
    unary_ops: list[str],
    binary_ops: list[str],
    reg: Registry | None = None,
    p_unary: float = 0.8,
    p_hidden: float = 0.2,
) -> DecayGraph:
    """Draw decay graphs as spec §3.3 describes until one passes the [0, 1] check."""
    if len(schedules) < 2:
        raise ValueError("a decay graph needs at least two schedules to choose from")
    for _ in range(MAX_TRIES):
        hidden = _random_node(rng, schedules, unary_ops, binary_ops, p_unary, with_hidden=False, p_hidden=0)
        out = _random_node(
            rng, schedules, unary_ops, binary_ops, p_unary, with_hidden=True, p_hidden=p_hidden
        )
        graph = DecayGraph(hidden, out)
        if decay_check(graph, reg):
            return graph
    raise RuntimeError(f"no valid decay graph in {MAX_TRIES} draws; the decay op set cannot stay in [0, 1]")


def _random_node(
    rng: random.Random,
    schedules: list[str],
    unary_ops: list[str],
    binary_ops: list[str],
    p_unary: float,
    *,
    with_hidden: bool,
    p_hidden: float,
) -> DecayNode:
    unary, binary = rng.choice(unary_ops), rng.choice(binary_ops)
    choices = [*schedules, HIDDEN] if with_hidden else list(schedules)
    if rng.random() < p_unary:
        src = HIDDEN if with_hidden and rng.random() < p_hidden else rng.choice(choices)
        return DecayNode(1, unary, binary, [src])
    if with_hidden and rng.random() < p_hidden:
        pair = [HIDDEN, rng.choice(schedules)]
        if rng.random() < 0.5:
            pair.reverse()
        return DecayNode(2, unary, binary, pair)
    first = rng.choice(choices)
    second = rng.choice([s for s in schedules if s != first])
    return DecayNode(2, unary, binary, [first, second])


# ----------------------------------------------------------------------------- mutation
def mutate_decay_graph(
    decay: DecayGraph,
    rng: random.Random,
    schedules: list[str],
    unary_ops: list[str],
    binary_ops: list[str],
    reg: Registry | None = None,
    *,
    checked: bool = True,
) -> DecayGraph:
    """A mutant of ``decay`` by the operators of spec §3.4; the input is left untouched.

    With ``checked`` (the default) the mutation is redrawn until the mutant stays inside [0, 1],
    differs from the parent as a string, and moved its phenotype by more than 1e-4. The reference
    search ignores that verdict (spec §9.3); ``checked=False`` reproduces it, returning the first
    mutant as is.
    """
    reg = reg or default_registry()
    parent_expr = decay.canonical(reg)
    parent_pheno = phenotype(decay, reg) if checked else None
    for _ in range(MAX_TRIES):
        child = _mutate_once(decay.copy(), rng, schedules, unary_ops, binary_ops)
        if not checked:
            return child
        if child.canonical(reg) == parent_expr or not decay_check(child, reg):
            continue
        assert parent_pheno is not None
        if float(torch.linalg.vector_norm(phenotype(child, reg) - parent_pheno)) <= MIN_PHENOTYPE_CHANGE:
            continue
        return child
    return decay.copy()


def _mutate_once(
    g: DecayGraph, rng: random.Random, schedules: list[str], unary_ops: list[str], binary_ops: list[str]
) -> DecayGraph:
    is_root = not g.hidden_active() or rng.random() < 0.5
    node, own = (g.out, True) if is_root else (g.hidden, False)
    choices = [*schedules, HIDDEN] if own else list(schedules)
    r = rng.random()
    if r >= 0.40:  # operation change, same arity
        if node.arity == 1:
            node.unary = _other(rng, unary_ops, node.unary)
        else:
            node.binary = _other(rng, binary_ops, node.binary)
    elif r >= 0.15:  # connection change (with the argument swap inside it)
        if node.arity == 2 and rng.random() < 0.2:
            node.inputs.reverse()
        else:
            k = 0 if node.arity == 1 else rng.randrange(2)
            taken = set(node.inputs)
            node.inputs[k] = rng.choice([c for c in choices if c not in taken] or choices)
    elif node.arity == 1:  # unary -> binary: a new argument as 2nd or 1st
        new = rng.choice([c for c in choices if c not in node.inputs] or choices)
        node.inputs = [node.inputs[0], new] if rng.random() < 0.5 else [new, node.inputs[0]]
        node.arity = 2
    else:  # binary -> unary: drop the 2nd or the 1st argument
        node.inputs = [node.inputs[0]] if rng.random() < 0.5 else [node.inputs[1]]
        node.arity = 1
    return g


def _other(rng: random.Random, options: list[str], current: str) -> str:
    rest = [o for o in options if o != current]
    return rng.choice(rest) if rest else current
