"""What the terminal shows: reasons for rejections, honest progress, readable tables at 80 columns."""

from __future__ import annotations

import io
from pathlib import Path

import optuna
import pytest
from rich.console import Console
from study_helpers import write_config

import nosplug
from nosplug.cli import main
from nosplug.search.api import create_search
from nosplug.study import studies
from nosplug.study.kinds import plan_state
from nosplug.study.storage import open_storage
from nosplug.study.worker import Worker

WIDTH = 80


def _console() -> Console:
    return Console(file=io.StringIO(), width=WIDTH, record=True, color_system=None, force_terminal=False)


def _text(renderable) -> str:
    c = _console()
    c.print(renderable)
    return c.export_text()


def test_the_live_screen_says_why_candidates_are_rejected_and_never_looks_finished_early(
    tmp_path: Path, monkeypatch
) -> None:
    from nosplug.cli.study_screen import Monitor
    from nosplug.evaluation import evaluate

    calls = {"n": 0}

    def fake(genome, task, data, preset, *, reporter=None, seed=0, progress=None):
        calls["n"] += 1
        if calls["n"] <= 4:  # the first evaluations are all rejected
            return evaluate.EvalResult(
                "pruned", None, "prescreen", "pre-screen: best training accuracy 0.230 < 0.25"
            )
        reporter.report(0.5 + calls["n"] / 100, 10)
        return evaluate.EvalResult("complete", 0.5 + calls["n"] / 100, "final", "completed")

    monkeypatch.setattr(evaluate, "evaluate_genome", fake)
    cfg = write_config(tmp_path / "s.toml", name="s", init=6, particles=2, timesteps=1, mutations=2)
    url = f"journal:{tmp_path / 'j.log'}"
    create_search(cfg, storage=url)
    monitor = Monitor(studies.load("s", url))
    frames: list[tuple[str, float, float | None, bool]] = []

    def on_event(e) -> None:
        monitor.note(e)
        if e["event"] in ("finished", "planned"):
            text = _text(monitor.render())
            task = monitor.progress.tasks[monitor.overall]
            done = plan_state(studies.load("s", url)).done
            frames.append((text, task.completed, task.total, done))

    Worker("s", url, threads=1, on_event=on_event).run()
    first = next(text for text, completed, _t, _d in frames if completed >= 1)
    assert "pruned at pre-screen: best training accuracy 0.230 < 0.25" in first
    assert "init/0000" in first
    for text, completed, total, done in frames:
        assert total is not None and total >= completed
        if not done:
            assert completed < total, "the bar looked finished while work remained"
        assert max(len(line) for line in text.splitlines()) <= WIDTH
    assert frames[-1][3] and frames[-1][1] == frames[-1][2]


def _trial(genome: nosplug.Genome, fitness: float, key: str) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=optuna.trial.TrialState.COMPLETE,
        value=fitness,
        user_attrs={
            "key": key,
            "genome": genome.to_json(),
            "hash": genome.canonical_hash(),
            "fitness": fitness,
            "chosen_lr": 0.01,
            "formula": genome.formula(),
        },
    )


def test_the_best_table_keeps_long_formulas_whole_at_80_columns() -> None:
    from nosplug.cli.study_screen import best_table

    names = ["opt10", "opt4", "lr8", "a5"]
    trials = [_trial(nosplug.zoo.load(n), 0.9 - i / 100, f"p00{i}/k5/r0/m6") for i, n in enumerate(names)]
    text = _text(best_table(trials))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert "ranked by fitness" in text
    for i, n in enumerate(names):
        formula = nosplug.zoo.load(n).formula()
        assert len(formula) > 40 or n == "a5"
        # the figures line, then the formula below it, indented; folded lines join back exactly
        row = next(j for j, line in enumerate(lines) if f"p00{i}/k5/r0/m6" in line)
        assert (
            f"fitness {0.9 - i / 100:.4f}" in lines[row]
            and nosplug.zoo.load(n).canonical_hash() in lines[row]
        )
        block = []
        for line in lines[row + 1 :]:
            if not line.startswith("    ") or not line.strip():
                break
            block.append(line[4:].rstrip())
        assert " ".join(block) == formula, (n, block)  # wrapped at spaces, nothing cut


def test_the_evaluate_tables_fit_80_columns_with_whole_headers_and_sorted_rates() -> None:
    from nosplug.cli.evaluate_cmd import result_table, sweep_table
    from nosplug.evaluation.evaluate import EvalResult
    from nosplug.evaluation.presets import get_preset

    lrs = get_preset("paper").all_lrs  # 10, 0.01, 1e-05, 1, 0.1, ...: the sweep's own order
    res = EvalResult(
        "complete",
        0.912,
        "final",
        "completed",
        {"passed": True},
        {repr(lr): 0.5 for lr in lrs},
        0.01,
        duration=12.3,
    )
    results = [("adam-with-a-long-name", nosplug.zoo.load("adam"), res)] * 2
    for table in (
        result_table("evaluation on mnist5k (convnet, preset quick)", results),
        sweep_table(lrs, results),
    ):
        text = _text(table)
        assert max(len(line) for line in text.splitlines()) <= WIDTH
    head = _text(result_table("t", results))
    for header in ("genome", "integrity", "chosen lr", "val accuracy", "status", "time"):
        assert all(word in head for word in header.split()), header  # may wrap between words
    sweep_head = next(line for line in _text(sweep_table(lrs, results)).splitlines() if "genome" in line)
    cells = [c.strip() for c in sweep_head.strip("┃ ").split("┃")][1:]
    assert [float(c) for c in cells] == sorted(lrs, reverse=True)


@pytest.mark.parametrize(("label", "plural"), [("loss", "losses"), ("operand family", "operand families")])
def test_kind_labels_are_pluralised_as_english(label: str, plural: str) -> None:
    from nosplug.cli.plugins_cmd import _plural
    from nosplug.primitives.registry import KINDS

    assert _plural(label, 2) == plural and _plural(label, 1) == label
    for kind in KINDS:
        assert not _plural(kind.label, 3).endswith(("ss", "sss", "ys"))


def test_plugins_list_says_losses(capsys) -> None:
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert "amalgamation losses" in out and "losss" not in out


def test_study_create_suggests_the_run_only_when_not_scripted(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "c.toml", name="c")
    url = f"journal:{tmp_path / 'j.log'}"
    assert main(["study", "create", str(cfg), "--storage", url]) == 0
    assert "next: nosplug study run c" in capsys.readouterr().out
    # the README's chained command: create --exist-ok && run; the run is already asked for
    assert main(["study", "create", str(cfg), "--storage", url, "--exist-ok"]) == 0
    assert "next:" not in capsys.readouterr().out


def test_study_best_on_an_amalgamation_run_is_an_error(tmp_path: Path, capsys) -> None:

    url = f"journal:{tmp_path / 'j.log'}"
    s = optuna.create_study(study_name="am", storage=open_storage(url))
    s.set_user_attr("nosplug.kind", "amalgamation")
    s.set_user_attr("nosplug.config", {"run": {"name": "am"}})
    assert main(["study", "best", "am", "--storage", url]) == 2
    assert "is an amalgamation run, not a search" in capsys.readouterr().err
