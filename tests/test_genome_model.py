"""Genome JSON, validation messages, active sets, canonical hashes and formulas."""

from __future__ import annotations

import json

import pytest

import nosplug
from nosplug.genome import Genome, GenomeError


def _adam_dict() -> dict:
    return json.loads(nosplug.zoo.load("adam-paper").to_json())


def test_json_round_trip_keeps_hash_and_formula() -> None:
    for name in nosplug.zoo.names():
        g = nosplug.zoo.load(name)
        back = Genome.from_json(g.to_json())
        assert back.canonical_hash() == g.canonical_hash()
        assert back.formula() == g.formula()
        assert back.meta == g.meta


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["nodes"][0].update(unary="warp"), "node 'h0': unknown unary op 'warp'"),
        (lambda d: d["nodes"][1].update(binary="xor"), "node 'out': unknown binary op 'xor'"),
        (lambda d: d["nodes"][1].update(arity=1), "node 'out': arity 1 but 2 input"),
        (lambda d: d["nodes"][1].update(arity=3), "arity must be 1 or 2"),
        (lambda d: d["nodes"][1]["inputs"].__setitem__(1, "h7"), "node 'out' input 1: 'h7' is neither"),
        (lambda d: d["nodes"][0]["inputs"].__setitem__(0, "out"), "cycle: out -> h0 -> out"),
        (lambda d: d["nodes"][0]["inputs"].__setitem__(0, "h0"), "node 'h0' input 0: the node reads itself"),
        (lambda d: d.update(momentum="heavy"), "momentum 'heavy' is not one of"),
        (lambda d: d.update(version=9), "unsupported genome format version 9"),
        (lambda d: d.update(format="other"), "not a nosplug genome"),
        (lambda d: d.update(extra=1), "unknown genome key"),
        (lambda d: d["nodes"].pop(), "no output node"),
        (
            lambda d: d["nodes"][1]["inputs"].__setitem__(
                0,
                {
                    "src": "v_hat",
                    "decay": {
                        "hidden": {"arity": 1, "unary": "tanh", "binary": "add", "inputs": ["a99"]},
                        "out": {"arity": 1, "unary": "tanh", "binary": "add", "inputs": ["a1"]},
                    },
                },
            ),
            "node 'out' input 0 decay hidden node: input 'a99' is not a registered schedule",
        ),
    ],
)
def test_validation_names_the_node_and_the_problem(mutate, message) -> None:
    d = _adam_dict()
    mutate(d)
    with pytest.raises(GenomeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Genome.from_dict(d)


def test_bad_json_text_is_a_clear_error() -> None:
    with pytest.raises(GenomeError, match="not valid JSON"):
        Genome.from_json("{nope")


def test_inactive_nodes_do_not_change_the_hash_and_may_loop() -> None:
    g = nosplug.zoo.load("adam-paper")
    d = _adam_dict()
    d["nodes"].insert(1, {"id": "h1", "arity": 2, "unary": "exp", "binary": "mul", "inputs": ["h2", "g"]})
    d["nodes"].insert(2, {"id": "h2", "arity": 1, "unary": "exp", "binary": "mul", "inputs": ["h1"]})
    g2 = Genome.from_dict(d)  # an inactive cycle is allowed (mutation can make one)
    assert g2.active_ids() == ["out", "h0"]
    assert g2.canonical_hash() == g.canonical_hash()


def test_commutative_inputs_and_identity_nodes_collide() -> None:
    a = nosplug.zoo.load("addsign")
    d = json.loads(a.to_json())
    d["nodes"][2]["inputs"].reverse()  # mul(h1, g) -> mul(g, h1)
    d["nodes"].insert(0, {"id": "h9", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["g"]})
    d["nodes"][3]["inputs"][0] = "h9"
    b = Genome.from_dict(d)
    assert b.canonical_hash() == a.canonical_hash()
    assert nosplug.zoo.load("powersign").canonical_hash() != a.canonical_hash()
    # non-commutative swaps do change it
    c = json.loads(nosplug.zoo.load("adam-paper").to_json())
    c["nodes"][1]["inputs"].reverse()
    assert Genome.from_dict(c).canonical_hash() != nosplug.zoo.load("adam-paper").canonical_hash()


def test_formula_and_latex() -> None:
    assert nosplug.zoo.load("adam").formula() == "m_0.9 / (sqrt(|v_0.999|) + 1e-8)"
    assert nosplug.zoo.load("opt10").formula() == "Nesterov ~ bessel_i1e(bessel_i1e([a13 * a2](g)))"
    assert nosplug.zoo.load("adam").latex().startswith("\\frac{\\hat{m}_{0.9}}")


def test_every_paper_name_is_in_the_zoo() -> None:
    names = set(nosplug.zoo.names())
    expected = {"adam", "rmsprop", "sgd", "momentum", "nesterov", "addsign", "powersign", "qhm", "adam-paper"}
    expected |= (
        {f"opt{i}" for i in range(1, 11)} | {f"a{i}" for i in range(1, 6)} | {f"lr{i}" for i in range(1, 10)}
    )
    assert expected <= names


def test_zoo_load_errors(tmp_path) -> None:
    with pytest.raises(nosplug.errors.UserError, match="neither a zoo genome"):
        nosplug.zoo.load("adamw-from-the-future")
    with pytest.raises(nosplug.errors.UserError, match="does not exist"):
        nosplug.zoo.load(str(tmp_path / "missing.json"))
    p = tmp_path / "g.json"
    p.write_text(nosplug.zoo.load("qhm").to_json())
    assert nosplug.zoo.load(str(p)).canonical_hash() == nosplug.zoo.load("qhm").canonical_hash()
