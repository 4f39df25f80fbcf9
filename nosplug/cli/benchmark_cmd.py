"""``nosplug benchmark``: is it better than tuned Adam? Equal tuning budgets, fresh seeds, test data, CIs."""

from __future__ import annotations

import math
from typing import Any

import click
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nosplug.cli.console import console, emit_json
from nosplug.config import REFERENCE, SEEDS_PER_STUDY, TUNING_STUDIES, TUNING_TRIALS


@click.command()
@click.argument("contenders", nargs=-1, metavar="CONTENDER...")
@click.option("--tasks", "-t", help="Comma-separated tasks (nosplug task list), e.g. diabetes-mlp,charlm.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A benchmark TOML instead.")
@click.option("--name", default=None, help="Benchmark (study) name; rerun with the same name to resume.")
@click.option("--reference", default=REFERENCE, show_default=True, help="What every verdict compares with.")
@click.option(
    "--seeds",
    type=click.IntRange(1),
    default=SEEDS_PER_STUDY,
    show_default=True,
    help="Fresh evaluation seeds per tuning study.",
)
@click.option(
    "--studies",
    type=click.IntRange(0),
    default=TUNING_STUDIES,
    show_default=True,
    help="Most tuning studies per contender and task (0: the fewest with power 0.8 at d = 1).",
)
@click.option(
    "--baselines",
    default=None,
    metavar="SET[,SET]",
    help="Named baseline sets whose optimizers join the contenders, each with its own extra "
    "hyperparameters tuned and its recipe, the same budget as all (modern: AdamW, NAdamW, Lion, "
    "Schedule-Free AdamW, SOAP, Muon; algoperf: NAdamW). The verdicts then also judge every other "
    "contender against the best of them.",
)
@click.option(
    "--tuning-trials",
    type=click.IntRange(1),
    default=TUNING_TRIALS,
    show_default=True,
    help="Tuning trials per tuning study.",
)
@click.option(
    "--allow-underpowered",
    is_flag=True,
    help="Run a design that cannot reach power 0.8 at d = 1 (every verdict then says so).",
)
@click.option(
    "--storage", help="Optuna storage URL (default: $NOSPLUG_STORAGE, else ./nosplug-studies/journal.log)."
)
@click.option("--device", help="auto, cpu, cuda, cuda:N or mps (default: the config's, else auto).")
@click.option("--quiet", is_flag=True, help="Print only the verdicts.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON object.")
def benchmark(
    contenders, tasks, config_path, name, reference, seeds, studies, tuning_trials, allow_underpowered,
    baselines, storage, device, quiet, as_json,
) -> None:  # fmt: skip
    """Compare optimizers fairly: each CONTENDER (a zoo name, a genome file, study:NAME#k,
    torch:Adam(...), pretrained:NAME, student:PATH) gets the same tuning budget over its learning
    rate and schedule on each task (validation split, tuning seeds), in several independent tuning
    studies; each study's choice trains on fresh seeds; quality is measured on the held-out test
    split, and each contender gets a computed verdict against the reference with confidence
    intervals (docs/benchmark.md). Studies come in batches until each verdict is decided or the
    cap is reached; a design that could not detect an effect of one standard deviation with
    probability 0.8 is refused before anything runs, unless --allow-underpowered.

    Example: nosplug benchmark opt6 torch:SGD(momentum=0.9,nesterov=True) --tasks diabetes-mlp
    """
    from nosplug.benchmark.api import benchmark as run_benchmark

    sets = [b.strip() for b in (baselines or "").split(",") if b.strip()]
    if config_path and (contenders or tasks or sets):
        raise click.UsageError(
            "give CONTENDERs (or --baselines) with --tasks, or --config (with benchmark.baselines), not both"
        )
    if not config_path and not ((contenders or sets) and tasks):
        raise click.UsageError("give CONTENDERs and --tasks (or --config F.toml)")
    task_list = [t.strip() for t in (tasks or "").split(",") if t.strip()]
    events = None if quiet or as_json else _progress
    result = run_benchmark(
        list(contenders) or None, task_list or None, config=config_path,
        name=name or "benchmark", storage=storage, seeds=seeds, studies=studies, tuning_trials=tuning_trials,
        reference=reference, allow_underpowered=allow_underpowered, device=device, on_event=events,
        baselines=sets,
    )  # fmt: skip
    from nosplug.benchmark.baseline_report import report_json, report_lines

    if as_json:
        emit_json({**as_dict(result), **report_json(result)})
        return
    console.print(render(result, verdicts_only=quiet))
    for line in report_lines(result):  # tuning space per contender; against the best baseline
        console.print(escape(line))


def _progress(e: dict[str, Any]) -> None:
    if e.get("event") == "finished":
        fit = e.get("fitness")
        value = "-" if fit is None else f"{fit:.4g}"
        console.print(f"[dim]{escape(e['key'])}: {e['status']} {value}[/dim]")


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    return f"{v:.{digits}g}"


def render(result, verdicts_only: bool = False) -> Group:
    """The benchmark's tables: per task, the verdicts, and the fairness terms and design."""
    parts: list[Any] = [
        Text(f"benchmark {result.name}: {result.budget_line()}", style="dim"),
        Text(f"design: {result.design.summary()}", style="dim"),
    ]
    note = result.design.note()
    if note:
        parts.append(Text(note, style="yellow"))
    if not verdicts_only:
        for entry in result.tasks:
            parts.append(task_table(result, entry))
    parts.append(verdict_table(result))
    if not result.done:
        parts.append(Text("not finished: rerun the same command to continue", style="yellow"))
    return Group(*parts)


