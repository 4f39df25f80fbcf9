"""Studies end to end: CLI, storage as the truth, several workers, SIGKILL and resume, Parquet."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from study_helpers import assert_all_finished_once, nosplug, pg_bin, postgres_server, signature, write_config

from nosplug.search import ranking
from nosplug.search.api import create_search
from nosplug.search.config import SearchConfig
from nosplug.study import studies
from nosplug.study.export import SCHEMA
from nosplug.study.kinds import plan_state
from nosplug.study.locks import planning_lock
from nosplug.study.worker import Worker


def journal(tmp_path: Path, name: str = "j.log") -> str:
    return f"journal:{tmp_path / name}"


def test_study_cli_end_to_end(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "tiny.toml")
    url = journal(tmp_path)
    out = nosplug("study", "create", str(cfg), "--storage", url)
    assert out.returncode == 0, out.stderr
    out = nosplug("study", "run", "tiny", "--storage", url, "--quiet")
    assert out.returncode == 0, out.stderr
    status = json.loads(nosplug("study", "status", "tiny", "--storage", url, "--json").stdout)
    assert status["done"] is True and status["particles_done"] == 2
    best = [
        json.loads(line)
        for line in nosplug("study", "best", "tiny", "--storage", url, "--json").stdout.splitlines()
    ]
    assert best and all(b["fitness"] > 0 for b in best)
    assert [b["fitness"] for b in best] == sorted((b["fitness"] for b in best), reverse=True)
    assert len({b["hash"] for b in best}) == len(best)
    table = nosplug("study", "best", "tiny", "--storage", url)
    assert table.returncode == 0 and "fitness" in table.stdout
    # the storage alone describes the study: plain optuna (no nosplug import) reads it
    code = (
        "import sys, optuna\n"
        "from optuna.storages import JournalStorage\n"
        "from optuna.storages.journal import JournalFileBackend\n"
        f"backend = JournalFileBackend({str(tmp_path / 'j.log')!r})\n"
        "s = optuna.load_study(study_name='tiny', storage=JournalStorage(backend))\n"
        "assert 'nosplug' not in sys.modules\n"
        "print(len(s.trials), s.best_value, sorted(s.trials[0].user_attrs)[:3])\n"
    )
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    study = studies.load("tiny", url)
    assert int(plain.stdout.split()[0]) == len(study.trials)
    assert_all_finished_once(study)
    # each fitness is what its stored validation curve (the intermediate values) implies
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert complete
    for t in complete:
        assert t.intermediate_values and t.value == max(t.intermediate_values.values())
        assert len(t.user_attrs["train_curve"]) == len(t.intermediate_values)
    # export: one row per trial, the documented columns, readable by pyarrow/pandas/polars/duckdb
    pq_path = tmp_path / "tiny.parquet"
    out = nosplug("study", "export", "tiny", "--storage", url, "--out", str(pq_path))
    assert out.returncode == 0, out.stderr
    table = pq.read_table(pq_path)
    assert table.num_rows == len(study.trials)
    assert table.schema.names == SCHEMA.names
    docs = (Path(__file__).parents[1] / "docs" / "parquet.md").read_text()
    assert all(f"`{c}`" in docs for c in SCHEMA.names), "every column is documented"
    import duckdb
    import pandas as pd
    import polars as pl

    assert len(pd.read_parquet(pq_path)) == table.num_rows
    assert pl.read_parquet(pq_path).height == table.num_rows
    n = duckdb.sql(f"select count(*) from '{pq_path}' where state = 'COMPLETE'").fetchall()[0][0]
    assert n == sum(t.state.name == "COMPLETE" for t in study.trials)
    # elimination: stage results land in their own study, one trial per candidate and repeat
    out = nosplug("study", "eliminate", "tiny", "--storage", url, "--quiet")
    assert out.returncode == 0, out.stderr
    el = studies.load("tiny.elimination", url)
    assert_all_finished_once(el)
    # the candidates are the study's best (top = 3) under the ranking rule, each run twice
    candidates = ranking.best(studies.load("tiny", url), 3)
    assert 0 < len(candidates) <= 3 and len(el.trials) == len(candidates) * 2
    assert plan_state(el).progress["winners"]


def test_a_genome_met_again_is_trained_on_fresh_seeds_and_pooled(tmp_path: Path) -> None:
    """Re-encountering a genome adds evidence instead of replaying one draw (issue: frozen noise)."""
    cfg = write_config(
        tmp_path / "dup.toml",
        name="dup",
        timesteps=1,
        mutations=1,
        extra_ga='initial_genomes = ["adam", "adam"]',
        extra_eval="seeds = 2\nprescreen_gate = 0.0\nsweep_gate = 0.0\nfinal_floor = 0.0",
    )
    url = journal(tmp_path)
    create_search(cfg, storage=url)
    summary = Worker("dup", url, threads=1).run()
    study = studies.load("dup", url)
    starts = {t.user_attrs["key"]: t for t in study.trials if t.user_attrs["key"].endswith("/start")}
    a, b = starts["p000/start"].user_attrs, starts["p001/start"].user_attrs
    assert a["hash"] == b["hash"] and a["seed"] != b["seed"] and "reused_from" not in b
    assert summary.reused == 0
    # each evaluation trained 2 seeds; its stored curve is their mean curve and its fitness the
    # best value of that curve, so a trial's value is what its curve implies
    for t in (starts["p000/start"], starts["p001/start"]):
        assert len(t.user_attrs["seed_fitness"]) == 2
        assert t.value == t.user_attrs["fitness"] == max(t.intermediate_values.values())
    # study best pools every seed the genome was trained on
    adam = next(t for t in ranking.best(study, 10) if t.user_attrs["hash"] == a["hash"])
    assert adam.user_attrs["fitness_seeds"] == 4
    assert adam.user_attrs["fitness"] == pytest.approx((a["fitness"] + b["fitness"]) / 2)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("version = 1\n[study]\nname = 'x'\n[ga]\nparticles = 'many'\n", "ga.particles: expected int"),
        ("version = 1\n[study]\nname = 'x'\n[gaa]\n", "gaa: unknown section"),
        ("version = 1\n[study]\nname = 'x'\n[ga]\nparticlez = 3\n", "ga.particlez: unknown key"),
        (
            "version = 1\n[study]\nname = 'x'\n[space]\noperands = ['g', 'nope']\n",
            "space.operands: unknown operand 'nope'",
        ),
        (
            "version = 1\n[study]\nname = 'x'\n[evaluation.evolution]\npreset = 'fast'\n",
            "evaluation.evolution.preset",
        ),
        ("version = 1\n[study]\nname = 'x'\n[ga]\nparticles = 9\ninitial_population = 4\n", "ga.particles"),
        ("version = 1\n[study\nname = 'x'\n", "not valid TOML"),
        ("version = 1\n[study]\nname = 'x'\n[ga]\ninitial_genomes = ['adamm']\n", "ga.initial_genomes[0]"),
    ],
)
def test_bad_configs_give_one_clear_line_and_touch_nothing(
    tmp_path: Path, config_text: str, message: str
) -> None:
    url = journal(tmp_path)
    good = write_config(tmp_path / "good.toml", name="kept")
    assert nosplug("study", "create", str(good), "--storage", url).returncode == 0
    before = _file_digest(tmp_path / "j.log")
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text)
    out = nosplug("study", "create", str(bad), "--storage", url)
    assert out.returncode != 0
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert _file_digest(tmp_path / "j.log") == before


def test_missing_study_unreachable_storage_and_overwrite_are_refused(tmp_path: Path) -> None:
    url = journal(tmp_path)
    cfg = write_config(tmp_path / "tiny.toml")
    assert nosplug("study", "create", str(cfg), "--storage", url).returncode == 0
    before = _file_digest(tmp_path / "j.log")
    cases = [
        (("study", "run", "nope", "--storage", url), "no study named 'nope'"),
        (("study", "status", "nope", "--storage", url), "no study named 'nope'"),
        (("study", "create", str(cfg), "--storage", url), "already exists"),
        (
            ("study", "run", "tiny", "--storage", "postgresql+psycopg2://nobody@127.0.0.1:9/none"),
            "cannot open storage",
        ),
        (("study", "run", "tiny", "--storage", f"journal:{tmp_path / 'absent.log'}"), "does not exist"),
    ]
    for args, message in cases:
        out = nosplug(*args)
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        assert out.returncode != 0 and len(lines) == 1 and message in lines[0], (args, out.stderr)
    assert _file_digest(tmp_path / "j.log") == before
    assert not (tmp_path / "absent.log").exists()


def test_two_local_workers_match_one_worker(tmp_path: Path) -> None:
    """Any number of workers: every evaluation once, and the same trial set as a single worker."""
    cfg = write_config(tmp_path / "w.toml", name="w", init=4, particles=2, timesteps=2, mutations=2)
    one, two = journal(tmp_path, "one.log"), journal(tmp_path, "two.log")
    for url in (one, two):
        create_search(cfg, storage=url)
    Worker("w", one, threads=1).run()
    out = nosplug("study", "run", "w", "--storage", two, "--workers", "2", "--threads", "1", "--quiet")
    assert out.returncode == 0, out.stderr
    a, b = studies.load("w", one), studies.load("w", two)
    assert_all_finished_once(b)
    assert signature(a) == signature(b)
    assert len({t.user_attrs.get("worker") for t in b.trials if t.user_attrs.get("reused_from") is None}) == 2


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    slower = "sweep_steps = 40\nfinal_steps = 120\nschedule_steps = 160"
    cfg = write_config(
        tmp_path / "k.toml", name="k", init=4, particles=2, timesteps=2, mutations=2, extra_eval=slower
    )
    ref, killed = journal(tmp_path, "ref.log"), journal(tmp_path, "killed.log")
    for url in (ref, killed):
        create_search(cfg, storage=url)
    Worker("k", ref, threads=1).run()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nosplug",
            "study",
            "run",
            "k",
            "--storage",
            killed,
            "--threads",
            "1",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    study = studies.load("k", killed)
    deadline = time.time() + 300
    victim = None
    while time.time() < deadline and proc.poll() is None:
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state.is_finished() for t in trials)
        running = [t for t in trials if t.state.name == "RUNNING"]
        if done >= 3 and running:
            victim = running[0].user_attrs["key"]
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.stderr is not None
    assert victim is not None, "the worker finished before it could be killed: " + proc.stderr.read().decode()
    assert proc.returncode == -signal.SIGKILL
    summary = Worker("k", killed, threads=1).run()
    assert summary.done and summary.reclaimed == 1
    study = studies.load("k", killed)
    abandoned = [t for t in study.trials if t.user_attrs.get("abandoned")]
    assert [t.user_attrs["key"] for t in abandoned] == [victim]
    assert signature(study) == signature(studies.load("k", ref))


def test_a_trial_finishing_between_planning_and_popping_is_not_a_stall(tmp_path: Path) -> None:
    """Regression (seen with two workers on PostgreSQL): the plan is taken under the lock, another
    worker finishes the last running trial just after, and this worker then sees no trial to run
    and none running. That is a stale plan, not a stuck study: it must plan again, not give up."""
    cfg = write_config(tmp_path / "race.toml", name="race", init=4, particles=2, timesteps=1, mutations=2)
    url = journal(tmp_path)
    create_search(cfg, storage=url)
    other = Worker("race", url, threads=1)
    with planning_lock(url, "race"):
        trials = other.study.get_trials(deepcopy=False)
        other._enqueue(other.ctx.planner.plan(other._records(trials)), trials)
    taken = list(iter(other._pop, None))  # the other worker holds every queued trial
    assert taken
    me = Worker("race", url, threads=1, max_trials=1)
    real_pop = me._pop

    def pop_after_the_other_worker_finished():
        picked = real_pop()
        while taken:  # ... and finishes them right after this worker planned
            other._run_trial(taken.pop())
        return picked

    me._pop = pop_after_the_other_worker_finished
    summary = me.run()
    assert summary.evaluated == 1, "planned again and evaluated the next trial"


@pytest.mark.postgres
@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (.ci/run installs it)")
def test_two_workers_on_postgresql_run_every_evaluation_exactly_once(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "pg.toml", name="pg", init=4, particles=2, timesteps=2, mutations=2)
    with postgres_server() as url:
        assert nosplug("study", "create", str(cfg), "--storage", url).returncode == 0
        out = nosplug("study", "run", "pg", "--storage", url, "--workers", "2", "--threads", "1", "--quiet")
        assert out.returncode == 0, out.stderr
        study = optuna.load_study(study_name="pg", storage=url)
        assert_all_finished_once(study)
        assert not any(t.user_attrs.get("abandoned") for t in study.trials)
        plan = plan_state(study)
        assert plan.done and not plan.new
        cfg_obj = SearchConfig.from_file(cfg)
        assert len(signature(study)) >= cfg_obj.ga.expected_evaluations
        workers = {
            t.user_attrs.get("worker") for t in study.trials if t.user_attrs.get("reused_from") is None
        }
        assert len(workers) == 2
