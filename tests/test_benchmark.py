"""The benchmark harness: equal budgets, fresh seeds, test split, planted truths, resume after a kill."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from study_helpers import nosplug as nosplug_cli
from torch import nn

import nosplug
from nosplug.benchmark.config import BenchmarkConfigError, normalise
from nosplug.benchmark.contenders import ContenderError, resolve
from nosplug.benchmark.results import collect
from nosplug.study import studies
from nosplug.tasks import Gates, Metric, Split, Task, TaskData

HERE = Path(__file__).resolve().parent


class IllConditioned(Task):
    """Linear regression whose features differ 100-fold in scale while mattering equally: plain
    SGD's rate is held back by the steep directions and crawls along the flat ones; Adam's
    per-coordinate scaling does not. A planted truth: tuned Adam beats tuned SGD."""

    name = "ill-conditioned"
    metric = Metric("mse", "minimize")
    train_metric = Metric("loss", "minimize")
    gates = Gates(prescreen=0.99, sweep=0.99, run=1.0, final_floor=1.0, scale="relative")
    budget: ClassVar[dict] = {"batch_size": 32, "final_steps": 100, "final_epoch_steps": 20,
                              "schedule_steps": 100, "warmup_steps": 0}  # fmt: skip

    def __init__(self) -> None:
        self.options = {}

    def load(self, seed: int) -> TaskData:
        g = torch.Generator().manual_seed(1234)
        z = torch.randn(1200, 8, generator=g)
        x = z * torch.tensor([0.1] * 4 + [10.0] * 4)
        y = z @ torch.randn(8, 1, generator=g) + 0.05 * torch.randn(1200, 1, generator=g)
        return TaskData(Split(x[:800], y[:800]), Split(x[800:1000], y[800:1000]), Split(x[1000:], y[1000:]))

    def build_model(self, seed: int) -> nn.Module:
        return nn.Linear(8, 1)

    def loss(self, out, y):
        return nn.functional.mse_loss(out, y)

    def evaluate(self, model, split, chunk: int = 1000) -> float:
        with torch.no_grad():
            return nn.functional.mse_loss(model(split.x), split.y).item()


def _config(name: str, contenders: list[str], **tuning) -> dict:
    return {
        "benchmark": {"name": name, "reference": "torch:Adam", "contenders": contenders},
        "tuning": {"trials": 3, "lr": [1e-4, 1.0], **tuning},
        "evaluation": {"seeds": 2},
        "tasks": [{"name": "test_benchmark:IllConditioned"}],
        "workers": {"threads": 1},
    }


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    url = f"journal:{tmp_path_factory.mktemp('planted') / 'j.log'}"
    return url, nosplug.benchmark(
        config=_config("planted", ["torch:SGD", "torch:Adam(eps=1e-08)"]), storage=url
    )


def test_a_real_difference_is_found_and_a_copy_of_the_reference_is_not(planted) -> None:
    _url, res = planted
    assert res.done and set(res.verdicts) == {"torch:SGD", "torch:Adam(eps=1e-08)"}
    sgd, copy = res.verdicts["torch:SGD"], res.verdicts["torch:Adam(eps=1e-08)"]
    assert sgd.outcome == "worse", sgd.sentence
    assert sgd.comparison.test.p_corrected < 0.05 and sgd.comparison.probability_of_improvement.high < 0.5
    assert copy.outcome == "no detectable difference", copy.sentence
    # both got the same budget, on the same tuning seeds (common random numbers)
    for c in res.contenders:
        summary = res.summaries[(c, "test_benchmark:IllConditioned")]
        assert summary.tuning_trials == 3 and len(summary.studies) == res.design.studies
    assert "3 TPE tuning trials per tuning study" in res.budget_line() and "test split" in res.budget_line()
    # the automatic design: the fewest tuning studies with power 0.8 at d = 1 for a family of 2
    assert res.raw["design"]["automatic"] and res.raw["design"]["power"] >= 0.8
    assert res.design.studies == res.raw["design"]["studies"] == 10


def test_tuning_reads_validation_and_evaluation_reads_test_on_fresh_seeds(planted) -> None:
    url, res = planted
    study = studies.load("planted", url)
    tune = [t.user_attrs for t in study.trials if t.user_attrs.get("phase") == "tune"]
    evals = [t.user_attrs for t in study.trials if t.user_attrs.get("phase") == "eval"]
    k = res.design.studies  # one look at the cap: every contender gets every study
    assert len(tune) == 3 * k * 3 and len(evals) == 3 * k * 2
    assert all("final_test" not in a and not a["curve"]["test"] for a in tune), "tuning never saw test data"
    assert all(len(a["curve"]["test"]) == len(a["curve"]["val"]) > 0 for a in evals)
    assert {a["seed"] for a in tune}.isdisjoint({a["seed"] for a in evals}), "evaluation seeds are fresh"
    # every contender of a task shares the evaluation seeds, so runs pair by seed
    seeds = {c: sorted(a["seed"] for a in evals if a["contender"] == c) for c in res.contenders}
    assert len({tuple(v) for v in seeds.values()}) == 1
    # ... and the tuning seeds of each study (common random numbers); every study has its own
    tuning_seeds: dict[tuple[str, int], list[int]] = {}
    for a in tune:
        tuning_seeds.setdefault((a["contender"], a["study"]), []).append(a["seed"])
    tuning_seeds = {key: sorted(v) for key, v in tuning_seeds.items()}
    assert len({tuple(tuning_seeds[(c, 0)]) for c in res.contenders}) == 1
    assert len({tuple(tuning_seeds[("torch:SGD", j)]) for j in range(k)}) == k
    # study j's choice trains on seed indices 2j and 2j + 1
    assert all(a["seed_index"] // 2 == a["study"] for a in evals)
    # each tuning trial's value is its best validation value; the chosen one is the best of them
    sgd = sorted(
        (a for a in tune if a["contender"] == "torch:SGD" and a["study"] == 0), key=lambda a: a["key"]
    )
    for a in sgd:  # a run that diverged before its first validation has no value
        assert a["fitness"] == (min(a["curve"]["val"]) if a["curve"]["val"] else None)
    best = min((a for a in sgd if a["fitness"] is not None), key=lambda a: a["fitness"])
    assert res.summaries[("torch:SGD", "test_benchmark:IllConditioned")].tuned == best["params"]


def test_time_to_target_is_read_off_the_stored_curves(planted) -> None:
    url, res = planted
    task = "test_benchmark:IllConditioned"
    study = studies.load("planted", url)
    evals = [t.user_attrs for t in study.trials if t.user_attrs.get("phase") == "eval"]
    ref = [a["final_val"] for a in evals if a["contender"] == "torch:Adam"]
    # the level the reference reaches on ~3/4 of its seeds: the upper quartile of an MSE
    assert res.targets[task] == pytest.approx(float(np.quantile(ref, 0.75)))
    assert sum(v <= res.targets[task] for v in ref) >= 0.75 * len(ref)
    for c in res.contenders:
        steps = []
        for a in sorted((a for a in evals if a["contender"] == c), key=lambda a: a["seed_index"]):
            hit = [s for s, v in zip(a["curve"]["steps"], a["curve"]["val"]) if v <= res.targets[task]]
            steps.append(hit[0] if hit else math.inf)
        expected = statistics.median(steps) if all(math.isfinite(s) for s in steps) else None
        got = res.summaries[(c, task)].steps_to_target
        if expected is not None:
            assert got == expected
        assert res.summaries[(c, task)].reached == sum(math.isfinite(s) for s in steps)
    assert res.profiles is not None and res.profiles.area["torch:SGD"] == 0.0


def test_unequal_budgets_are_refused_unless_the_config_allows_them() -> None:
    cfg = _config("u", ["torch:SGD"], per_contender={"torch:SGD": 20})
    with pytest.raises(BenchmarkConfigError, match=r"20 tuning trials where the others get 3"):
        normalise(cfg)
    cfg["benchmark"]["allow_unequal_budgets"] = True
    raw = normalise(cfg)
    assert raw["tuning"]["per_contender"] == {"torch:SGD": 20}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torch:Adamm", "torch.optim has no optimizer 'Adamm'"),
        ("torch:Adam(lr=0.1)", "the learning rate is tuned"),
        ("torch:SGD(momentom=0.9)", "unexpected keyword argument 'momentom'"),
        ("adamm", "neither a zoo genome nor a genome file"),
        ("pretrained:nope", "no pretrained student 'nope'"),
    ],
)
def test_a_bad_contender_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(ContenderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(spec)


def test_every_kind_of_contender_builds_an_optimizer() -> None:
    model = nn.Linear(3, 1)
    names = nosplug.amalgamation.pretrained_names()
    specs = ["opt6", "torch:SGD(momentum=0.9, nesterov=True)"] + [f"pretrained:{n}" for n in names[:1]]
    for spec in specs:
        c = resolve(spec)
        hp = {k: 0.01 for k in c.tuned_names()}
        opt, _sched = c.build(model.parameters(), hp, total_steps=10)
        assert isinstance(opt, torch.optim.Optimizer), spec


@pytest.mark.slow
def test_a_killed_benchmark_resumes_without_redoing_runs_and_reaches_the_same_tables(tmp_path: Path) -> None:
    args = ["benchmark", "torch:SGD", "opt6", "--tasks", "test_benchmark:IllConditioned", "--seeds", "1",
            "--studies", "6", "--tuning-trials", "2", "--allow-underpowered", "--json"]  # fmt: skip
    env = {"PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    whole = nosplug_cli(*args, "--name", "w", "--storage", f"journal:{tmp_path / 'a.log'}", env=env)
    assert whole.returncode == 0, whole.stderr
    url = f"journal:{tmp_path / 'b.log'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nosplug", *args, "--name", "w", "--storage", url],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.3)
        try:
            n = sum(t.state.name == "COMPLETE" for t in studies.load("w", url).trials)
        except Exception:
            continue
        if n >= 6:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {
        t.user_attrs["key"]: t.number for t in studies.load("w", url).trials if t.state.name == "COMPLETE"
    }
    assert 6 <= len(before) < 3 * 6 * 3, "killed in the middle"
    resumed = nosplug_cli(*args, "--name", "w", "--storage", url, env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = studies.load("w", url).trials
    for key, number in before.items():  # no finished run was done again
        assert [t.number for t in after if t.user_attrs["key"] == key and t.state.name == "COMPLETE"] == [
            number
        ]
    a, b = json.loads(whole.stdout), json.loads(resumed.stdout)
    for k in a["tasks"]:
        for field in ("tuned", "final_test_mean", "best_test_mean", "steps_to_target", "reached"):
            assert a["tasks"][k][field] == b["tasks"][k][field], (k, field)
    assert {c: v["outcome"] for c, v in a["verdicts"].items()} == {
        c: v["outcome"] for c, v in b["verdicts"].items()
    }


def test_the_results_are_recomputed_from_the_storage_alone(planted) -> None:
    url, res = planted
    again = collect(studies.load("planted", url))
    assert again.targets == res.targets
    assert {c: v.sentence for c, v in again.verdicts.items()} == {
        c: v.sentence for c, v in res.verdicts.items()
    }


def test_nosplug_report_renders_a_benchmark(planted, tmp_path: Path, capsys) -> None:
    from nosplug.cli import main

    url, res = planted
    out = tmp_path / "rep"
    assert main(["report", "planted", "--storage", url, "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "report.html", "profiles.png"} <= names
    assert any(n.startswith("curves-") and n.endswith(".png") for n in names)
    md = (out / "report.md").read_text()
    for v in res.verdicts.values():  # the verdicts, word for word, with their intervals
        assert v.sentence in md
    assert res.budget_line() in md and "| torch:SGD |" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len([n for n in names if n.endswith(".png")])


def test_blind_samplers_plan_every_tuning_trial_at_once_and_tpe_one_at_a_time() -> None:
    """qmc: all tuning trials of every contender in the first plan (they run side by side), the
    same evenly spread log rates for each contender; tpe: one trial per contender until it ends."""
    from nosplug.benchmark.planner import BenchmarkPlanner

    qmc = BenchmarkPlanner(normalise(_config("q", ["torch:SGD", "torch:Adam"], trials=4, sampler="qmc")))
    k = qmc.design.looks.units[0]  # the first look's tuning studies
    plan = qmc.plan({})
    tunes = [p for p in plan.new if p.attrs["phase"] == "tune"]
    assert len(tunes) == 2 * 4 * k and not plan.done
    by_study: dict[tuple[str, int], list[float]] = {}
    for p in tunes:
        by_study.setdefault((p.attrs["contender"], p.attrs["study"]), []).append(p.attrs["params"]["lr"])
    for j in range(k):
        sgd, adam = by_study[("torch:SGD", j)], by_study[("torch:Adam", j)]
        assert sgd == adam  # common points
        logs = sorted(math.log10(v) for v in sgd)
        gaps = [b - a for a, b in itertools.pairwise(logs)]
        assert gaps == pytest.approx([1.0] * 3)  # 4 points over 4 decades [1e-4, 1]: one per decade
    assert by_study[("torch:SGD", 0)] != by_study[("torch:SGD", 1)], "each study is shifted on its own"
    assert qmc.plan({}).new == plan.new  # deterministic
    tpe = BenchmarkPlanner(normalise(_config("t", ["torch:SGD", "torch:Adam"], trials=4)))
    keys = [p.key for p in tpe.plan({}).new]  # one trial per (contender, study) at a time
    assert keys[:3] == ["tune/0/0/000", "tune/0/0/1/000", "tune/0/0/2/000"] and len(keys) == 2 * k


def test_the_verdict_tunes_by_quasi_random_search_unless_told() -> None:
    from nosplug.search.config import ConfigError
    from nosplug.search.config import normalise as study_normalise

    assert study_normalise({"study": {"name": "v"}})["validate"]["sampler"] == "qmc"
    with pytest.raises(ConfigError, match=r"validate\.sampler: qmc, tpe or random"):
        study_normalise({"study": {"name": "v"}, "validate": {"sampler": "grid"}})


def test_a_design_that_cannot_decide_is_refused_before_anything_is_stored(tmp_path: Path, capsys) -> None:
    """The defaults of old (5 seeds, one task, one tuning study) could never say 'better'."""
    from nosplug.cli import main
    from nosplug.study.storage import open_storage

    url = f"journal:{tmp_path / 'j.log'}"
    args = ["benchmark", "torch:SGD", "--tasks", "diabetes-mlp", "--seeds", "5", "--studies", "1"]
    assert main([*args, "--storage", url]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot decide" in err, err
    assert "it needs 6 tuning studies × 5 seeds = 30 seeds per contender and task" in err
    assert "set tuning.studies = 6" in err and "--allow-underpowered" in err
    assert not (tmp_path / "j.log").exists() or not open_storage(url).get_all_studies()


def test_an_underpowered_design_runs_when_allowed_and_every_verdict_says_so(tmp_path: Path) -> None:
    cfg = _config("under", ["torch:SGD"], trials=1, studies=1)
    with pytest.raises(BenchmarkConfigError, match="cannot decide"):
        normalise(cfg)
    cfg["benchmark"]["allow_underpowered"] = True
    res = nosplug.benchmark(config=cfg, storage=f"journal:{tmp_path / 'j.log'}")
    assert res.done and not res.raw["design"]["adequate"]
    note = "underpowered design (it cannot decide; needs"
    assert all(note in v.sentence for v in res.verdicts.values())
    assert res.verdicts["torch:SGD"].outcome == "no detectable difference"


def test_the_tables_keep_contender_names_whole_in_80_columns(planted) -> None:
    from rich.console import Console

    from nosplug.cli.benchmark_cmd import render

    _url, res = planted
    console = Console(width=80, record=True, color_system=None)
    console.print(render(res))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    for c in res.contenders:  # in every table row that names it, the whole name on one line
        rows = [line for line in lines if line.startswith("│ torch")]
        assert any(f"│ {c} " in line for line in rows), c
    assert any(line.startswith("design: up to 10 tuning studies × 2 seeds") for line in lines)


def _drive(raw: dict, effect: dict[str, float], order_seed: int | None = None) -> dict:
    """Run the planner to its end with fake results (a planted effect in the task's own units, MSE:
    positive is worse), all at once or one at a time in a random order (as workers and resumes do)."""
    import random

    from nosplug.benchmark.planner import BenchmarkPlanner
    from nosplug.study.plan import Record

    planner, records, pending = BenchmarkPlanner(raw), {}, []
    rng = random.Random(order_seed)
    for _ in range(10_000):
        res = planner.plan({**records, **{p.key: Record(p.key, None, False, attrs=p.attrs) for p in pending}})
        pending += res.new
        if res.done and not pending:
            return records
        if order_seed is None:
            take, pending = pending, []
        else:
            rng.shuffle(pending)
            take, pending = pending[:1], pending[1:]
        for p in take:
            r = random.Random(p.key)
            value = 1.0 + 0.1 * effect.get(p.attrs["contender"], 0.0) + r.gauss(0, 0.1)
            if p.attrs["phase"] == "eval":
                records[p.key] = Record(
                    p.key, None, True, "complete", value, attrs={**p.attrs, "final_test": value}
                )
            else:
                records[p.key] = Record(p.key, None, True, "complete", r.random(), attrs=dict(p.attrs))
    raise AssertionError("the planner did not finish")


def test_studies_come_in_batches_until_each_verdict_is_decided_and_any_order_plans_the_same() -> None:
    from collections import Counter

    cfg = _config("seq", ["torch:SGD", "torch:RMSprop"], sampler="qmc", studies=16, batch=4)
    raw = normalise(cfg)
    assert raw["design"]["looks"] == [12, 16]  # 4 and 8 studies could hardly decide: skipped
    records = _drive(raw, {"torch:SGD": 3.0})  # SGD far worse, RMSprop the same as Adam
    studies = Counter(
        (r.attrs["contender"], r.attrs["study"]) for r in records.values() if r.attrs["phase"] == "eval"
    )
    per = {c: len({k for (cc, k) in studies if cc == c}) for c in raw["benchmark"]["contenders"]}
    assert per == {"torch:SGD": 12, "torch:RMSprop": 16, "torch:Adam": 16}, "SGD decided at the first look"
    assert set(_drive(raw, {"torch:SGD": 3.0}, order_seed=5)) == set(records)


def test_a_benchmark_stored_before_designs_plans_as_it_always_did() -> None:
    """No tuning.studies and no design in a stored config: one study, every seed at once, same keys."""
    from nosplug.benchmark.planner import BenchmarkPlanner

    raw = normalise(_config("old", ["torch:SGD"], sampler="qmc", trials=2))
    old = {k: v for k, v in raw.items() if k != "design"}
    old["tuning"] = {k: v for k, v in raw["tuning"].items() if k not in ("studies", "batch")}
    old["evaluation"] = {"seeds": 5}
    records = _drive(old, {})
    keys = sorted(records)
    assert keys == sorted([f"tune/0/{c}/{i:03d}" for c in (0, 1) for i in range(2)]
                          + [f"eval/0/{c}/{s}" for c in (0, 1) for s in range(5)])  # fmt: skip
    assert all("study" not in r.attrs for r in records.values())
    assert BenchmarkPlanner(old).eval_seed(0, 3) == BenchmarkPlanner(raw).eval_seed(0, 3)


def test_an_underpowered_verdict_design_is_refused_when_the_search_is_created() -> None:
    from nosplug.search.config import ConfigError
    from nosplug.search.config import normalise as study_normalise

    v = study_normalise({"study": {"name": "v"}})["validate"]
    assert (v["top"], v["seeds"], v["studies"], v["batch"]) == (3, 2, 0, 4)
    with pytest.raises(
        ConfigError, match=r"validate: this design .* cannot decide.*it needs 10 tuning studies"
    ):
        study_normalise({"study": {"name": "v"}, "validate": {"studies": 5}})
    study_normalise({"study": {"name": "v"}, "validate": {"studies": 5, "allow_underpowered": True}})


def test_a_stored_single_study_benchmark_keeps_its_seeds_as_units_and_says_so() -> None:
    import numpy as np

    from nosplug.benchmark import design as bdesign

    raw = normalise(_config("old", ["torch:SGD"], sampler="qmc", trials=2))
    old = {k: v for k, v in raw.items() if k != "design"}
    old["tuning"] = {k: v for k, v in raw["tuning"].items() if k not in ("studies", "batch")}
    old["evaluation"] = {"seeds": 8}
    d = bdesign.of(old)
    rng = np.random.default_rng(0)
    ref = rng.normal(1.0, 0.01, 8)
    finals = {(c, "test_benchmark:IllConditioned", s): float(v) for c, vals in
              {"torch:Adam": ref, "torch:SGD": ref + 0.1}.items() for s, v in enumerate(vals)}  # fmt: skip
    scores = bdesign.unit_scores(d, ["torch:Adam", "torch:SGD"], ["test_benchmark:IllConditioned"], finals)
    v = bdesign.replay(old, scores, n_resamples=200).verdicts["torch:SGD"]
    assert v.outcome == "worse" and "1 task × 8 seeds" in v.sentence  # a loss 0.1 higher on every seed
    assert v.sentence.endswith("one tuning study, seeds as units: its tuning luck is not in the error model")
