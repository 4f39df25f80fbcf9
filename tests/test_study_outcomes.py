"""What a study records and reports: a crash is an error, not a rejected candidate.

A crash (an exception in nosplug or a plugin) is retried ``workers.retries`` times and then stops
the worker with one error line and a non-zero exit, in every output mode; gate rejections,
non-finite runs and crashes are separate outcomes in ``study status`` and the Parquet export;
problems that would fail every evaluation are found before the first trial; genomes leave a
study as they were evaluated (with the integrity check's sign flip).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from study_helpers import assert_all_finished_once, nosplug, write_config

import nosplug as ns
from nosplug.search.api import create_search
from nosplug.study import studies
from nosplug.study.kinds import best_genomes, plan_state
from nosplug.study.storage import open_storage
from nosplug.study.worker import Worker

CRASHY = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from nosplug.tasks.surrogates import MLP, SurrogateSpec, options_of
    from nosplug.hookspecs import hookimpl


    class Crashy(MLP):
        '''An MLP whose forward raises as NOSPLUG_TEST_CRASH says: "always", or once per file
        named after "once:" (the file is removed by the crash).'''

        def forward(self, x):
            mode = os.environ.get("NOSPLUG_TEST_CRASH", "")
            if mode == "always":
                raise RuntimeError("simulated plugin failure")
            if mode.startswith("once:") and Path(mode[5:]).exists():
                Path(mode[5:]).unlink()
                raise RuntimeError("simulated transient failure")
            return super().forward(x)


    @hookimpl
    def nosplug_surrogates():
        return [SurrogateSpec("crashy", Crashy, "an MLP that crashes on demand", options_of(Crashy))]
    """
)

CONFIG_EVAL = 'surrogate = "crashy"\nsurrogate_options = { hidden = [8] }'


@pytest.fixture
def crashy_plugin(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that has the 'crashy' surrogate plugin installed."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "nosplug_crashy.py").write_text(CRASHY)
    dist = site / "nosplug_crashy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nosplug-crashy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[nosplug]\ncrashy = nosplug_crashy\n")
    return {"PYTHONPATH": str(site)}


