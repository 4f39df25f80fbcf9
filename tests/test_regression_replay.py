"""Behaviour pinned by a stored study: tests/data/regression/journal.log.

The fixture holds a tiny but complete pipeline recorded through the command line by
``tests/data/regression/record.py`` (search, its verdict, its elimination, the second round and
its verdict), written by the code as it stood before the study layer was rebuilt around study
kinds. Two checks replay it with the code as it stands now:

* **the pipeline** (fast): the same commands run again on an empty storage, every evaluation
  answered with the stored result of the same key. The planners, the queue, result reuse, the
  verdict and elimination set-up must ask for exactly the stored evaluations, with the same
  genomes, seeds and planned attributes, and end with the same trials;
* **every evaluation** (slow): each stored trial that trained something is evaluated again from
  its stored work item; status, fitness and the validation curve must match what is stored.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner

FIXTURE = Path(__file__).parent / "data" / "regression"
#: Written by whichever worker ran the trial, at whatever time: not behaviour.
VOLATILE = {"worker", "heartbeat"}


def _studies(url: str) -> dict[str, optuna.Study]:
    from nosplug.study.storage import open_storage

    store = open_storage(url, create=False)
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=store)
        for s in store.get_all_studies()
    }


def _trials(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """key -> what the trial holds (state, value, curve and user attributes but the volatile)."""
    out = {}
    for t in study.get_trials(deepcopy=False):
        attrs = {k: v for k, v in t.user_attrs.items() if k not in VOLATILE}
        out[t.user_attrs["key"]] = {
            "state": t.state.name,
            "value": t.value,
            "curve": dict(sorted(t.intermediate_values.items())),
            "attrs": attrs,
        }
    return out


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> dict[str, dict[str, dict[str, Any]]]:
    """study name -> key -> stored trial, read from a copy of the fixture."""
    folder = tmp_path_factory.mktemp("stored")
    shutil.copy(FIXTURE / "journal.log", folder / "journal.log")
    return {name: _trials(s) for name, s in _studies(f"journal:{folder / 'journal.log'}").items()}


def test_the_fixture_holds_the_whole_pipeline(stored):
    assert set(stored) == {
        "regress",
        "regress.verdict",
        "regress.elimination",
        "regress.round2",
        "regress.round2.verdict",
    }
    assert sum(len(v) for v in stored.values()) == 52
    statuses = {t["attrs"].get("status") for s in stored.values() for t in s.values()}
    assert {"complete", "pruned"} <= statuses  # gates rejected some, the rest trained


def _replaying_evaluator(stored, monkeypatch, asked: list[tuple[str, str]]) -> None:
    """Answer every evaluation with the stored result of its key, after checking that what the
    planner asked for is what was stored (genome, seed, stage, planned attributes)."""
    from nosplug.study import optuna_adapter as oa
    from nosplug.study import trials as T
    from nosplug.study.result import TrialResult
    from nosplug.study.worker import Worker

    def evaluate(self, t, lost) -> dict[str, Any]:
        name, key = self.name, t.user_attrs[T.KEY]
        asked.append((name, key))
        assert key in stored[name], f"{name}: the planner asked for {key}, which was never evaluated"
        old = stored[name][key]
        planned = {k: v for k, v in t.user_attrs.items() if k not in VOLATILE}
        for k, v in planned.items():
            was = old["attrs"].get(k)
            assert was == v, f"{name} {key}: planned {k}={v!r}, stored {was!r}"
        live = oa.live_trial(self.study, t)
        for step, value in old["curve"].items():
            live.report(value, step)
        result = {k: v for k, v in old["attrs"].items() if k not in planned}
        return TrialResult(result.pop("status"), result.pop("fitness"), result.pop("reason"), result)

    monkeypatch.setattr(Worker, "_evaluate", evaluate)


def test_the_pipeline_plans_exactly_the_stored_evaluations(stored, tmp_path, monkeypatch):
    from nosplug.cli import cli

    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURE / "search.toml", tmp_path / "search.toml")
    url = f"journal:{tmp_path / 'journal.log'}"
    asked: list[tuple[str, str]] = []
    _replaying_evaluator(stored, monkeypatch, asked)
    runner = CliRunner()
    for args in (
        ["study", "create", "search.toml", "--storage", url],
        ["study", "run", "regress", "--storage", url, "--quiet"],
        ["study", "eliminate", "regress", "--storage", url, "--quiet"],
        ["study", "next-round", "regress", "--storage", url, "--quiet"],
    ):
        result = runner.invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output

    fresh = {name: _trials(s) for name, s in _studies(url).items()}
    assert set(fresh) == set(stored)
    for name in stored:
        assert set(fresh[name]) == set(stored[name]), name
        for key, old in stored[name].items():
            new = fresh[name][key]
            assert new["state"] == old["state"], (name, key)
            assert new["value"] == old["value"], (name, key)
            assert new["curve"] == old["curve"], (name, key)
            assert new["attrs"] == old["attrs"], (name, key)
    trained = {(n, k) for n, ts in stored.items() for k, t in ts.items() if "reused_from" not in t["attrs"]}
    assert set(asked) == trained  # every evaluation asked for once, reused ones never


def _close(a: Any, b: Any, rel: float = 1e-6) -> bool:
    """Equal, floats (also inside lists and dicts) to ``rel`` (NaN equals NaN)."""
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=rel, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    return a == b


def test_close_compares_numbers_inside_structures():
    assert _close({"a": [1.0, 2.0]}, {"a": [1.0, 2.0 + 1e-9]})
    assert not _close({"a": [1.0, 2.0]}, {"a": [1.0, 2.1]})
    assert _close(float("nan"), float("nan")) and not _close(None, 0.0)


#: Wall-clock figures: not behaviour.
TIMING = {"duration", "train_seconds"}


@pytest.mark.slow
def test_every_stored_evaluation_replays(tmp_path: Path) -> None:
    """Each stored trial that trained something, evaluated again from its stored work item with
    the code as it stands: same status, same fitness and the same validation curve (to 1e-6)."""
    import torch

    shutil.copy(FIXTURE / "journal.log", tmp_path / "journal.log")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the fixture's workers trained (workers.threads = 1): same reductions
    torch.set_flush_denormal(False)  # and with subnormal numbers kept, torch's default
    try:
        replayed = _replay_every_evaluation(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert replayed == 52  # every trial of the fixture trained something


def _replay_every_evaluation(tmp_path: Path) -> int:
    import torch

    from nosplug.evaluation.pruners import GatePruner
    from nosplug.evaluation.reporter import GateReporter
    from nosplug.study import trials as T
    from nosplug.study.kinds import WorkItem, open_study

    replayed = 0
    for name, study in sorted(_studies(f"journal:{tmp_path / 'journal.log'}").items()):
        ctx = open_study(study)
        for t in T.live_trials(study.get_trials(deepcopy=False)).values():
            a = t.user_attrs
            if a.get(T.REUSED_FROM) is not None:
                continue
            item = WorkItem(t.number, a)  # evaluate reads only the planned attributes
            pruner = ctx.pruner(item) or GatePruner(-1e9, -1e9, -1e9, 0)  # a benchmark gates nothing
            reporter = GateReporter(pruner)
            result = ctx.evaluate(item, reporter, torch.device("cpu"), lambda *_: None)
            where = f"{name} {a[T.KEY]}"
            assert result.status == a[T.STATUS], where
            assert _close(result.fitness, a[T.FITNESS]), (where, result.fitness, a[T.FITNESS])
            assert _close(reporter.curve, {int(k): v for k, v in t.intermediate_values.items()}), where
            for k, v in result.attrs.items():
                if k in TIMING or k not in a:
                    continue
                if k == "curve":  # a benchmark run's per-epoch record: all but its clock
                    v = {c: xs for c, xs in v.items() if c != "seconds"}
                    stored = {c: xs for c, xs in a[k].items() if c != "seconds"}
                    assert _close(v, stored), (where, k)
                else:
                    assert _close(v, a[k]), (where, k, v, a[k])
            replayed += 1
    return replayed
