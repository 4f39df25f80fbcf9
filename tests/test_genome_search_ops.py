"""Random genomes, the six mutations and decay graphs: properties and hand-checked cases."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nosplug
from nosplug.errors import UserError
from nosplug.genome import DecayGraph, DecayNode, Genome
from nosplug.genome.decay import (
    decay_check,
    evaluate_decay,
    mutate_decay_graph,
    phenotype,
    random_decay_graph,
)
from nosplug.genome.mutation import (
    argument_swap,
    arity_change,
    connection_change,
    decay_change,
    momentum_change,
    mutate,
    operation_change,
)
from nosplug.genome.random import random_genome
from nosplug.genome.space import SearchSpace
from nosplug.primitives.registry import registry

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def space() -> SearchSpace:
    return SearchSpace.paper()


def _round_trip_hash(g: Genome) -> str:
    return Genome.from_json(g.to_json()).canonical_hash()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_random_genomes_round_trip_to_the_same_hash(seed: int) -> None:
    g = random_genome(SearchSpace.paper(), random.Random(seed))
    g.validate()
    assert _round_trip_hash(g) == g.canonical_hash()
    assert g.formula()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 12))
def test_chains_of_mutations_stay_valid_and_round_trip(seed: int, steps: int) -> None:
    space = SearchSpace.paper()
    rng = random.Random(seed)
    g = random_genome(space, rng) if seed % 2 else nosplug.zoo.load(rng.choice(["adam", "opt6", "sgd", "a3"]))
    for _ in range(steps):
        g = mutate(g, space, rng)
        g.validate()  # raises on any invalid child
        assert _round_trip_hash(g) == g.canonical_hash()
        for _n, _i, e in g.edges():
            if e.decay is not None:
                assert decay_check(e.decay), "checked decay mutation produced a decay outside [0, 1]"


def test_random_genome_is_reproducible_from_the_seed(space: SearchSpace) -> None:
    a = [random_genome(space, random.Random(7)).to_json() for _ in range(2)]
    assert a[0] == a[1]
    assert random_genome(space, random.Random(8)).to_json() != a[0]


def test_random_genomes_follow_the_paper_distribution(space: SearchSpace) -> None:
    """Root arity 75% binary, hidden 25% binary, ~15% decayed edges, all three momentum types."""
    rng = random.Random(0)
    gs = [random_genome(space, rng) for _ in range(800)]
    root_binary = sum(g.root.arity == 2 for g in gs) / len(gs)
    hidden_binary = sum(n.arity == 2 for g in gs for n in g.nodes if n.id != "out") / (5 * len(gs))
    hidden_edges = [e for g in gs for n in g.nodes if n.id != "out" for e in n.inputs]
    decayed = sum(e.decay is not None for e in hidden_edges) / len(hidden_edges)
    assert 0.70 < root_binary < 0.80
    assert 0.21 < hidden_binary < 0.29
    assert 0.12 < decayed < 0.18
    assert {g.momentum for g in gs} == {"none", "momentum", "nesterov"}
    # the root always reads at least one hidden node
    assert all(any(e.src.startswith("h") for e in g.root.inputs) for g in gs)


def test_accept_callback_filters_draws(space: SearchSpace) -> None:
    g = random_genome(space, random.Random(1), accept=lambda g: g.momentum == "nesterov")
    assert g.momentum == "nesterov"


def _two_node(root_op: str = "add") -> Genome:
    return Genome.from_dict(
        {
            "format": "nosplug-genome",
            "version": 1,
            "nodes": [
                {"id": "h0", "arity": 1, "unary": "tanh", "binary": "mul", "inputs": ["g"]},
                {"id": "h1", "arity": 1, "unary": "identity", "binary": "mul", "inputs": ["v_hat"]},
                {"id": "out", "arity": 2, "unary": "exp", "binary": root_op, "inputs": ["h0", "one"]},
            ],
        }
    )


def test_operation_change_keeps_arity_and_changes_the_op(space: SearchSpace) -> None:
    reg = registry()
    g = _two_node()
    for seed in range(30):
        c = operation_change(g, "out", random.Random(seed), space, reg)
        assert c.root.arity == 2 and c.root.binary != "add" and c.root.binary in space.binary_ops
        u = operation_change(g, "h0", random.Random(seed), space, reg).node("h0")
        assert u.unary != "tanh" and u.unary != "max_value"
        ident = operation_change(g, "h1", random.Random(seed), space, reg).node("h1")
        assert ident.unary != "identity"
    assert g.root.binary == "add", "operators must not change their input"


def test_argument_swap_and_arity_change(space: SearchSpace) -> None:
    reg = registry()
    g = _two_node()
    s = argument_swap(g, "out", random.Random(0), space, reg)
    assert [e.src for e in s.root.inputs] == ["one", "h0"]
    assert argument_swap(g, "h0", random.Random(0), space, reg) is None
    for seed in range(20):
        u = arity_change(g, "out", random.Random(seed), space, reg)
        assert u.root.arity == 1 and u.root.unary == "exp"
        assert u.root.inputs[0].src == "h0", "the root keeps its hidden-node argument"
        b = arity_change(g, "h0", random.Random(seed), space, reg).node("h0")
        assert b.arity == 2 and b.binary == "mul" and "g" in [e.src for e in b.inputs]


def test_connection_change_keeps_a_hidden_argument_on_the_root(space: SearchSpace) -> None:
    reg = registry()
    g = _two_node()
    for seed in range(50):
        c = connection_change(g, "out", random.Random(seed), space, reg)
        assert c is not None
        assert any(e.src.startswith("h") for e in c.root.inputs)
        assert [e.src for e in c.root.inputs] != ["h0", "one"]


def test_momentum_and_decay_change(space: SearchSpace) -> None:
    reg = registry()
    g = _two_node()
    assert momentum_change(g, "out", random.Random(0), space, reg).momentum in ("momentum", "nesterov")
    only = space.with_overrides({"momentum_types": ["none"]})
    assert momentum_change(g, "out", random.Random(0), only, reg) is None
    d = decay_change(g, "h0", random.Random(0), space, reg)
    assert d.node("h0").inputs[0].decay is not None and decay_check(d.node("h0").inputs[0].decay)
    # an existing decay is deleted or mutated, never left as it was
    outcomes = set()
    for seed in range(20):
        e = decay_change(d, "h0", random.Random(seed), space, reg).node("h0").inputs[0]
        outcomes.add("deleted" if e.decay is None else "mutated")
        if e.decay is not None:
            assert e.decay.canonical() != d.node("h0").inputs[0].decay.canonical()
    assert outcomes == {"deleted", "mutated"}


def test_decay_only_space_mutates_only_decays(space: SearchSpace) -> None:
    adam = nosplug.zoo.load("adam")
    only = space.with_overrides({"mutations": ["decay"]})
    rng = random.Random(3)
    g = adam
    for _ in range(10):
        g = mutate(g, only, rng)
        assert g.meta["mutation"] == "decay"
        stripped = g.copy()
        for _n, _i, e in stripped.edges():
            e.decay = None
        assert stripped.canonical_hash() == adam.canonical_hash()


def test_space_settings_are_validated(space: SearchSpace) -> None:
    with pytest.raises(UserError, match=r"space\.operandz: unknown setting"):
        space.with_overrides({"operandz": ["g"]})
    with pytest.raises(UserError, match=r"space\.operands: unknown operand 'nope'"):
        space.with_overrides({"operands": ["g", "nope"]})
    with pytest.raises(UserError, match=r"space\.p_decay: a probability"):
        space.with_overrides({"p_decay": 1.5})
    with pytest.raises(UserError, match=r"space\.hidden_nodes: expected an integer"):
        space.with_overrides({"hidden_nodes": "five"})
    s = space.with_overrides({"operands": ["g", "ema(power=2, beta=0.99)"], "hidden_nodes": 3})
    g = random_genome(s, random.Random(0))
    assert len(g.nodes) == 4
    assert SearchSpace.from_dict(s.to_dict()) == s


# ----------------------------------------------------------------------------- decay graphs
def _decay(out: DecayNode, hidden: DecayNode | None = None) -> DecayGraph:
    return DecayGraph(hidden or DecayNode(1, "identity", "add", ["a1"]), out)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("a1", [1, 0.75, 0.5, 0.25]),
        ("a3", [1, 0.854, 0.5, 0.146]),
        ("a5", [1, 0.5, 0, 0.5]),
        ("a7", [1, 0.5, 1, 0.5]),
        ("a10", [0, 0.5, 0, 0.5]),
        ("a11", [1, 0.316, 0.1, 0.032]),
        ("a13", [0.95, 0.934, 0.905, 0.826]),
        ("a14", [0.0, 0.016, 0.045, 0.124]),
    ],
)
def test_schedules_match_the_spec_table(name: str, values: list[float]) -> None:
    T = 400
    t = torch.tensor([0.0, 100.0, 200.0, 300.0], dtype=torch.float64)
    got = evaluate_decay(_decay(DecayNode(1, "identity", "add", [name])), t, T)
    assert got.tolist() == pytest.approx(values, abs=2e-3)


def test_decay_graph_composes_hidden_and_output() -> None:
    d = _decay(DecayNode(2, "identity", "min", ["hidden", "a12"]), DecayNode(1, "square", "add", ["a1"]))
    t = torch.arange(10, dtype=torch.float64)
    expect = torch.minimum((1 - t / 10) ** 2, 1 - 0.01 ** (t / 10))
    assert torch.allclose(evaluate_decay(d, t, 10), expect)


def test_decay_check_rejects_values_outside_unit_interval() -> None:
    assert decay_check(_decay(DecayNode(1, "sigmoid", "add", ["a2"])))
    assert not decay_check(_decay(DecayNode(2, "identity", "add", ["a1", "a3"])))  # up to 2
    assert not decay_check(_decay(DecayNode(2, "identity", "sub", ["a2", "a1"])))  # down to -1


def test_random_and_mutated_decays_pass_the_check_and_change_phenotype() -> None:
    reg = registry()
    sched, un, bi = reg.names("schedules"), reg.names("decay_unary_ops"), reg.names("decay_binary_ops")
    rng = random.Random(0)
    for _ in range(40):
        d = random_decay_graph(rng, sched, un, bi)
        assert decay_check(d)
        m = mutate_decay_graph(d, rng, sched, un, bi)
        assert decay_check(m)
        assert float(torch.linalg.vector_norm(phenotype(m) - phenotype(d))) > 1e-4


def test_unchecked_decay_mutation_reproduces_the_reference_quirk() -> None:
    """With checked=False the first mutant is returned even when it leaves [0, 1] (spec §9.3)."""
    reg = registry()
    sched, un, bi = reg.names("schedules"), reg.names("decay_unary_ops"), reg.names("decay_binary_ops")
    rng = random.Random(0)
    bad = 0
    for _ in range(300):
        d = random_decay_graph(rng, sched, un, bi)
        bad += not decay_check(mutate_decay_graph(d, rng, sched, un, bi, checked=False))
    assert bad > 0
