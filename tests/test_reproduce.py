"""The reproduction script runs end to end on a tiny budget and its report comes from its results:
the NOS tables are the stored benchmark's numbers and its verdicts are the harness's."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reproduce.py"
ARGS = ["--budget", "smoke", "--optimizers", "opt6,a1,lr7,adam-paper"]
CONTENDERS = {"torch:Adam", "opt6", "a1", "lr7", "adam-paper"}
LABEL = "tuned torch:Adam"


def _run(out: Path, timeout: int) -> subprocess.CompletedProcess:
    args = [*ARGS, "--out", str(out), "--work", str(out / "work")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=out, env=env)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repro")
    run = _run(out, 900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert re.search(r"^\[ *\d+s\] charlm opt6 seed 3: test [0-9.]+ .*runs, about", run.stdout, re.M), (
        "one progress line per finished run"
    )
    return out


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _stored(out: Path, name: str):
    """The benchmark as its Optuna study holds it, read back by the harness."""
    from nosplug.benchmark.results import collect
    from nosplug.study.studies import load

    return collect(load(name, f"journal:{out / 'work' / 'nos-benchmarks.log'}"))


def _finals(res, c: str, task: str) -> list[float]:
    """A contender's final test values on a task, by seed (the values the harness pools)."""
    runs = sorted((r for r in res.runs if r.contender == c and r.task == task), key=lambda r: r.seed_index)
    return [r.final_test for r in runs]


def _units(res, c: str, task: str):
    """The same values as the paired units: tuning studies x their seeds."""
    import numpy as np

    return np.asarray(_finals(res, c, task)).reshape(res.design.studies, res.design.seeds)


def _section(md: str, task: str) -> str:
    return md.split(f"\n### {task}\n", 1)[1].split("\n### ", 1)[0]


@pytest.mark.slow
def test_the_nos_tables_are_the_stored_benchmarks_numbers(smoke: Path) -> None:
    results, md = _results(smoke), (smoke / "reproduction.md").read_text()
    [name] = results["nos"]["order"]
    res = _stored(smoke, name)
    assert res.done and set(res.contenders) == CONTENDERS
    assert {t["label"] for t in res.tasks} >= {"mnist5k-convnet", "charlm", "diabetes-mlp"}
    for entry in res.tasks:
        task, section = entry["label"], _section(md, entry["label"])
        tried = set()
        for c in res.contenders:
            s = res.summaries[(c, task)]
            row = re.search(
                rf"^\| \d+ \| `{re.escape(c)}` \| \w+ \| ([0-9.e+-]+) \| [0-9.]+ \| ([0-9.]+) ± ([0-9.]+) \|",
                section,
                re.M,
            )
            assert row is not None, f"no row for {c} on {task}"
            assert float(row.group(1)) == pytest.approx(s.tuned["lr"], rel=5e-3)
            assert float(row.group(2)) == pytest.approx(s.final_test.mean, abs=6e-5)
            assert float(row.group(3)) == pytest.approx(s.final_test.std, abs=6e-5)
            finals = _finals(res, c, task)
            assert len(finals) == res.design.studies * res.design.seeds == 4  # 2 studies x 2 seeds
            assert statistics.fmean(finals) == pytest.approx(s.final_test.mean)
            assert results["nos"]["benchmarks"][name]["scores"][c][task] == finals
            assert s.tuning_trials == 2
        # tuning parity: every contender of a task tried the same quasi-random points
        study_trials = _tuning_points(smoke, name, task)
        for c in res.contenders:
            tried.add(tuple(study_trials[c]))
        assert len(tried) == 1, tried
        points = tried.pop()  # study 0's 2 points, then study 1's (each study shifted on its own)
        for study in (points[:2], points[2:]):
            lrs = sorted(math.log10(p) for p in study)
            assert lrs[1] - lrs[0] == pytest.approx(3.0, abs=1e-6), "2 points: half the six decades apart"
    png = smoke / "reproduction-charlm.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def _tuning_points(out: Path, name: str, task: str) -> dict[str, list[float]]:
    from nosplug.study.studies import load

    study = load(name, f"journal:{out / 'work' / 'nos-benchmarks.log'}")
    points: dict[str, list[float]] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.user_attrs.get("key", "")):
        a = t.user_attrs
        if a.get("phase") == "tune" and a.get("task") == task:
            points.setdefault(a["contender"], []).append(a["params"]["lr"])
    return points


