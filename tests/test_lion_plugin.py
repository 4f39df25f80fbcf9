"""Zoo genomes from plugins (hook ``nosplug_zoo_genomes``) and the first-party Lion plugin package.

The first half tests the hook in-process with plugin objects registered on the plugin manager;
the second pip-installs ``plugins/nosplug-lion`` into a private folder and uses it through
PYTHONPATH in subprocesses, so the real entry point is what loads it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import nosplug
from nosplug import plugins, zoo
from nosplug.cli import main
from nosplug.genome.graph import GenomeError
from nosplug.hookspecs import hookimpl
from nosplug.primitives import PluginClashError
from nosplug.primitives.registry import InvalidPluginRecordError, Registry, ZooGenome

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "nosplug-lion"


def _genome(unary: str, description: str = "") -> dict[str, Any]:
    return {
        "format": "nosplug-genome",
        "version": 1,
        "nodes": [{"id": "out", "arity": 1, "unary": unary, "binary": "add", "inputs": ["g"]}],
        "meta": {"name": unary, "description": description, "defaults": {"lr": 0.5}},
    }


def _zoo_plugin(name: str, genomes: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.nosplug_zoo_genomes = hookimpl(lambda: genomes)
    return mod


# ------------------------------------------------------------------ the hook, in-process
def test_without_zoo_plugins_the_zoo_is_exactly_the_shipped_files() -> None:
    shipped = sorted(p.stem for p in (ROOT / "nosplug" / "zoo" / "data").glob("*.json"))
    assert zoo.names() == shipped == list(zoo.builtin_names())
    # the shipped genomes arrive through the same hook as plugins', from the built-in plugin
    assert sorted(nosplug.registry().names("zoo_genomes")) == shipped
    assert {zoo.origin(n) for n in shipped} == {"nosplug.zoo"}


def test_plugin_genomes_join_the_zoo_as_text_or_dict() -> None:
    genomes = {"Neg-G": json.dumps(_genome("neg", "text form")), "abs_g": _genome("abs", "dict form")}
    nosplug.plugin_manager().register(_zoo_plugin("mine", genomes), name="mine")
    names = zoo.names()
    assert names == sorted(names) and {"neg-g", "abs_g", "adam"} <= set(names)
    assert zoo.load("NEG-G").formula() == "-(g)" and zoo.load("neg-g").meta["description"] == "text form"
    assert zoo.load("abs_g").formula() == "|g|"
    assert zoo.origin("abs_g") == "mine"
    # the GraphOptimizer takes plugin zoo names like built-in ones, with their default lr
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = nosplug.GraphOptimizer([w], "abs_g")
    assert opt.param_groups[0]["lr"] == 0.5
    w.grad = torch.tensor([-1.0, 3.0])
    opt.step()
    assert w.detach().tolist() == [0.5, -3.5]  # w - 0.5 * |g|


def test_pairs_and_records_are_accepted_too() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_zoo_plugin("pairs", [("pair_g", _genome("neg"))]), name="pairs")
    pm.register(_zoo_plugin("records", [ZooGenome("record_g", _genome("abs"))]), name="records")
    assert zoo.origin("pair_g") == "pairs" and zoo.origin("record_g") == "records"
    assert zoo.load("record_g").formula() == "|g|"


def test_a_loaded_plugin_genome_is_a_copy() -> None:
    nosplug.plugin_manager().register(_zoo_plugin("mine", {"abs_g": _genome("abs")}), name="mine")
    zoo.load("abs_g").meta["defaults"]["lr"] = 99.0
    assert zoo.load("abs_g").meta["defaults"]["lr"] == 0.5


def test_a_plugin_reset_forgets_plugin_genomes() -> None:
    assert "abs_g" not in zoo.names()  # computed (and memoised) before the plugin exists
    plugins.reset()
    nosplug.plugin_manager().register(_zoo_plugin("mine", {"abs_g": _genome("abs")}), name="mine")
    assert "abs_g" in zoo.names()
    plugins.reset()
    assert "abs_g" not in zoo.names()
    with pytest.raises(zoo.UnknownGenomeError, match="neither a zoo genome"):
        zoo.load("abs_g")


def test_a_zoo_name_clash_between_plugins_names_both() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_zoo_plugin("first_party", {"twin": _genome("neg")}), name="first_party")
    pm.register(_zoo_plugin("second_party", {"TWIN": _genome("abs")}), name="second_party")
    with pytest.raises(
        PluginClashError, match=r"zoo genome 'twin' .*'first_party' and plugin 'second_party'"
    ):
        Registry.from_plugin_manager(pm)
    with pytest.raises(PluginClashError, match="second_party"):
        zoo.names()


def test_a_plugin_cannot_shadow_a_builtin_zoo_genome() -> None:
    pm = nosplug.plugin_manager()
    pm.register(_zoo_plugin("shadow", {"Adam": _genome("neg")}), name="shadow")
    with pytest.raises(
        PluginClashError, match=r"zoo genome 'adam' .*'nosplug\.zoo' \(the built-in zoo.*plugin 'shadow'"
    ):
        zoo.load("adam")


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (5, "must return a mapping"),
        (["just-a-name"], "must be \\(name, genome\\) pairs"),
        ({"sub/dir": _genome("neg")}, "'sub/dir' must be letters"),
        ({"mine.json": _genome("neg")}, "not end in .json"),
        ({"num": 42}, "'num' must be genome JSON text or a dict"),
    ],
)
def test_malformed_hook_results_name_the_plugin(returned: Any, message: str) -> None:
    pm = nosplug.plugin_manager()
    pm.register(_zoo_plugin("sloppy", returned), name="sloppy")
    with pytest.raises(InvalidPluginRecordError, match=f"plugin 'sloppy': .*{message}"):
        Registry.from_plugin_manager(pm)


def test_a_broken_plugin_genome_names_the_plugin_when_loaded() -> None:
    broken = _genome("no_such_op")
    nosplug.plugin_manager().register(_zoo_plugin("wonky", {"broken": broken}), name="wonky")
    assert "broken" in zoo.names()
    with pytest.raises(GenomeError, match=r"zoo genome 'broken' from plugin 'wonky': .*no_such_op"):
        zoo.load("broken")


def test_plugins_list_shows_zoo_genomes(capsys) -> None:
    nosplug.plugin_manager().register(
        _zoo_plugin("mine", {"b_g": _genome("abs"), "a_g": _genome("neg")}), name="mine"
    )
    assert main(["plugins", "list", "--json"]) == 0
    rows = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert rows["mine"]["registers"] == {"zoo_genomes": ["a_g", "b_g"]}


# ------------------------------------------------------------------ the installed Lion package
REFERENCE = textwrap.dedent(
    """
    import json
    import torch
    from torch import nn
    import nosplug
    from nosplug import zoo

    torch.set_num_threads(1)
    STEPS = 100


    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


    def batches():
        gen = torch.Generator().manual_seed(1)
        xs = [torch.randn(32, 8, generator=gen) for _ in range(STEPS)]
        return [(x, torch.randint(0, 3, (32,), generator=gen)) for x in xs]


    def reference_lion(net, lr, wd, beta1=0.9, beta2=0.99, m_first=False):
        # Chen et al. 2023, Algorithm 2, one tensor at a time. m_first=True is the tempting bug of
        # interpolating with the momentum AFTER this step's update (what an EMA operand would see).
        params = list(net.parameters())
        ms = [torch.zeros_like(p) for p in params]
        for x, y in batches():
            net.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            with torch.no_grad():
                for p, m in zip(params, ms):
                    g = p.grad
                    if m_first:
                        m.copy_(beta2 * m + (1 - beta2) * g)
                    c = beta1 * m + (1 - beta1) * g
                    p.copy_(p - lr * (torch.sign(c) + wd * p))
                    if not m_first:
                        m.copy_(beta2 * m + (1 - beta2) * g)
        return net


    def graph_optimizer(name, lr):
        net = model()
        # no scheduler, no total_steps: Lion's genomes have no decay edges and momentum type none,
        # so the optimizer's momentum coefficient never enters the update
        opt = nosplug.GraphOptimizer(net.parameters(), zoo.load(name), lr=lr)
        for x, y in batches():
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        return net, opt.param_groups[0]["lr"]


    def rel(a, b):
        with torch.no_grad():
            return max(float((p - q).norm() / q.norm()) for p, q in zip(a.parameters(), b.parameters()))


    out = {}
    for name, wd in (("lion", 0.0), ("lionw", 0.01)):
        for lr in (None, 3e-3):  # None: the genome's default lr
            ours, used_lr = graph_optimizer(name, lr)
            ref = reference_lion(model(), used_lr, wd)
            out[f"{name}@{lr}"] = {
                "lr": used_lr,
                "rel": rel(ours, ref),
                "moved": rel(ref, model()),
                "m_first": rel(reference_lion(model(), used_lr, wd, m_first=True), ref),
                "other_wd": rel(reference_lion(model(), used_lr, 0.01 - wd), ref),
                "params": len(list(ours.parameters())),
            }
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """pip-install the package (its own pyproject.toml, entry point) into a private folder."""
    target = tmp_path_factory.mktemp("lion-site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    out = subprocess.run(
        [*pip, "--target", str(target), str(PACKAGE)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return target


def _env(site: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", plugins.DISABLE_ENV)}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def _run(site: Path | None, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=_env(site), timeout=600, cwd=cwd
    )


def test_plugins_list_shows_the_lion_package(site: Path) -> None:
    out = _run(site, "-m", "nosplug", "plugins", "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    assert rows["lion"]["version"] == "0.1.0"
    assert rows["lion"]["module"] == "nosplug_lion" and not rows["lion"]["builtin"]
    assert rows["lion"]["registers"] == {
        "unary_ops": ["sign"],
        "stateful_ops": ["lion_interp"],
        "zoo_genomes": ["lion", "lionw"],
    }
    shown = _run(site, "-m", "nosplug", "genome", "show", "lionw")
    assert shown.returncode == 0, shown.stderr
    assert "sign(lion[0.9,0.99](g)) + 0.01*w" in shown.stdout


def test_the_package_tests_pass_against_the_installed_package(site: Path) -> None:
    out = _run(
        site, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(PACKAGE / "tests"), cwd=PACKAGE
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "skipped" not in out.stdout, out.stdout  # installed: the entry-point test runs too


def test_zoo_lion_and_lionw_match_an_independent_lion_step_for_step(site: Path, tmp_path: Path) -> None:
    script = tmp_path / "reference.py"
    script.write_text(REFERENCE)
    out = _run(site, str(script))
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["lion@None"]["lr"] == results["lionw@None"]["lr"] == 1e-4  # meta defaults
    for key, r in results.items():
        assert r["params"] == 4, key
        assert r["rel"] < 1e-5, (key, r)
        # the comparison can tell: the weights moved, and the momentum-order bug or the other
        # weight decay would each have been caught
        assert r["moved"] > 1e-2, (key, r)
        assert r["m_first"] > 1e-4, (key, r)
    assert results["lion@0.003"]["other_wd"] > 1e-3 and results["lionw@0.003"]["other_wd"] > 1e-3


def test_a_genome_using_the_plugin_ops_trains_a_model(site: Path, tmp_path: Path) -> None:
    # what a study with sign/lion_interp in its [space] could find: Lion plus the paper's w_1e-3
    genome = {
        "format": "nosplug-genome",
        "version": 1,
        "nodes": [
            {"id": "h0", "arity": 1, "unary": "lion_interp", "binary": "add", "inputs": ["g"]},
            {"id": "h1", "arity": 1, "unary": "sign", "binary": "add", "inputs": ["h0"]},
            {"id": "out", "arity": 2, "unary": "identity", "binary": "add", "inputs": ["h1", "w_1e-3"]},
        ],
    }
    path = tmp_path / "lion_w3.json"
    path.write_text(json.dumps(genome))
    out = _run(
        site, "-m", "nosplug", "evaluate", str(path), "--dataset", "digits", "--preset", "smoke", "--json"
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["status"] == "complete" and res["fitness"] > 0.5, res
    # disabling the plugin takes its ops and zoo genomes away again
    off = _run(site, "-m", "nosplug", "-p", "no:lion", "genome", "show", str(path), "lion")
    assert off.returncode == 2 and "lion_interp" in off.stderr


def test_without_the_plugin_lion_is_an_unknown_genome() -> None:
    if any(ep.name == "lion" for ep in importlib.metadata.entry_points(group="nosplug")):
        pytest.skip("the Lion plugin is installed in this environment")
    code = textwrap.dedent(
        """
        from nosplug import zoo
        try:
            zoo.load("lion")
        except zoo.UnknownGenomeError as exc:
            print("UnknownGenomeError:", exc)
        """
    )
    out = _run(None, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("UnknownGenomeError: 'lion' is neither a zoo genome nor a genome file")
    cli = _run(None, "-m", "nosplug", "genome", "show", "lionw")
    assert cli.returncode == 2 and "'lionw' is neither a zoo genome" in cli.stderr
