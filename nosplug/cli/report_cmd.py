"""``nosplug report STUDY``: a self-contained report (Markdown and/or HTML with figures) of a search."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from nosplug.cli.console import console, fitted, name_column
from nosplug.cli.options import ARTIFACTS_HELP, STORAGE_HELP

#: Kept here as well so ``nosplug report --help`` does not import matplotlib (the report package does).
DEFAULT_BASELINES = "adam,sgd,momentum,rmsprop"


@click.command()
@click.argument("study_name", metavar="STUDY")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--artifacts", help=ARTIFACTS_HELP)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder to write (default: reports/STUDY). Existing report files there are replaced.",
)
@click.option(
    "-n", "count", type=click.IntRange(1), default=5, show_default=True, help="How many best genomes."
)
@click.option(
    "--baselines",
    metavar="A,B,...",
    help=f"Zoo genomes to compare with, evaluated like the study's trials (default: {DEFAULT_BASELINES}).",
)
@click.option("--no-baselines", is_flag=True, help="Compare the best genomes only; train nothing.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "both"]),
    default="both",
    show_default=True,
    help="report.md (links the PNGs), report.html (PNGs embedded), or both.",
)
def report(
    study_name: str,
    storage: str | None,
    artifacts: str | None,
    out: str | None,
    count: int,
    baselines: str | None,
    no_baselines: bool,
    fmt: str,
) -> None:
    """Write a report of the search STUDY: fitness over timesteps, best genomes, learned LR
    schedules, and a comparison with zoo baselines under the study's own evaluation. For a
    benchmark (nosplug benchmark, or a search's NAME.verdict): its tables with intervals, the
    verdicts, performance profiles and learning curves per task.

    Reads the storage, and attaches the report's files to the study as Optuna artifacts
    (optuna-dashboard shows them). Baselines are trained at report time and cached in the report
    folder (baselines.json), so running the report again is fast.
    """
    import optuna

    from nosplug.reporting import build_report
    from nosplug.study.artifacts import check, publish_report  # the files become the study's artifacts

    check(storage, artifacts)  # a bad artifact store fails before the baselines are trained
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # report-time evaluations use in-memory studies
    if no_baselines and baselines is not None:
        raise click.UsageError("--baselines and --no-baselines exclude each other")
    names = [] if no_baselines else [b.strip() for b in (baselines or DEFAULT_BASELINES).split(",")]
    if any(not n for n in names):
        raise click.BadParameter(f"empty name in {baselines!r}", param_hint="--baselines")
    formats = ("md", "html") if fmt == "both" else (fmt,)
    if _is_benchmark(study_name, storage):
        from pathlib import Path

        from nosplug.reporting.benchmark_report import build as build_benchmark_report

        folder = Path(out or Path("reports") / study_name)
        files = build_benchmark_report(study_name, storage, folder, formats)
        console.print(f"report of benchmark [bold]{escape(study_name)}[/bold] in {escape(str(folder))}:")
        for f in files:
            console.print(f"  {escape(str(f))}")
        console.print(escape(publish_report(study_name, files, storage, artifacts).line()), soft_wrap=True)
        return

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] == "stage":
            console.print(f"[dim]·[/dim] {escape(e['message'])}")
        elif e["event"] == "baseline_start":
            if "cmp" not in tasks:
                tasks["cmp"] = progress.add_task("comparison", total=e["total"], completed=e["index"])
                progress.start()
            progress.update(tasks["cmp"], description=f"evaluating {escape(e['label'])}")
        elif e["event"] == "baseline":
            r = e["result"]
            if "cmp" in tasks:
                progress.update(tasks["cmp"], completed=e["index"] + 1)
            fitness = "–" if r.fitness is None else f"{r.fitness:.4f}"
            progress.console.print(
                f"[dim]·[/dim] {escape(e['label'])}: {escape(r.status)}, fitness {fitness}"
                f" [dim]({escape(r.source)})[/dim]"
            )

    try:
        rep = build_report(
            study_name,
            storage,
            out=out,
            top=count,
            baselines=names,
            formats=formats,
            on_event=on_event,
        )
    finally:
        progress.stop()
    console.print(_comparison_table(rep))
    for note in rep.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    console.print(f"report of study [bold]{escape(rep.study)}[/bold] in {escape(str(rep.out))}:")
    for f in rep.files:
        console.print(f"  {escape(str(f))}")
    console.print(escape(publish_report(rep.study, rep.files, storage, artifacts).line()), soft_wrap=True)


def _is_benchmark(name: str, storage: str | None) -> bool:
    from nosplug.benchmark.study import KIND as BENCHMARK
    from nosplug.study.studies import load
    from nosplug.study.trials import KIND_ATTR

    return load(name, storage).user_attrs.get(KIND_ATTR) == BENCHMARK


def _comparison_table(rep: Any):
    """The best genomes and the baselines under the study's evaluation; names never split
    (:func:`~nosplug.cli.console.fitted`); each genome's formula below the table, where it has
    the full width instead of a narrow column."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.text import Text

    formulas = {f"#{b.rank} {b.key}": b.formula for b in rep.best}
    rows = list(rep.comparison)

    def build(labels: list[str]) -> Table:
        table = Table(title="best genomes and baselines (evolution-stage evaluation)", title_justify="left")
        name_column(table, "genome")
        for col in ("status", "fitness", "lr"):
            table.add_column(col, no_wrap=True)
        table.add_column("result", ratio=1)
        for label, row in zip(labels, rows):
            r = row.result
            table.add_row(
                escape(label),
                escape(r.status),
                "–" if r.fitness is None else f"{r.fitness:.4f}",
                "–" if r.chosen_lr is None else f"{r.chosen_lr:g}",
                escape(r.source),
            )
        return table

    below: list[Any] = []
    for row in rows:
        if formulas.get(row.label):
            below += [Text(row.label, style="bold"), Padding(Text(formulas[row.label]), (0, 0, 0, 4))]
    return Group(fitted(build, [row.label for row in rows]), *below)
