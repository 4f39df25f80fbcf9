"""Elimination as the paper runs it (spec §10): stages with their own task and learning-rate test,
torchvision models as stage surrogates, and the second GA round seeded from the survivors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import assert_all_finished_once, nosplug

import nosplug as nsp
from nosplug.search.api import create_search
from nosplug.search.config import ConfigError, SearchConfig
from nosplug.search.elimination import Candidate, Elimination, Stage
from nosplug.search.rounds import create_elimination, round2_config, winners
from nosplug.study import studies
from nosplug.study.kinds import open_study, plan_state
from nosplug.study.plan import Record
from nosplug.study.storage import open_storage
from nosplug.study.worker import Worker

OPEN_GATES = "prescreen_gate = 0.0\nsweep_gate = 0.0\nfinal_floor = 0.0"

PIPELINE = """\
version = 1
[study]
name = "pipe"
seed = 3
[data]
dataset = "digits"
[ga]
initial_genomes = ["adam", "sgd", "rmsprop"]
timesteps = 1
mutations = 1
tries = 1
[evaluation.evolution]
preset = "smoke"
surrogate_options = {{ base = 4 }}
prescreen_gate = 0.0
sweep_gate = 0.0
final_floor = 0.0
[workers]
threads = 1
heartbeat_seconds = 0.5
lease_seconds = 4
poll_seconds = 0.2
[elimination]
top = 3
repeats = 2
[[elimination.stages]]
name = "wider"
keep = 2
preset = "smoke"
surrogate_options = {{ base = 6 }}
{gates}
[[elimination.stages]]
name = "mnist-resnet9"
keep = 1
task = "classification"
task_options = {{ dataset = "mnist5k", limit = 600 }}
preset = "smoke"
surrogate = "resnet9"
surrogate_options = {{ width = 2 }}
{gates}
[next_round]
top = 1
seeds = 2
elimination_top = 2
[validate]
top = 0
"""


def _records_for(plan, fitness, chosen=0.1, rejected=()):
    return {
        p.key: Record(
            p.key,
            p.genome,
            True,
            "pruned" if p.attrs["source"] in rejected and p.lr is None else "complete",
            None if p.attrs["source"] in rejected and p.lr is None else fitness[p.attrs["source"]],
            chosen_lr=None if p.attrs["source"] in rejected else (p.lr or chosen),
        )
        for p in plan.new
    }


def test_a_stage_tests_its_own_learning_rate_before_the_repeats() -> None:
    """lr = "sweep": each candidate's first run is a full evaluation (no fixed rate); the other
    repeats train at the rate it chose; a candidate the test rejects is not trained again and
    counts as the worst value."""
    cands = [Candidate(f"c{i}", nsp.zoo.load(n), 0.5, 0.9) for i, n in enumerate(["adam", "sgd", "rmsprop"])]
    el = Elimination(cands, [Stage("s", 1, lr="sweep")], repeats=3, seed=0)
    first = el.plan({})
    assert [(p.key, p.lr) for p in first.new] == [(f"s/c{i}/rep0", None) for i in range(3)]
    records = _records_for(first, {"c0": 0.7, "c1": 0.8, "c2": 0.99}, chosen=0.03, rejected={"c2"})
    second = el.plan(records)
    assert not second.done
    assert sorted((p.key, p.lr) for p in second.new) == [
        (f"s/c{i}/rep{r}", 0.03) for i in range(2) for r in (1, 2)
    ], "repeats at the tested rate; the rejected c2 gets no repeats"
    records |= _records_for(second, {"c0": 0.7, "c1": 0.8})
    done = el.plan(records)
    assert done.done and done.progress["winners"] == ["c1"]  # c2's one good-looking run is not trusted
    assert Elimination.mean(records, ["s/c2/rep0"], "maximize", 3) == 0.0


def test_search_rate_mode_is_the_old_behaviour() -> None:
    cands = [Candidate("c0", nsp.zoo.load("adam"), 0.25, 0.9)]
    plan = Elimination(cands, [Stage("s", 1, lr="search")], repeats=2, seed=0).plan({})
    assert [p.lr for p in plan.new] == [0.25, 0.25]
    with pytest.raises(ValueError, match="lr must be one of search, sweep"):
        Stage("s", 1, lr="tuned")


def _config(tmp_path: Path, **fmt) -> Path:
    path = tmp_path / "pipe.toml"
    path.write_text(PIPELINE.format(gates=OPEN_GATES, **fmt))
    return path


def test_stage_settings_are_checked_before_anything_is_stored(tmp_path: Path) -> None:
    raw = SearchConfig.from_file(_config(tmp_path)).raw
    bad_lr = json.loads(json.dumps(raw))
    bad_lr["elimination"]["stages"][0]["lr"] = "tuned"
    with pytest.raises(ConfigError, match=r"^elimination.stages\[0\].lr: one of search, sweep"):
        SearchConfig(bad_lr)
    other_direction = json.loads(json.dumps(raw))
    other_direction["elimination"]["stages"][1] = {"name": "reg", "keep": 1, "task": "diabetes-mlp"}
    with pytest.raises(ConfigError, match=r"elimination.stages\[1\].task: 'diabetes-mlp' ranks by mse"):
        create_search(SearchConfig(other_direction), storage=f"journal:{tmp_path / 'x.log'}")
    unknown = json.loads(json.dumps(raw))
    unknown["elimination"]["stages"][1]["surrogate"] = "resnet10"
    with pytest.raises(ConfigError, match=r"elimination.stages\[1\]: .*unknown surrogate 'resnet10'"):
        create_search(SearchConfig(unknown), storage=f"journal:{tmp_path / 'x.log'}")
    assert not (tmp_path / "x.log").exists() or "pipe" not in studies.study_names(
        open_storage(f"journal:{tmp_path / 'x.log'}")
    )


def test_round2_needs_a_finished_elimination_and_the_option(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'j.log'}"
    raw = SearchConfig.from_file(_config(tmp_path)).raw
    raw["next_round"]["top"] = 0
    create_search(SearchConfig(raw), storage=url)
    out = nosplug("study", "next-round", "pipe", "--storage", url)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert "next_round.top: study 'pipe' has no second round configured" in out.stderr


@pytest.mark.slow
def test_the_whole_pipeline_search_elimination_round2(tmp_path: Path) -> None:
    """Search -> elimination (a wider ConvNet with its own rate test, then ResNet-9 on another
    dataset) -> second round from the winner (children on 2 seeds) -> its elimination."""
    url = f"journal:{tmp_path / 'j.log'}"
    create_search(_config(tmp_path), storage=url)
    Worker("pipe", url, threads=1).run()
    create_elimination("pipe", url)
    el = studies.load("pipe.elimination", url)
    ctx = open_study(el)
    task, _preset = ctx.bound("mnist-resnet9")
    assert (task.dataset, task.settings.surrogate) == ("mnist5k", "resnet9")
    assert ctx.data(stage="mnist-resnet9").train.x.shape[1:] == (1, 28, 28)
    assert ctx.data(stage="wider").train.x.shape[1:] == (1, 8, 8)
    Worker("pipe.elimination", url, threads=1).run()
    assert_all_finished_once(el)
    trials = {t.user_attrs["key"]: t for t in el.trials}
    for key, t in trials.items():
        head, rep = key.rsplit("/", 1)
        if rep == "rep0":  # the stage's own learning-rate test chose the rate ...
            assert t.user_attrs.get("fixed_lr") is None and t.user_attrs.get("lr_scores")
        else:  # ... and the repeats trained at it
            assert t.user_attrs["fixed_lr"] == trials[f"{head}/rep0"].user_attrs["chosen_lr"]
    assert {k.split("/")[0] for k in trials} == {"wider", "mnist-resnet9"}
    assert sum(k.startswith("mnist-resnet9/") for k in trials) == 2 * 2  # keep = 2 survivors, 2 repeats
    best = winners("pipe", url)
    assert len(best) == 1

    cfg = round2_config("pipe", url)
    assert cfg["ga"]["initial_genomes"] == [best[0].to_dict()]
    assert cfg["evaluation"]["evolution"]["seeds"] == 2
    assert [s["name"] for s in cfg["elimination"]["stages"]] == ["mnist-resnet9"]
    out = nosplug("study", "next-round", "pipe", "--storage", url, "--quiet")
    assert out.returncode == 0, out.stderr
    r2 = studies.load("pipe.round2", url)
    assert_all_finished_once(r2)
    start = next(t for t in r2.trials if t.user_attrs["key"] == "p000/start")
    assert json.loads(start.user_attrs["genome"]) == best[0].to_dict()
    assert len(start.user_attrs["seed_fitness"]) == 2
    out = nosplug("study", "eliminate", "pipe.round2", "--storage", url, "--quiet")
    assert out.returncode == 0, out.stderr
    assert plan_state(studies.load("pipe.round2.elimination", url)).progress["winners"]


def test_the_paper_pipeline_config_describes_every_step(tmp_path: Path) -> None:
    """studies/paper-cifar10.toml: four elimination stages ending on EfficientNetV2-S, a second
    round of six particles on three seeds, and it creates (models built from CIFAR-10's declared
    shape; the data itself is only needed by the workers)."""
    path = Path(__file__).resolve().parents[1] / "studies" / "paper-cifar10.toml"
    cfg = SearchConfig.from_file(path)
    stages = cfg.raw["elimination"]["stages"]
    assert [(s["name"], s["keep"]) for s in stages] == [
        ("base64", 24),
        ("base96", 12),
        ("base128", 6),
        ("efficientnet_v2_s", 6),
    ]
    assert cfg.raw["next_round"]["top"] == 6 and cfg.raw["next_round"]["seeds"] == 3
    assert [(s["name"], s["keep"]) for s in cfg.raw["next_round"]["stages"]] == [("efficientnet_v2_s", 10)]
    create_search(cfg, storage=f"journal:{tmp_path / 'j.log'}")


@pytest.mark.parametrize("name", ["quick", "adam-variants", "adam-lr-schedules", "paper-cifar10"])
def test_shipped_search_configs_are_valid(name: str) -> None:
    SearchConfig.from_file(Path(__file__).resolve().parents[1] / "studies" / f"{name}.toml").check_task()
