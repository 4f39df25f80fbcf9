"""Tests of the Lion plugin, run against an installed nosplug.

With the package installed (``pip install ./plugins/nosplug-lion``) nosplug loads it by entry point.
Run from a source checkout without installing, these tests register ``src/nosplug_lion`` on the
plugin manager under the same name, the way the entry point would; only the test of the
installed distribution itself is then skipped.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

import nosplug
from nosplug import plugins, zoo
from nosplug.genome.model import Genome
from nosplug.genome.random import random_genome
from nosplug.genome.space import SearchSpace
from nosplug.hookspecs import hookimpl
from nosplug.primitives import ExecContext, PluginClashError, StatefulOp
from nosplug.search.config import SearchConfig

SRC = Path(__file__).resolve().parents[1] / "src"


def _installed() -> bool:
    eps = importlib.metadata.entry_points(group="nosplug")
    return any(ep.name == "lion" and ep.value == "nosplug_lion" for ep in eps)


INSTALLED = _installed()


def _module() -> ModuleType:
    """The plugin module: the installed one, else src/nosplug_lion loaded from its file.

    src/ is deliberately not put on sys.path: an in-tree pip build leaves
    src/nosplug_lion.egg-info there, whose entry point would then load the plugin in every
    other test of the session as well.
    """
    if INSTALLED or "nosplug_lion" in sys.modules:
        return importlib.import_module("nosplug_lion")
    spec = importlib.util.spec_from_file_location("nosplug_lion", SRC / "nosplug_lion" / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nosplug_lion"] = module
    spec.loader.exec_module(module)
    return module


lion = _module()


@pytest.fixture(autouse=True)
def lion_plugin() -> Iterator[None]:
    """A fresh plugin manager with the Lion plugin, installed or registered from src/."""
    plugins.reset()
    if not INSTALLED:
        nosplug.plugin_manager().register(lion, name="lion")
    yield
    plugins.reset()


def _hand_lion(w: torch.Tensor, grads: list[torch.Tensor], lr: float, wd: float, b1=0.9, b2=0.99):
    """Lion, Algorithm 2 of Chen et al. 2023, for one tensor."""
    w, m = w.clone(), torch.zeros_like(w)
    for g in grads:
        c = b1 * m + (1 - b1) * g
        w = w - lr * (torch.sign(c) + wd * w)
        m = b2 * m + (1 - b2) * g
    return w


@pytest.mark.skipif(
    not INSTALLED, reason="the distribution is not installed (pip install ./plugins/nosplug-lion)"
)
def test_the_installed_distribution_is_loaded_by_entry_point() -> None:
    infos = {p.name: p for p in plugins.plugin_infos()}
    assert infos["lion"].version == "0.1.0" == lion.__version__
    assert not infos["lion"].builtin


def test_what_the_plugin_registers() -> None:
    reg = nosplug.registry()
    assert reg.by_plugin()["lion"] == {
        "unary_ops": ["sign"],
        "stateful_ops": ["lion_interp"],
        "zoo_genomes": ["lion", "lionw"],
    }
    assert reg.is_stateful("lion_interp")
    assert zoo.origin("lion") == zoo.origin("LionW") == "lion"
    assert {"lion", "lionw"} <= set(zoo.names())


def test_lion_interp_outputs_c_from_the_momentum_before_its_update() -> None:
    op = nosplug.registry().unary("lion_interp")
    assert isinstance(op, StatefulOp)
    ctx = ExecContext(numel=3)
    m = torch.zeros(3)
    grads = [torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-3.0, 1.0, 0.25]), torch.tensor([0.5, 0.5, -4.0])]
    expected_m = torch.zeros(3)
    for g in grads:
        c = op.fn(g, m, ctx)
        assert torch.allclose(c, 0.9 * expected_m + 0.1 * g)
        expected_m = 0.99 * expected_m + 0.01 * g
        assert torch.allclose(m, expected_m)
    # a constant input (0-d tensor) is expanded to the parameters' shape
    c = op.fn(torch.tensor(2.0), m, ctx)
    assert c.shape == (3,) and torch.allclose(c, 0.9 * expected_m + 0.2)


def test_sign_maps_zero_to_zero() -> None:
    op = nosplug.registry().unary("sign")
    assert op.fn(torch.tensor([-0.3, 0.0, 7.0])).tolist() == [-1.0, 0.0, 1.0]


def test_zoo_genomes_carry_metadata_and_the_expected_update_rule() -> None:
    lion_g, lionw_g = zoo.load("lion"), zoo.load("lionw")
    assert lion_g.formula() == "sign(lion[0.9,0.99](g))"
    assert lionw_g.formula() == "sign(lion[0.9,0.99](g)) + 0.01*w"
    assert "weight(scale=0.01)" in lionw_g.active_operands()
    for name, g in (("lion", lion_g), ("lionw", lionw_g)):
        assert g.meta["name"] == name
        assert g.meta["defaults"] == {"lr": 1e-4}
        assert "Symbolic Discovery of Optimization Algorithms" in g.meta["source"]
        assert g.momentum == "none" and not g.flip
    assert lion_g.canonical_hash() != lionw_g.canonical_hash()


@pytest.mark.parametrize(("name", "wd"), [("lion", 0.0), ("lionw", 0.01)])
def test_zoo_genome_is_lion_on_one_tensor(name: str, wd: float) -> None:
    gen = torch.Generator().manual_seed(3)
    w0 = torch.randn(4, 5, generator=gen)
    grads = [torch.randn(4, 5, generator=gen) for _ in range(30)]
    w = torch.nn.Parameter(w0.clone())
    opt = nosplug.GraphOptimizer([w], name, lr=0.05)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    assert torch.allclose(w.detach(), _hand_lion(w0, grads, 0.05, wd), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "wd", "betas"), [("lion", 0.0, None), ("lionw", 0.01, None), ("lion95", 0.1, (0.95, 0.98))]
)
def test_exported_as_plain_pytorch_it_is_still_lion(
    name: str, wd: float, betas: tuple[float, float] | None
) -> None:
    """``nosplug genome export lion`` gives a module (torch and math only) that runs Algorithm 2."""
    from nosplug.export import to_torch_source

    genome = zoo.load(name) if betas is None else None
    if betas is not None:  # other betas, from a plugin of your own: the source form carries them
        op = lion.lion_interp_op(*betas)
        mine = ModuleType("my_lion_betas_export")
        mine.nosplug_stateful_ops = hookimpl(lambda: [op])
        nosplug.plugin_manager().register(mine, name="my-lion-betas")
        genome = Genome.from_dict(lion.lion_genome(wd, interp=op.name, name=name))
    module = ModuleType("exported_lion")
    exec(
        compile(to_torch_source(genome, class_name="ExportedLion"), "exported_lion", "exec"), module.__dict__
    )
    gen = torch.Generator().manual_seed(11)
    w0 = torch.randn(3, 4, generator=gen)
    grads = [torch.randn(3, 4, generator=gen) for _ in range(25)]
    w = torch.nn.Parameter(w0.clone())
    opt = module.ExportedLion([w], lr=0.05)
    for g in grads:
        w.grad = g.clone()
        opt.step()
    assert torch.allclose(
        w.detach(), _hand_lion(w0, grads, 0.05, wd, *(betas or (0.9, 0.99))), rtol=1e-6, atol=1e-6
    )


def test_other_betas_through_the_factory_in_a_plugin_of_your_own() -> None:
    op = lion.lion_interp_op(0.95, 0.98)
    assert op.name == "lion_interp_0.95_0.98"
    assert lion.lion_interp_op().name == "lion_interp"
    with pytest.raises(ValueError, match="beta2"):
        lion.lion_interp_op(0.9, 1.0)

    mine = ModuleType("my_lion_betas")
    mine.nosplug_stateful_ops = hookimpl(lambda: [op])
    nosplug.plugin_manager().register(mine, name="my-lion-betas")
    genome = Genome.from_dict(lion.lion_genome(0.1, interp=op.name, name="lion95"))
    assert genome.formula() == "sign(lion[0.95,0.98](g)) + 0.1*w"
    gen = torch.Generator().manual_seed(5)
    w0 = torch.randn(6, generator=gen)
    grads = [torch.randn(6, generator=gen) for _ in range(20)]
    w = torch.nn.Parameter(w0.clone())
    opt = nosplug.GraphOptimizer([w], genome)
    assert opt.param_groups[0]["lr"] == 1e-4
    for g in grads:
        w.grad = g.clone()
        opt.step()
    assert torch.allclose(w.detach(), _hand_lion(w0, grads, 1e-4, 0.1, 0.95, 0.98), rtol=1e-6, atol=1e-7)


def test_registering_the_paper_betas_twice_is_a_clash() -> None:
    dup = ModuleType("dup_lion")
    dup.nosplug_stateful_ops = hookimpl(lambda: [lion.lion_interp_op()])
    pm = nosplug.plugin_manager()
    pm.register(dup, name="dup-lion")
    with pytest.raises(PluginClashError, match=r"'lion_interp'.*'lion' and plugin 'dup-lion'"):
        nosplug.primitives.Registry.from_plugin_manager(pm)


def test_primitives_stay_out_of_the_paper_space_but_a_study_can_list_them() -> None:
    paper = SearchSpace.paper()
    assert "sign" not in paper.unary_ops and "lion_interp" not in paper.unary_ops
    assert nosplug.registry().names("unary_ops", tag="lion") == ["sign"]
    assert nosplug.registry().names("stateful_ops", tag="lion") == ["lion_interp"]
    config = SearchConfig(
        {
            "study": {"name": "lion-space"},
            "space": {
                "operands": ["g", "v_hat", "weight(scale=0.01)"],
                "unary_ops": ["sign", "lion_interp", "neg"],
                "binary_ops": ["add", "mul"],
            },
            "ga": {"initial_genomes": ["lion", "lionw"]},
        }
    )
    assert set(config.space.unary_ops) == {"sign", "lion_interp", "neg"}
    assert [g.meta["name"] for g in config.ga.initial_genomes] == ["lion", "lionw"]
    # random genomes of that space use the plugin's ops and run in the optimizer
    rng = random.Random(0)
    drawn = [random_genome(config.space, rng) for _ in range(40)]
    used = {n.unary for g in drawn for n in g.active_nodes() if n.arity == 1}
    assert {"sign", "lion_interp"} <= used
    w = torch.nn.Parameter(torch.randn(8))
    for g in drawn[:10]:
        opt = nosplug.GraphOptimizer([w], g, lr=1e-3, total_steps=3, nonfinite="skip")
        for _ in range(3):
            w.grad = torch.randn(8)
            opt.step()
    assert torch.isfinite(w).all()