def _contender_column(table: Table) -> None:
    """A contender's name is never split across lines (the other columns wrap instead)."""
    table.add_column("contender", no_wrap=True)


def _tuned(s) -> str:
    """The first study's choice, and the range of learning rates over every study."""
    first = ", ".join(f"{k} {v:.3g}" for k, v in s.tuned.items()) or "-"
    rates = [st["lr"] for st in s.studies if "lr" in st]
    if len(s.studies) > 1 and rates:
        return f"lr {min(rates):.2g}..{max(rates):.2g} over {len(s.studies)} studies"
    return first


def task_table(result, entry) -> Group:
    """One task: final and best test quality and steps to target per contender (a narrow table, so
    80 columns hold it next to long contender names), then a line per contender with the rest."""
    task = entry["label"]
    better = "higher" if entry["direction"] == "maximize" else "lower"
    target = result.targets.get(task, math.nan)
    source = (
        "set by the config"
        if task in result.raw["benchmark"]["target"]
        else "reached by the tuned reference on about 3 of 4 seeds"
    )
    table = Table(
        title=f"{task}: test {entry['metric']} ({better} is better), mean ± std over each contender's "
        f"seeds; target {_num(target)} ({source})",
        title_justify="left",
    )
    _contender_column(table)
    for col in ("final", "best", "steps to target"):
        table.add_column(col, overflow="fold")
    lines: list[Text] = []
    for c in result.contenders:
        s = result.summaries.get((c, task))
        name = escape(c) + (" (reference)" if c == result.reference else "")
        if s is None:
            table.add_row(name, "running", "", "")
            continue
        table.add_row(
            name,
            f"{_num(s.final_test.mean)} ± {_num(s.final_test.std, 2)}",
            _num(s.best_test.mean),
            f"{_num(s.steps_to_target)} ({s.reached}/{s.final_test.n})",
        )
        lines.append(
            Text.assemble(
                (f"{c}: ", "bold"),
                f"{s.final_test.n} seeds; tuned {_tuned(s)}; "
                + (
                    f"{_num(s.seconds_to_target, 3)} s to target"
                    if math.isfinite(s.seconds_to_target)
                    else "target not reached on most seeds"
                )
                + f"; {_num(s.train_seconds, 3)} s per run",
            )
        )
    return Group(table, *lines)


def verdict_table(result) -> Group:
    """The verdict per contender (a narrow table: long contender names stay on one line in 80
    columns), then each verdict's evidence as a sentence of its own (and, with several tasks, each
    task's verdict): a sentence wrapped inside a narrow table column interleaves with its
    neighbours and is hard to read."""
    table = Table(title=f"verdicts against tuned {result.reference} (computed; 95 % bootstrap intervals)",
                  title_justify="left")  # fmt: skip
    _contender_column(table)
    table.add_column("verdict")
    table.add_column("seeds", overflow="fold")
    table.add_column("stopped")
    if not result.verdicts:
        table.add_row("-", "pending: statistics need every contender's first batch of tuning studies", "", "")
    for c, v in result.verdicts.items():
        style = {"better": "green", "worse": "red", "mixed": "yellow"}.get(v.outcome, "")
        seeds = sum(v.comparison.seeds_per_task)
        table.add_row(escape(c), Text(v.outcome, style=style), str(seeds), result.stopped(c))
    if result.verdicts:
        seeds = sum(result.runs_of(result.reference, t["label"]) for t in result.tasks)
        table.add_row(escape(result.reference), "reference", str(seeds), "")
    lines: list[Text] = []
    for c, v in result.verdicts.items():
        lines.append(Text.assemble((f"{c}: ", "bold"), v.sentence))
        for t, tv in v.per_task.items():
            lines.append(Text.assemble((f"  {c} on {t}: ", "bold"), tv.sentence))
    if result.profiles:
        areas = ", ".join(f"{c} {_num(a, 3)}" for c, a in result.profiles.area.items())
        lines.append(Text(f"performance profile areas (time to target; 1 = fastest on every task): {areas}"))
    return Group(table, *lines)


def as_dict(result) -> dict[str, Any]:
    """Everything the tables show, as plain JSON."""
    return {
        "name": result.name,
        "done": result.done,
        "reference": result.reference,
        "budget": result.budget_line(),
        "design": result.design.summary(),
        "targets": result.targets,
        "tasks": {
            f"{c}|{t}": {
                "tuned": s.tuned,
                "studies": s.studies,
                "final_test_mean": s.final_test.mean,
                "final_test_std": s.final_test.std,
                "best_test_mean": s.best_test.mean,
                "steps_to_target": s.steps_to_target,
                "seconds_to_target": s.seconds_to_target,
                "reached": s.reached,
                "seeds": s.final_test.n,
            }
            for (c, t), s in result.summaries.items()
        },
        "verdicts": {
            c: {
                "outcome": v.outcome,
                "sentence": v.sentence,
                "iqm": [v.comparison.iqm.point, v.comparison.iqm.low, v.comparison.iqm.high],
                "p_corrected": v.comparison.test.p_corrected,
                "seeds": sum(v.comparison.seeds_per_task),
                "stopped": result.stopped(c),
                "per_task": {
                    t: {"outcome": tv.outcome, "sentence": tv.sentence} for t, tv in v.per_task.items()
                },
            }
            for c, v in result.verdicts.items()
        },
        "profile_area": dict(result.profiles.area) if result.profiles else {},
    }
