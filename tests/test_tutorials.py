"""The tutorials run on their small budgets and print what they promise (tutorials/README.md)."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import optuna
import pyarrow.parquet as pq
import pytest
from study_helpers import assert_all_finished_once, pg_bin, postgres_server

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
SCRIPTS = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))


def run_tutorial(
    script: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run a tutorial from an empty current folder with a fresh --workdir; return (result, workdir)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(parents=True)
    work = tmp_path / "work"
    base = {k: v for k, v in os.environ.items() if k not in ("NOSPLUG_STORAGE", "NOSPLUG_TUTORIAL_FULL")}
    out = subprocess.run(
        [sys.executable, str(TUTORIALS / script), "--workdir", str(work), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        timeout=timeout,
    )
    assert not any(cwd.iterdir()), f"{script} wrote into the current folder: {list(cwd.iterdir())}"
    return out, work


def summary(out: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The key=value pairs of the `summary:` line every tutorial ends with."""
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("summary: ")]
    assert lines, out.stdout[-3000:]
    return dict(pair.split("=", 1) for pair in lines[-1].removeprefix("summary: ").split())


# ----------------------------------------------------------------------------------- structure
def _helper(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tutorials/_tutorial.py, imported for this test only."""
    spec = importlib.util.spec_from_file_location("_tutorial", TUTORIALS / "_tutorial.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_tutorial", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_is_documented_and_listed() -> None:
    assert SCRIPTS == [
        "01_search_mnist5k.py",
        "02_use_a_discovered_optimizer.py",
        "03_write_an_operand_plugin.py",
        "04_amalgamate_zoo_teachers.py",
        "05_two_workers_on_postgresql.py",
        "06_amalgamate_a_search.py",
    ]
    readme = (TUTORIALS / "README.md").read_text()
    for script in SCRIPTS:
        assert f"({script})" in readme, f"{script} is not in tutorials/README.md"
        doc = ast.get_docstring(ast.parse((TUTORIALS / script).read_text()))
        assert doc and doc.startswith("Tutorial ") and "**Goal.**" in doc, script
        assert "--full" in doc and "--workdir" in doc, f"{script}: the docstring says how to run it"


def test_options_full_flag_env_var_and_fresh_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = _helper(monkeypatch)
    monkeypatch.delenv(helper.FULL_ENV, raising=False)
    small = helper.parse_args("Doc.", "xx", ["--workdir", str(tmp_path / "a")])
    assert not small.full and small.workdir == (tmp_path / "a").resolve() and small.workdir.is_dir()
    assert small.env == {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    assert helper.parse_args("Doc.", "xx", ["--workdir", str(tmp_path / "b"), "--full"]).full
    monkeypatch.setenv(helper.FULL_ENV, "1")
    full = helper.parse_args("Doc.", "xx", ["--workdir", str(tmp_path / "c")])
    assert full.full and full.env == small.env
    default = helper.parse_args("Doc.", "xx", [])  # a fresh temporary folder
    assert default.workdir.is_dir() and not any(default.workdir.iterdir())
    default.workdir.rmdir()
    (tmp_path / "a" / "something").write_text("x")
    with pytest.raises(SystemExit) as exc:
        helper.parse_args("Doc.", "xx", ["--workdir", str(tmp_path / "a")])
    assert exc.value.code == 2
    assert helper.mask_url("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert helper.mask_url("postgresql+psycopg2://me@db/x") == "postgresql+psycopg2://me@db/x"


# ----------------------------------------------------------------------------------- tutorials
@pytest.mark.slow
def test_01_search_resumes_and_exports_one_row_per_trial(tmp_path: Path) -> None:
    out, work = run_tutorial("01_search_mnist5k.py", tmp_path)
    s = summary(out)
    assert float(s["best_fitness"]) > 0.3, s
    assert int(s["parquet_rows"]) == int(s["trials"]) >= 12, s
    assert s["rerun_evaluated"] == "0" and s["done"] == "True", s
    assert re.search(r"evaluations per run: 4 \(interrupted\), \d+ \(resumed\), 0 \(rerun\)", out.stdout)
    assert "after the interruption: done=False" in out.stdout
    for command in ("study create", "study run", "study status", "study best", "study export"):
        assert f"$ nosplug {command} " in out.stdout, command
    table = pq.read_table(work / "trials.parquet")
    assert table.num_rows == int(s["trials"])
    assert max(f for f in table["fitness"].to_pylist() if f is not None) == pytest.approx(
        float(s["best_fitness"])
    )
    assert (work / "best-genome.json").is_file() and (work / "journal.log").is_file()


def test_02_discovered_optimizer_in_a_plain_loop(tmp_path: Path) -> None:
    out, work = run_tutorial("02_use_a_discovered_optimizer.py", tmp_path)
    s = summary(out)
    text = out.stdout
    assert "opt6: [erfc(erfc(a4))](0.3*g + 0.7*v_hat)" in text, "prints opt6's formula"
    accuracies = dict(re.findall(r"  (opt6|adam): ([0-9.]+) \(last epoch", text))
    assert float(accuracies["opt6"]) > 0.85 and float(accuracies["adam"]) > 0.85, accuracies
    assert s["resume_identical"] == "True"
    assert "resumed weights identical to the uninterrupted run: True" in text
    assert (work / "opt6-checkpoint.pt").is_file()
    assert "loading adam's state into opt6 is refused: optimizer state was saved for genome" in text
    assert re.search(r'nonfinite="raise", step \d+: NonFiniteUpdateError', text)
    assert "weights unchanged by the failed step: True" in text
    skipped = re.search(
        r'nonfinite="skip": (\d+) of \d+ steps skipped in one epoch; all weights finite: True', text
    )
    assert skipped and int(skipped.group(1)) > 0, text[-2000:]


@pytest.mark.slow
def test_03_operand_plugin_installs_lists_evaluates_and_disables(tmp_path: Path) -> None:
    out, work = run_tutorial("03_write_an_operand_plugin.py", tmp_path)
    s = summary(out)
    assert s["listed"] == "lookahead" and s["operands"] == "nag_g" and s["families"] == "lookahead", s
    assert float(s["nag_fitness"]) > 0.5 and float(s["family_fitness"]) > 0.3, s
    assert s["disabled_exit"] == "2"
    text = out.stdout
    assert re.search(r"lookahead\s+│ 0\.1\.0\s+│ module nosplug_lookahead\s+│\n.*│ 1 operand: nag_g", text), (
        "plugins list shows it"
    )
    assert "(g + 0.95*b_0.95) / (sqrt(|s_hat|) + 1e-8)" in text, "genome show renders the family operand"
    assert "equal: True" in text, "the nag_g genome is torch's Nesterov SGD"
    assert "error: " in text and "'nag_g'" in text and "registered operand" in text
    assert (work / "site" / "nosplug_lookahead" / "__init__.py").is_file()


@pytest.mark.slow
def test_04_amalgamation_exports_a_student_that_trains_a_model(tmp_path: Path) -> None:
    out, work = run_tutorial("04_amalgamate_zoo_teachers.py", tmp_path)
    s = summary(out)
    assert int(s["periods"]) >= 2, s
    assert int(s["evaluation_rows"]) == 2 * 5, "2 problems x (student + 4 teachers) x 1 run"
    assert s["finite"] == "True" and float(s["student_val_loss"]) < 2.0, s
    for teacher in ("genome:adam(lr=0.005)", "genome:opt6(lr=0.5)", "rmsprop", "torch:Adagrad(lr=0.05)"):
        assert teacher in out.stdout, teacher
    assert (work / "my_optimizer.pt").is_file() and (work / "my_optimizer.json").is_file()
    assert (work / "nosplug-amalgamation" / "zoo-teachers" / "student.pt").is_file()
    assert "StudentOptimizer: 5141 learned weights" in out.stdout


def test_05_without_storage_explains_and_exits_2(tmp_path: Path) -> None:
    out, work = run_tutorial("05_two_workers_on_postgresql.py", tmp_path, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "--storage" in out.stderr and "NOSPLUG_STORAGE" in out.stderr
    assert "apt-get install postgresql" in out.stderr and "nosplug[postgres]" in out.stderr
    assert not work.exists(), "nothing is written before the storage is known"
    out, _ = run_tutorial("05_two_workers_on_postgresql.py", tmp_path / "b", "--storage", "sqlite:///x.db")
    assert out.returncode == 2 and "not a PostgreSQL URL" in out.stderr


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL is not installed (.ci/run installs it)")
def test_05_two_workers_on_postgresql_run_every_evaluation_once(tmp_path: Path) -> None:
    with postgres_server() as url:
        out, work = run_tutorial(
            "05_two_workers_on_postgresql.py", tmp_path, "--study", "tut5", env={"NOSPLUG_STORAGE": url}
        )
        s = summary(out)
        assert s["every_evaluation_once"] == "True" and s["workers"] == "2", s
        assert int(s["trials"]) == int(s["evaluations"]) >= 16, s
        assert "evaluations that ran more than once: none" in out.stdout
        # checked independently of the tutorial's own report
        study = optuna.load_study(study_name="tut5", storage=url)
        assert_all_finished_once(study)
        workers = {t.user_attrs["worker"] for t in study.trials if t.user_attrs.get("reused_from") is None}
        assert len(workers) == 2 and len(study.trials) == int(s["trials"])
    assert (work / "machine-A.jsonl").is_file() and (work / "machine-B.jsonl").is_file()


@pytest.mark.slow
def test_06_amalgamates_a_search_hall_of_fame_and_benchmarks_it(tmp_path: Path) -> None:
    out, work = run_tutorial("06_amalgamate_a_search.py", tmp_path)
    s = summary(out)
    assert s["teachers"] == "4" and int(s["periods"]) >= 2, s
    assert int(s["rows"]) == 2 * 5 * 3, "2 problems x (student + 4 teachers) x 3 runs"
    assert int(s["compared"]) == 8 and int(s["beaten"]) + int(s["worse"]) <= 8, s
    text = out.stdout
    assert re.search(r"study:hall-of-fame#1\(lr=[0-9.e-]+\)", text), "hall-of-fame teachers with their lrs"
    assert "$ nosplug study run " in text and "$ nosplug amalgamate evaluate " in text
    rows = re.findall(r"^(digits_mlp|mlp)\s+(\S+)\s+([+-][0-9.]+) ± ([0-9.]+)", text, re.M)
    assert len(rows) == 10, text[-3000:]
    table = pq.read_table(work / "benchmark.parquet").to_pylist()
    student = [r["best_log_val"] for r in table if r["problem"] == "mlp" and r["optimizer"] == "student"]
    shown = next(float(m) for p, name, m, _ in rows if (p, name) == ("mlp", "student"))
    assert shown == pytest.approx(sum(student) / len(student), abs=1e-3), "the table is the Parquet's runs"