def _crashy_study(tmp_path: Path, env: dict[str, str], name: str = "crashy") -> str:
    """A tiny study whose evaluations train the 'crashy' surrogate; returns its storage URL."""
    cfg = write_config(
        tmp_path / f"{name}.toml", name=name, init=2, particles=1, timesteps=1, mutations=1, extra_eval=""
    )
    text = cfg.read_text().replace("surrogate_options = { base = 4 }", CONFIG_EVAL)
    cfg.write_text(text.replace("stages = [", "stages = [] #"))
    url = f"journal:{tmp_path / 'j.log'}"
    out = nosplug("study", "create", str(cfg), "--storage", url, env=env)
    assert out.returncode == 0, out.stderr
    return url


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode",
    [[], ["--quiet"], ["--workers", "2", "--threads", "1", "--quiet"], ["--workers", "2", "--threads", "1"]],
    ids=["live", "quiet", "workers-quiet", "workers-live"],
)
def test_a_study_whose_every_evaluation_crashes_exits_nonzero_with_one_line(
    tmp_path: Path, crashy_plugin: dict[str, str], mode: list[str]
) -> None:
    env = {**crashy_plugin, "NOSPLUG_TEST_CRASH": "always"}
    url = _crashy_study(tmp_path, env)
    out = nosplug("study", "run", "crashy", "--storage", url, *mode, env=env, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    (line,) = _lines(out.stderr)
    assert line.startswith("error:") and "crashed 2 times" in line, line
    assert "RuntimeError: simulated plugin failure" in line
    study = studies.load("crashy", url)
    crashed = [t for t in study.trials if t.user_attrs.get("status") == "crashed"]
    assert crashed and all(t.state.name == "FAIL" for t in crashed)
    assert re.search(r"genome [0-9a-f]{16}", line) and any(t.user_attrs["hash"] in line for t in crashed)
    assert "Traceback" in crashed[0].user_attrs["traceback"]
    # not a result: the study is not done, and nothing was ranked
    status = nosplug("study", "status", "crashy", "--storage", url, "--json", env=env)
    info = json.loads(status.stdout)
    assert info["done"] is False and info["outcomes"].get("crashed", 0) == len(crashed)
    assert info["best_fitness"] is None and info["crashes"][-1]["error"].endswith("simulated plugin failure")


@pytest.mark.slow
def test_a_transient_crash_is_retried_and_the_study_finishes(tmp_path: Path, crashy_plugin) -> None:
    marker = tmp_path / "crash-once"
    marker.touch()
    env = {**crashy_plugin, "NOSPLUG_TEST_CRASH": f"once:{marker}"}
    url = _crashy_study(tmp_path, env)
    out = nosplug("study", "run", "crashy", "--storage", url, "--quiet", env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not marker.exists(), "the crash did happen"
    study = studies.load("crashy", url)
    assert_all_finished_once(study)
    assert plan_state(study).done
    (crashed,) = [t for t in study.trials if t.user_attrs.get("status") == "crashed"]
    retried = [
        t
        for t in study.trials
        if t.user_attrs["key"] == crashed.user_attrs["key"] and t.number > crashed.number
    ]
    assert len(retried) == 1 and retried[0].user_attrs["status"] != "crashed"
    # the export tells the crash from the results, with the error's first line
    path = tmp_path / "out" / "crashy.parquet"
    assert nosplug("study", "export", "crashy", "--storage", url, "--out", str(path), env=env).returncode == 0
    rows = pq.read_table(path).to_pylist()
    by_status = {r["status"] for r in rows}
    assert "crashed" in by_status and by_status - {"crashed"} <= {"complete", "pruned", "nonfinite"}
    (row,) = [r for r in rows if r["status"] == "crashed"]
    assert row["error"] == "RuntimeError: simulated transient failure"


def test_status_and_export_keep_pruned_nonfinite_and_crashed_apart(tmp_path: Path, monkeypatch) -> None:
    """Three evaluations, three outcomes: each is recorded as itself, in Optuna and in nosplug."""
    from nosplug.evaluation import evaluate
    from nosplug.study.export import trial_rows

    outcomes = iter(["pruned", "nonfinite", "crash", "complete", "complete", "complete", "complete"])

    def fake(genome, task, data, preset, *, reporter=None, seed=0, progress=None):
        what = next(outcomes)
        if what == "crash":
            raise ValueError("boom")
        fitness = 0.5 if what == "complete" else None
        if fitness is not None:
            reporter.report(fitness, 10)
        return evaluate.EvalResult(what, fitness, "final" if fitness else "prescreen", what)

    monkeypatch.setattr(evaluate, "evaluate_genome", fake)
    cfg = write_config(tmp_path / "o.toml", name="o", init=3, particles=1, timesteps=1, mutations=1)
    url = f"journal:{tmp_path / 'j.log'}"
    create_search(cfg, storage=url)
    Worker("o", url, threads=1, max_trials=3).run()
    study = studies.load("o", url)
    statuses = [(t.user_attrs["key"], t.user_attrs["status"], t.state.name) for t in study.trials]
    assert statuses == [  # the crash was retried (workers.retries = 1) and then completed
        ("init/0000", "pruned", "PRUNED"),
        ("init/0001", "nonfinite", "FAIL"),
        ("init/0002", "crashed", "FAIL"),
        ("init/0002", "complete", "COMPLETE"),
    ]
    rows = {r["status"]: r for r in trial_rows(study) if r["status"]}
    assert rows["crashed"]["error"] == "ValueError: boom" and rows["pruned"]["error"] is None
    from nosplug.cli import main

    assert main(["study", "status", "o", "--storage", url, "--json"]) == 0


def test_a_missing_data_folder_is_found_before_the_first_trial(tmp_path: Path, capsys) -> None:
    from nosplug.cli import main

    cfg = write_config(tmp_path / "c.toml", name="c")
    cfg.write_text(
        cfg.read_text().replace('dataset = "digits"', f'dataset = "cifar10"\nroot = "{tmp_path / "none"}"')
    )
    url = f"journal:{tmp_path / 'j.log'}"
    assert main(["study", "create", str(cfg), "--storage", url]) == 0
    capsys.readouterr()
    for extra in ([], ["--quiet"]):
        assert main(["study", "run", "c", "--storage", url, *extra]) == 2
        err = capsys.readouterr().err
        (line,) = _lines(err)
        assert "cannot run: data: CIFAR-10 not found" in line
    assert studies.load("c", url).trials == [], "no trial was started"


def test_an_unknown_surrogate_option_is_refused_by_study_create(tmp_path: Path, capsys) -> None:
    from nosplug.cli import main

    cfg = write_config(tmp_path / "c.toml", name="c")
    cfg.write_text(cfg.read_text().replace("{ base = 4 }", "{ base = 4, widht = 3 }", 1))
    url = f"journal:{tmp_path / 'j.log'}"
    assert main(["study", "create", str(cfg), "--storage", url]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert "evaluation.init" in line and "widht" in line
    assert not (tmp_path / "j.log").exists() or studies.study_names(open_storage(url)) == []


def test_export_to_an_unwritable_path_is_one_line_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    from nosplug.cli import main

    cfg = write_config(tmp_path / "e.toml", name="e")
    url = f"journal:{tmp_path / 'j.log'}"
    assert main(["study", "create", str(cfg), "--storage", url]) == 0
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    try:
        targets = [a_file / "out.parquet", tmp_path / "dir-is-here"]
        (tmp_path / "dir-is-here").mkdir()
        if os.geteuid() != 0:  # root writes anywhere, so a read-only folder proves nothing
            targets.append(locked / "new" / "out.parquet")
        before = sorted(str(p) for p in tmp_path.rglob("*"))
        for target in targets:
            capsys.readouterr()
            assert main(["study", "export", "e", "--storage", url, "--out", str(target)]) == 2
            (line,) = _lines(capsys.readouterr().err)
            assert line.startswith("error: cannot write") and str(target) in line
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    finally:
        locked.chmod(0o700)


def test_export_defaults_to_the_study_name(tmp_path: Path, monkeypatch) -> None:
    from nosplug.cli import main

    cfg = write_config(tmp_path / "e.toml", name="e")
    url = f"journal:{tmp_path / 'j.log'}"
    assert main(["study", "create", str(cfg), "--storage", url]) == 0
    monkeypatch.chdir(tmp_path)
    assert main(["study", "export", "e", "--storage", url]) == 0
    assert (tmp_path / "e.parquet").is_file()


# ----------------------------------------------------------------------------- the sign flip
FLIP_ONLY = {  # plain gradient *ascent*: passes the integrity check only with its sign flipped
    "format": "nosplug-genome",
    "version": 1,
    "flip": True,
    "nodes": [{"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["g"]}],
}


@pytest.mark.slow
def test_a_flip_only_genome_leaves_the_study_with_its_flip(tmp_path: Path, monkeypatch) -> None:
    from nosplug.amalgamation.teachers import resolve_teacher
    from nosplug.evaluation.integrity import integrity_check

    genome = ns.Genome.from_dict(FLIP_ONLY)
    check = integrity_check(genome)
    assert check.passed and check.flip, "the test genome must pass only flipped"
    path = tmp_path / "ascent.json"
    path.write_text(genome.to_json())
    cfg = write_config(
        tmp_path / "f.toml",
        name="f",
        timesteps=1,
        mutations=1,
        extra_ga=f'initial_genomes = ["{path}"]',
        extra_eval="prescreen_gate = 0.0\nsweep_gate = 0.0\nfinal_floor = 0.0",  # a fitness, whatever it is
    )
    url = f"journal:{tmp_path / 'j.log'}"
    create_search(cfg, storage=url)
    Worker("f", url, threads=1).run()
    study = studies.load("f", url)
    start = next(t for t in study.trials if t.user_attrs["key"] == "p000/start")
    assert start.user_attrs["flip"] is True and start.state.name == "COMPLETE"

    out = nosplug("study", "best", "f", "--storage", url, "--json", "-n", "20")
    assert out.returncode == 0, out.stderr
    handed = [json.loads(line) for line in out.stdout.splitlines()]
    mine = next(h for h in handed if h["key"] == "p000/start")
    assert mine["genome"]["flip"] is False and mine["flipped_by_integrity_check"] is True
    api = dict((g.canonical_hash(), g) for g, _f in best_genomes("f", url, n=20))
    assert api[mine["hash"]].flip is False
    monkeypatch.setenv("NOSPLUG_STORAGE", url)
    teacher = resolve_teacher(f"study:f#{handed.index(mine) + 1}")
    taught = teacher.init(torch.zeros(2))["opt"].genome
    # what leaves the study trains downhill: plain gradient descent on a quadratic
    for g in (ns.Genome.from_dict(mine["genome"]), api[mine["hash"]], taught):
        x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
        opt = ns.GraphOptimizer([x], g, lr=0.1)
        for _ in range(20):
            opt.zero_grad()
            x.pow(2).sum().backward()
            opt.step()
        assert x.detach().pow(2).sum() < 0.1 * 13


def test_optuna_internals_are_used_in_one_module_only() -> None:
    root = Path(ns.__file__).parent
    users = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if re.search(r"\._storage\b|\._trial_id\b|\._study_id\b", p.read_text())
    )
    assert users == ["study/optuna_adapter.py"]


def test_the_primitive_registry_does_not_import_the_zoo() -> None:
    code = "import sys, nosplug.primitives.registry; print('nosplug.zoo' in sys.modules)"
    out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    text = (Path(ns.__file__).parent / "primitives" / "registry.py").read_text()
    assert not re.search(r"(from|import) nosplug\.zoo\b", text), "no import cycle registry -> zoo"


def test_a_worker_whose_heartbeats_fail_stops_working_on_the_trial(tmp_path: Path, monkeypatch) -> None:
    """Heartbeats that cannot be written for a lease mean the trial will be handed out again:
    the worker gives it up at the next epoch boundary instead of finishing it in vain."""
    import threading
    import time

    from nosplug.evaluation import evaluate
    from nosplug.study import optuna_adapter

    calls = {"evaluations": 0}

    def slow(genome, task, data, preset, *, reporter=None, seed=0, progress=None):
        calls["evaluations"] += 1
        for _ in range(100 if calls["evaluations"] == 1 else 1):  # the first one runs ~20 s
            time.sleep(0.2)
            progress("final_epoch", {})
        reporter.report(0.5, 10)
        return evaluate.EvalResult("complete", 0.5, "final", "completed")

    real = optuna_adapter.set_attr

    def flaky(study, trial, key, value):  # the heartbeat thread's writes fail during the first trial
        beat = threading.current_thread() is not threading.main_thread()
        if key == "heartbeat" and beat and calls["evaluations"] == 1:
            raise ConnectionError("storage unreachable")
        real(study, trial, key, value)

    monkeypatch.setattr(evaluate, "evaluate_genome", slow)
    monkeypatch.setattr(optuna_adapter, "set_attr", flaky)
    cfg = write_config(tmp_path / "h.toml", name="h", init=2, particles=1, timesteps=1, mutations=1)
    url = f"journal:{tmp_path / 'j.log'}"
    create_search(cfg, storage=url)
    started = time.perf_counter()
    summary = Worker("h", url, threads=1).run()
    assert summary.lost == 1 and summary.done
    assert time.perf_counter() - started < 15, "the lost evaluation was not run to its end"
    first, *rest = studies.load("h", url).trials
    assert first.user_attrs["key"] == "init/0000" and first.state.name == "FAIL"
    assert first.user_attrs["abandoned"] and "given up by its worker" in first.user_attrs["reason"]
    assert any(t.user_attrs["key"] == "init/0000" and t.state.name == "COMPLETE" for t in rest)