@pytest.mark.slow
def test_every_nos_verdict_sentence_is_the_harness_s(smoke: Path) -> None:
    """Recomputed from the stored runs with the harness's statistics, Holm within each claim's family."""
    from nosplug import stats

    results, md = _results(smoke), (smoke / "reproduction.md").read_text()
    res = _stored(smoke, results["nos"]["order"][0])
    directions = {t["label"]: t["direction"] for t in res.tasks}
    family_verdicts = {}
    for family in (["opt6"], ["a1"], ["lr7"], ["adam-paper"]):
        scores = {c: {t: _units(res, c, t) for t in directions} for c in ["torch:Adam", *family]}
        note = res.design.note()  # the smoke budget's design is underpowered, and says so
        family_verdicts.update(
            stats.compare(scores, "torch:Adam", directions, reference_label=LABEL, note=note)
        )
    for c, v in family_verdicts.items():
        # the family's verdict, and in the 'all' column the harness's own (Holm over every contender)
        assert f"| `{c}` | {v.outcome} | {res.verdicts[c].outcome} | {v.sentence} |" in md, c
        assert res.verdicts[c].comparison.test.p_corrected >= v.comparison.test.p_corrected
    claims = re.findall(
        r"^- \*\*[^*]+\*\*: (supported|contradicted|not detectable at this scale)\. Of 1 compared "
        r"with tuned Adam .*; the highest IQM: (\w+), (.+)$",
        md,
        re.M,
    )
    assert len(claims) == 3, "one computed verdict per NOS claim: Opt, A, LR"
    for verdict, name, sentence in claims:  # a family of one: its member decides
        v = family_verdicts[name]
        assert sentence == v.sentence
        rule = {"better": "supported", "worse": "contradicted"}
        assert verdict == rule.get(v.outcome, "not detectable at this scale")
    # A and LR were evolved from the search space's Adam: each is also compared with that control
    controls = re.findall(
        r"^  - against the control `adam-paper` .*; the highest IQM: (\w+), (.+)$", md, re.M
    )
    assert [name for name, _ in controls] == ["a1", "lr7"]
    for name, sentence in controls:
        scores = {c: {t: _units(res, c, t) for t in directions} for c in ["adam-paper", name]}
        v = stats.compare(scores, "adam-paper", directions, reference_label="tuned adam-paper",
                          note=res.design.note())[name]  # fmt: skip
        assert sentence == v.sentence


@pytest.mark.slow
def test_digits_joins_only_when_tuned_adam_leaves_errors(smoke: Path) -> None:
    results, md = _results(smoke), (smoke / "reproduction.md").read_text()
    check = results["nos"]["check"]
    res = _stored(smoke, check["benchmark"])
    assert [t["label"] for t in res.tasks] == ["digits-convnet"] and set(res.contenders) == CONTENDERS
    adam = res.summaries[("torch:Adam", "digits-convnet")].final_test.mean
    errors = (1 - adam) * check["n_test"]
    assert check["reference_accuracy"] == pytest.approx(adam)
    assert check["discriminates"] == (errors >= 2)
    assert f"tuned Adam's mean test accuracy is {adam:.4f}, {errors:.1f} of {check['n_test']} test" in md
    main = _stored(smoke, results["nos"]["order"][0])
    assert ("digits-convnet" in {t["label"] for t in main.tasks}) == check["discriminates"]


@pytest.mark.slow
def test_amalgamation_table_and_verdicts(smoke: Path) -> None:
    md = (smoke / "reproduction.md").read_text()
    results = _results(smoke)
    rows = results["amalgamation"]["rows"]
    methods = {"mean", "minmax", "minmax-plain", "choice-small", "choice-large", "original", "rnnprop"}
    assert {r["method"] for r in rows if r["kind"] == "student"} == methods
    assert len(rows) == 7 * 2 * 2 + 2 * 2, "7 methods x 2 replicates x 2 runs + 2 teachers x 2 runs"
    for method in methods:  # the table's mean is the rows' (balanced replicates)
        row = re.search(rf"^\| digits_mlp \| {method} \| 2 × 2 \| ([+-][0-9.]+) \[", md, re.M)
        assert row is not None, method
        values = [r["best_log_val"] for r in rows if r["method"] == method]
        assert float(row.group(1)) == pytest.approx(statistics.fmean(values), abs=1e-3)
    verdicts = re.findall(
        r"^- \*\*.+\*\*: (supported|contradicted|not detectable at this scale|not run)\.", md, re.M
    )
    assert len(verdicts) >= 4, "one computed verdict per claim of the paper"


@pytest.mark.slow
def test_a_rerun_resumes_without_training_again(smoke: Path) -> None:
    """From results.json (nothing opened), then from the Optuna studies alone (nothing trained)."""
    from nosplug.study.studies import load

    before = _results(smoke)
    names = [*before["nos"]["order"], before["nos"]["check"]["benchmark"]]
    url = f"journal:{smoke / 'work' / 'nos-benchmarks.log'}"
    counts = {n: len(load(n, url).trials) for n in names}
    run = _run(smoke, 300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "runs, about" not in run.stdout, run.stdout
    assert _results(smoke)["nos"] == before["nos"]
    data = _results(smoke)
    data["nos"]["benchmarks"] = {}  # forget the records: the studies in --work are the resume point
    (smoke / "results.json").write_text(json.dumps(data))
    run = _run(smoke, 300)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "runs, about" not in run.stdout, run.stdout
    assert {n: len(load(n, url).trials) for n in names} == counts
    after = _results(smoke)["nos"]["benchmarks"]
    for n in names:
        for key in ("summaries", "scores", "families", "verdicts_all", "targets"):
            assert after[n][key] == before["nos"]["benchmarks"][n][key], (n, key)
