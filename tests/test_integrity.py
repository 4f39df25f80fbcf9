"""The shifted-sphere integrity check (spec §6) and the decay check (spec §3.4)."""

from __future__ import annotations

import json

import pytest

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
