"""The shifted-sphere integrity check (spec §6) and the decay check (spec §3.4)."""

from __future__ import annotations

import json

import pytest
from genome_helpers import random_genomes

import nosplug
from nosplug.evaluation.integrity import IntegrityConfig, integrity_check, integrity_check_batch
from nosplug.genome import Genome


def _genome(nodes: list[dict], momentum: str = "none") -> Genome:
    return Genome.from_dict({"format": "nosplug-genome", "version": 1, "momentum": momentum, "nodes": nodes})


def _unary(op: str, src: str, nid: str = "out") -> dict:
    return {"id": nid, "arity": 1, "unary": op, "binary": "add", "inputs": [src]}


def test_initial_value_is_the_papers() -> None:
    assert IntegrityConfig().initial_value == pytest.approx(7.1525)


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adam-paper", *[f"opt{i}" for i in range(1, 11)]])
def test_known_good_optimizers_pass(name: str) -> None:
    res = integrity_check(nosplug.zoo.load(name))
    assert res.passed, res.reason
    assert res.lr in IntegrityConfig().learning_rates


@pytest.mark.parametrize(
    ("nodes", "reason"),
    [
        ([_unary("identity", "g", "h0"), _unary("min0", "h0")], None),  # ignores half the gradients
        ([_unary("identity", "one", "h0"), _unary("identity", "h0")], "below"),  # a constant update
        ([_unary("identity", "g", "h0"), _unary("neg", "h0"), _unary("identity", "h0")], None),
        ([_unary("exp", "g3", "h0"), _unary("exp", "h0")], None),  # explodes
    ],
)
def test_degenerate_genomes_fail_with_a_reason(nodes, reason) -> None:
    # the third case is a plain sign flip of SGD: it must pass *with* flip, and fail without it
    g = _genome([n for n in nodes if n["id"] != "out"][:1] + [n for n in nodes if n["id"] == "out"][:1])
    res = integrity_check(g)
    if g.root.unary == "neg":
        assert res.passed and res.flip
        assert not integrity_check(g, IntegrityConfig(try_flip=False)).passed
        return
    assert not res.passed
    assert res.reason
    if reason:
        assert reason in res.reason


def test_zero_update_fails() -> None:
    g = _genome([_unary("min0", "sign_g", "h0"), _unary("relu", "h0")])  # relu(min(sign g, 0)) == 0
    res = integrity_check(g)
    assert not res.passed and "best 7.15" in res.reason


def test_nan_fails() -> None:
    g = _genome(
        [
            _unary("ln_abs", "w_1e-6", "h0"),
            {"id": "out", "arity": 2, "unary": "identity", "binary": "pow_abs", "inputs": ["h0", "two"]},
        ]
    )
    g2 = _genome(
        [
            _unary("recip", "g", "h0"),
            {"id": "out", "arity": 2, "unary": "identity", "binary": "sub", "inputs": ["h0", "h0"]},
        ]
    )
    for genome in (g, g2):
        res = integrity_check(genome)
        assert not res.passed


def test_decay_outside_unit_interval_fails() -> None:
    d = json.loads(nosplug.zoo.load("opt7").to_json())
    # sub(a1, a2) goes from 1 down to -1: outside [0, 1]
    d["nodes"][1]["inputs"][0]["decay"] = {
        "hidden": {"arity": 1, "unary": "identity", "binary": "add", "inputs": ["a1"]},
        "out": {"arity": 2, "unary": "identity", "binary": "sub", "inputs": ["a1", "a2"]},
    }
    res = integrity_check(Genome.from_dict(d))
    assert not res.passed and "leaves [0, 1]" in res.reason


def test_the_problem_is_configuration() -> None:
    cfg = IntegrityConfig(start=(3.0, 3.0), shift=(0.0, 0.0), threshold=1.0, learning_rates=(0.1,))
    res = integrity_check(nosplug.zoo.load("sgd"), cfg)
    assert res.passed and res.lr == 0.1
    assert not integrity_check(
        nosplug.zoo.load("sgd"), IntegrityConfig(threshold=-1.0)
    ).passed  # f >= 0 always


def test_batch_checks_duplicates_once() -> None:
    gs = [nosplug.zoo.load("adam"), nosplug.zoo.load("adam"), nosplug.zoo.load("sgd")]
    res = integrity_check_batch(gs)
    assert [r.passed for r in res] == [True, True, True]
    assert res[0] is res[1]


# ----------------------------------------------------------------------------- the batched check
def _same_finals(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(u == v or (u != u and v != v) for u, v in zip(a, b))


def test_the_batched_check_decides_exactly_as_the_single_check() -> None:
    """600 random genomes of the paper's space (decays, state-holding ops, dropout, clipping,
    every momentum form): the same pass/flip/lr decisions, reasons and final values, bit for bit."""
    genomes = random_genomes(600, 11, flip_probability=0.3)
    batch = integrity_check_batch(genomes)
    for k, (g, b) in enumerate(zip(genomes, batch)):
        s = integrity_check(g)
        assert (s.passed, s.lr, s.flip, s.reason) == (b.passed, b.lr, b.flip, b.reason), (
            f"#{k}: {g.formula()}"
        )
        assert _same_finals(s.finals, b.finals), f"#{k}: {g.formula()}"
    assert 150 < sum(r.passed for r in batch) < 450  # the sample really has both outcomes
    assert sum(r.flip for r in batch) > 10


def test_a_genomes_result_does_not_depend_on_its_batch() -> None:
    genomes = random_genomes(120, 12, flip_probability=0.3)
    whole = integrity_check_batch(genomes)
    parts = integrity_check_batch(genomes[::-1], batch_size=7)[::-1]
    for a, b in zip(whole, parts):
        assert _same_finals(a.finals, b.finals) and a.passed == b.passed


def test_the_batched_check_follows_the_configuration() -> None:
    cfg = IntegrityConfig(
        start=(2.0, -1.0, 0.5), shift=(0.0, 0.5, 1.0), iterations=20, warmup_steps=3,
        learning_rates=(0.3, 0.03), threshold=1.0, try_flip=False,
    )  # fmt: skip
    genomes = random_genomes(150, 13, flip_probability=0.3)
    for g, b in zip(genomes, integrity_check_batch(genomes, cfg, seed=3)):
        s = integrity_check(g, cfg, seed=3)
        assert (s.passed, s.lr, s.flip, s.reason) == (b.passed, b.lr, b.flip, b.reason)
        assert _same_finals(s.finals, b.finals)


def test_genomes_the_stacked_pass_cannot_replay_are_checked_one_at_a_time(monkeypatch) -> None:
    from nosplug.evaluation import integrity_batch

    genomes = random_genomes(40, 14, flip_probability=0.3)
    expected = [integrity_check(g) for g in genomes]
    monkeypatch.setattr(integrity_batch, "stackable", lambda program: False)
    assert [r.to_dict() for r in integrity_check_batch(genomes)] == [r.to_dict() for r in expected]

    def broken(*args, **kwargs):
        raise RuntimeError("a plugin op failed")

    monkeypatch.setattr(integrity_batch, "stackable", lambda program: True)
    monkeypatch.setattr(integrity_batch, "sphere_finals", broken)
    assert [r.to_dict() for r in integrity_check_batch(genomes)] == [r.to_dict() for r in expected]
