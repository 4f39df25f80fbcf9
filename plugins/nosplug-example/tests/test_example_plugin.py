"""Tests of the example plugin, run against an installed nosplug."""

from __future__ import annotations

import torch

import nosplug
from nosplug.genome.decay import evaluate_decay
from nosplug.genome.graph import DecayGraph, DecayNode
from nosplug.genome.model import Genome
from nosplug.tasks.surrogates import build_surrogate

GENOME = {
    "format": "nosplug-genome",
    "version": 1,
    "nodes": [
        {"id": "h0", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["g_rms"]},
        {"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["h0"]},
    ],
}


def test_plugin_is_registered() -> None:
    infos = {p.name: p for p in nosplug.plugins.plugin_infos()}
    assert infos["example"].version == "0.2.0"
    reg = nosplug.registry()
    assert reg.provenance[("operands", "g_rms")] == "example"


def test_g_rms_is_rmsprop_with_adam_bias_correction() -> None:
    torch.manual_seed(0)
    w = torch.randn(5, requires_grad=True)
    opt = nosplug.GraphOptimizer([w], Genome.from_dict(GENOME), lr=0.01)
    v = torch.zeros(5)
    ref = w.detach().clone()
    for step in range(1, 6):
        g = torch.randn(5)
        w.grad = g.clone()
        opt.step()
        v = 0.999 * v + 0.001 * g * g
        ref -= 0.01 * g / torch.sqrt(v / (1 - 0.999**step) + 1e-8)
    assert torch.allclose(w.detach(), ref, rtol=1e-5, atol=1e-6)


def test_step3_schedule_and_surrogate() -> None:
    d = DecayGraph(DecayNode(1, "identity", "add", ["a1"]), DecayNode(1, "identity", "add", ["step3"]))
    vals = evaluate_decay(d, torch.tensor([0.0, 40.0, 70.0]), 90)
    assert torch.allclose(vals, torch.tensor([1.0, 0.1, 0.01], dtype=vals.dtype))
    assert build_surrogate("tiny_mlp", (1, 8, 8), 10)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
