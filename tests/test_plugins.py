"""The plugin system: built-ins through hooks, clashes, disabling, outside plugins."""

from __future__ import annotations

import types

import pytest
import torch

import nosplug
from nosplug import plugins
from nosplug.hookspecs import hookimpl
from nosplug.primitives import Operand, PluginClashError, UnaryOp
from nosplug.primitives.registry import Registry, registry


def test_builtins_register_the_papers_primitives_through_hooks() -> None:
    reg = registry()
    assert len(reg.names("operands", tag="paper")) == 20
    assert len(reg.names("unary_ops", tag="paper")) == 23
    assert len(reg.names("stateful_ops", tag="paper")) == 3
    assert len(reg.names("binary_ops", tag="paper")) == 10
    assert len(reg.names("schedules", tag="paper")) == 14
    assert len(reg.names("decay_unary_ops")) == 13
    assert len(reg.names("decay_binary_ops")) == 7
    assert reg.provenance[("operands", "v_hat")] == "nosplug.operands"
    pm = nosplug.plugin_manager()
    assert pm.get_plugin("nosplug.operations") is not None


def _fake_plugin(name: str, operand_name: str):
    mod = types.ModuleType(name)

    @hookimpl
    def nosplug_operands():
        return [Operand(operand_name, lambda ctx: ctx.g * 3.0, "3g", "3g", tags=frozenset({"mine"}))]

    mod.nosplug_operands = nosplug_operands
    return mod


def test_a_clash_names_both_plugins() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_fake_plugin("first_party", "triple_g"), name="first_party")
    pm.register(_fake_plugin("second_party", "triple_g"), name="second_party")
    with pytest.raises(PluginClashError, match="'first_party' and plugin 'second_party'"):
        Registry.from_plugin_manager(pm)


def test_clash_with_a_builtin_is_reported_too() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_fake_plugin("shadow", "v_hat"), name="shadow")
    with pytest.raises(PluginClashError, match=r"operand 'v_hat'.*'nosplug\.operands'.*'shadow'"):
        Registry.from_plugin_manager(pm)


def test_operands_cannot_take_node_names() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_fake_plugin("bad", "h3"), name="bad")
    with pytest.raises(PluginClashError, match="reserved"):
        Registry.from_plugin_manager(pm)


def test_an_outside_operand_is_usable_in_a_genome_and_the_optimizer() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_fake_plugin("mine", "triple_g"), name="mine")
    reg = Registry.from_plugin_manager(pm)
    g = nosplug.Genome.from_json(
        '{"format": "nosplug-genome", "version": 1, "nodes": ['
        '{"id": "h0", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["triple_g"]},'
        '{"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["h0"]}]}',
        reg,
    )
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.ones(3)
    nosplug.GraphOptimizer([w], g, lr=0.1, registry=reg).step()
    assert torch.allclose(w.detach(), torch.full((3,), 0.7))


def test_disable_by_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv(plugins.DISABLE_ENV, "nosplug.schedules")
    plugins.reset()
    reg = registry()
    assert reg.names("schedules") == []
    assert "nosplug.schedules" not in [i.name for i in plugins.plugin_infos()]


def test_disable_by_function_like_the_cli_flag() -> None:
    plugins.disable("nosplug.operands")
    assert registry().names("operands") == []


def test_unary_namespace_is_shared_by_scalar_and_stateful_ops() -> None:
    pm = nosplug.plugin_manager()
    mod = types.ModuleType("dup")

    @hookimpl
    def nosplug_unary_ops():
        return [UnaryOp("max_value", torch.abs, "a", "a")]

    mod.nosplug_unary_ops = nosplug_unary_ops
    pm.register(mod, name="dup")
    with pytest.raises(PluginClashError, match="max_value"):
        Registry.from_plugin_manager(pm)


def test_operand_families_build_parameterised_operands() -> None:
    reg = registry()
    op = reg.operand("ema(power=2, beta=0.999)")
    assert op.name == "ema(beta=0.999, bias_correction=true, power=2)"
    assert op.requires[0].beta == 0.999
    with pytest.raises(nosplug.primitives.UnknownPrimitiveError, match="no parameter"):
        reg.operand("ema(gamma=1)")
    with pytest.raises(nosplug.primitives.UnknownPrimitiveError, match="unknown operand family"):
        reg.operand("nope(x=1)")
