"""Tables that print optimizer, genome, task or plugin names never split a name at 80 columns
(issue 22 item 3): a name is whole in the table, or the table shows keys (#1, #2, ...) and each
key's full name below it."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console

import nosplug
from nosplug.cli import console as console_module
from nosplug.cli import main

WIDTH = 80
LONG = [
    "studies/my-long-folder/my-study_best1.json",
    "torch:Adam(betas=(0.9, 0.999), weight_decay=0.01)",
    "pytorch_optimizer:ScheduleFreeAdamW(warmup_steps=100)",
]


def _text(renderable, width: int = WIDTH) -> str:
    c = Console(file=io.StringIO(), width=width, record=True, color_system=None, force_terminal=False)
    c.print(renderable)
    return c.export_text()


def _whole(text: str, names: list[str], wide: str) -> None:
    """Every line fits, every name is whole on one line, and nothing is cut: no more ellipses
    than the same output has at any width (``wide``)."""
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, text
    for n in names:
        assert any(n in line for line in lines), f"{n!r} split or cut:\n{text}"
    assert text.count("…") <= wide.count("…"), f"something was cut:\n{text}"


def _check(renderable, names: list[str]) -> str:
    text = _text(renderable)
    _whole(text, names, _text(renderable, 10_000))
    return text


def _command(monkeypatch, capsys, *args: str) -> tuple[str, str]:
    """The command's output at 80 columns and at any width."""
    out = []
    for width in (WIDTH, 10_000):
        monkeypatch.setattr(console_module.console, "_width", width)
        assert main(list(args)) == 0
        out.append(capsys.readouterr().out)
    return out[0], out[1]


def test_fitted_keeps_short_names_in_the_table_and_keys_long_ones_below() -> None:
    from rich.table import Table

    from nosplug.cli.console import fitted, name_column

    def build(labels):
        t = Table()
        name_column(t, "optimizer")
        for col in ("a value", "another value", "a third value", "a fourth one"):
            t.add_column(col, no_wrap=True)
        for label in labels:
            t.add_row(label, "0.123", "0.456", "0.789", "1.000")
        return t

    short = _text(fitted(build, ["adam", "sgd"], WIDTH))
    assert "#1" not in short and "adam" in short
    text = _check(fitted(build, [*LONG, LONG[0]], WIDTH), LONG)  # a repeated name keeps its key
    keys = re.findall(r"^(#\d)  (.*)$", text, re.M)
    assert [k for k, _ in keys] == ["#1", "#2", "#3"] and [n.strip() for _, n in keys] == LONG
    assert text.count("│ #1 ") == 2


def test_evaluate_tables_never_split_genome_names() -> None:
    from nosplug.cli.evaluate_cmd import result_table, sweep_table
    from nosplug.evaluation.evaluate import EvalResult
    from nosplug.evaluation.presets import get_preset

    lrs = get_preset("quick").all_lrs
    ok = EvalResult("complete", 0.912, "final", "", {"passed": True}, {repr(lr): 0.5 for lr in lrs}, 0.01,
                    flip=True, duration=12.3)  # fmt: skip
    bad = EvalResult("nonfinite", None, "prescreen", "pre-screen: every rate diverged", {"passed": True},
                     {repr(lr): 123456.7 for lr in lrs}, duration=1.0)  # fmt: skip
    for names in (["adam", "opt6"], [LONG[0], "opt6"]):
        results = [(names[0], None, ok), (names[1], None, bad)]
        for table in (
            result_table("mnist5k-autoencoder: a title; preset task, 600 final steps on cpu", results,
                         "val reconstruction_mse"),
            sweep_table(lrs, results, "sweep: best training reconstruction_mse"),
        ):  # fmt: skip
            _check(table, [*names, "reconstruction_mse"])


def test_task_list_at_80_columns(monkeypatch, capsys) -> None:
    from nosplug.tasks import resolve_task, task_specs

    names = sorted(task_specs())
    text, wide = _command(monkeypatch, capsys, "task", "list")
    _whole(text, names + [resolve_task(n).metric.name for n in names], wide)


def test_plugins_list_at_80_columns(monkeypatch, capsys) -> None:
    from nosplug.primitives.registry import registry

    text, wide = _command(monkeypatch, capsys, "plugins", "list")
    by_plugin = registry().by_plugin()
    shown = [n for kinds in by_plugin.values() for names in kinds.values() for n in sorted(names)[:12]]
    _whole(text, [*by_plugin, *shown], wide)


def test_amalgamate_tables_never_split_optimizer_names() -> None:
    from nosplug.cli.amalgamate_cmd import evaluation_table, protocol_table

    names = ["student", "torch:Adam(lr=0.001, betas=(0.9, 0.999))", "genome:opt6(total_steps=500)"]
    rows = [
        {"problem": "mnist_conv", "optimizer": n, "is_oracle": i == 1, "vs_oracle": 0.01 * i,
         "best_log_val_mean": -1.2345, "best_log_val_std": 0.0123, "stability_mean": 0.5}
        for i, n in enumerate(names)
    ]  # fmt: skip
    _check(evaluation_table("run-with-a-name", rows), names)
    summary = [
        {"problem": "mnist_conv", "method": n, "kind": "student" if i == 0 else "teacher", "oracle": i == 2,
         "replicates": 3, "runs": 9, "mean": -1.234, "low": -1.3, "high": -1.1, "sd_meta": 0.01,
         "sd_eval": 0.02, "stability": 0.3}
        for i, n in enumerate(names)
    ]  # fmt: skip
    _check(protocol_table("protocol-name", summary), names)


def test_report_comparison_puts_formulas_below_and_keeps_names_whole() -> None:
    from nosplug.cli.report_cmd import _comparison_table

    formula = nosplug.zoo.load("opt10").formula()
    result = SimpleNamespace(status="complete", fitness=0.91, chosen_lr=0.01, source="study")
    label = "#1 evolution/t0003/p01/c02"
    rep = SimpleNamespace(
        best=[SimpleNamespace(rank=1, key="evolution/t0003/p01/c02", formula=formula)],
        comparison=[SimpleNamespace(label=label, result=result),
                    SimpleNamespace(label="adam", result=result)],
    )  # fmt: skip
    text = _check(_comparison_table(rep), [label, "adam"])
    block = text.split(label)[-1]
    assert " ".join(w for line in block.splitlines() for w in line.split()) == formula


def test_study_best_keeps_keys_and_hashes_whole() -> None:
    import optuna

    from nosplug.cli.study_cmd import best_table

    trials = []
    for i, n in enumerate(["opt10", "adam"]):
        g = nosplug.zoo.load(n)
        trials.append(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE, value=0.9 - i / 10,
                user_attrs={"key": f"evolution/t0012/p0{i}/c03", "genome": g.to_json(), "hash": "x",
                            "fitness": 0.9 - i / 10, "fitness_seeds": 3, "chosen_lr": 0.001},
            )
        )  # fmt: skip
    text = _check(best_table(trials, width=WIDTH), ["evolution/t0012/p00/c03", "evolution/t0012/p01/c03"])
    for n in ("opt10", "adam"):
        assert nosplug.zoo.load(n).canonical_hash() in text
