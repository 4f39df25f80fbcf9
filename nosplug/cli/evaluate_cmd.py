"""``nosplug evaluate``: the full fitness evaluation of one or more genomes, side by side."""

from __future__ import annotations

import math
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json, fitted, name_column, value_column
from nosplug.config import DEFAULT_DEVICE


def _fmt(v: float | None) -> str:
    """A value in 6 characters or so: 0.912, 12.345, 12346, 1.2e7 (a sweep table has a column per
    rate and must fit 80 columns)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if abs(v) < 100:
        return f"{v:.3f}"
    if abs(v) < 1e5:
        return f"{v:.0f}"
    mantissa, _, exponent = f"{v:.2g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def parse_options(pairs: tuple[str, ...], what: str = "--task-option") -> dict[str, Any]:
    """``key=value`` pairs (values read as TOML scalars or lists: 64, 0.1, true, [64, 64], text)."""
    from nosplug.tomlconfig import tomllib

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint=what)
        try:
            out[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value.strip()
    return out


@click.command()
@click.argument("genomes", nargs=-1, required=True, metavar="NAME|FILE...")
@click.option(
    "--task",
    "-t",
    "task_name",
    default=None,
    help="Task: a registered name (nosplug task list) or module:callable (default: classification).",
)
@click.option(
    "--task-option", "task_opts", multiple=True, metavar="KEY=VALUE", help="A task option (repeatable)."
)
@click.option("--dataset", "-d", default=None, help="Classification: dataset plugin name (default mnist5k).")
@click.option(
    "--surrogate", "-s", default=None, help="Classification: surrogate plugin (default: the preset's)."
)
@click.option(
    "--base", type=int, default=None, help="Classification: ConvNet width (the surrogate option 'base')."
)
@click.option(
    "--preset",
    "--budget",
    "preset",
    default="task",
    show_default=True,
    help="Evaluation preset: task (the task's own budget), quick, smoke, paper, paper-init.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="Classification: use at most this many examples.")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Classification: folder holding CIFAR data (else $NOSPLUG_DATA or ./data).",
)
@click.option("--device", default=DEFAULT_DEVICE, show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per genome instead of a table.")
def evaluate(
    genomes, task_name, task_opts, dataset, surrogate, base, preset, seed, limit, data_root, device, as_json
) -> None:  # fmt: skip
    """Integrity check, learning-rate sweep and final run for each genome on a task; prints a
    comparison (fitness: the task's validation metric; the test split is not used).

    Example: nosplug evaluate adam opt6 --task charlm
    """
    import optuna

    from nosplug import zoo
    from nosplug.evaluation.evaluate import evaluate_genome
    from nosplug.evaluation.presets import get_preset
    from nosplug.evaluation.runs import for_stage
    from nosplug.tasks import resolve_device, resolve_task
    from nosplug.tasks.classification import ClassificationTask

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table says what happened
    options = parse_options(task_opts)
    for key, value in (("dataset", dataset), ("limit", limit), ("root", data_root)):
        if value is not None:
            options[key] = value
    task = resolve_task(task_name or "classification", options)
    p = get_preset(preset)
    overrides: dict = {}
    if surrogate:
        overrides["surrogate"] = surrogate
    if base is not None:
        overrides["surrogate_options"] = {**p.surrogate_options, "base": base}
    if overrides and not isinstance(task, ClassificationTask):
        raise click.UsageError(f"--surrogate and --base apply to classification tasks, not {task.name}")
    if overrides:
        p = p.with_overrides(overrides, where="option")
    loaded = [(name, zoo.load(name)) for name in genomes]  # fail fast on a bad name
    dev = resolve_device(device)
    data = task.load(seed).to(dev)
    stage_task, stage_p = for_stage(task, p)
    results = []
    for name, g in loaded:
        if not as_json:
            console.print(
                f"[dim]evaluating[/dim] [bold]{escape(name)}[/bold] [dim]{escape(g.formula())}[/dim]"
            )
        res = evaluate_genome(g, task, data, p, seed=seed)
        results.append((name, g, res))
        if as_json:
            emit_json(
                {
                    "genome": name,
                    # as given, and as trained (the integrity check's sign flip applied: the hash
                    # `study best` and `genome show` print for the genome that was evaluated)
                    "planned_hash": g.canonical_hash(),
                    "evaluated_hash": evaluated(g, res.flip).canonical_hash(),
                    "task": task.name,
                    "device": str(dev),
                    "preset": p.name,
                    **res.to_dict(),
                }
            )
    if as_json:
        return
    metric = stage_task.metric
    title = f"{stage_task.describe()}; preset {stage_p.name}, {stage_p.final_steps} final steps on {dev}"
    console.print(result_table(title, results, f"val {metric.name}"))
    console.print(
        sweep_table(stage_p.all_lrs, results, f"sweep: best training {stage_task.train_metric.name}")
    )
    for name, _, r in results:
        if r.status != "complete":
            console.print(f"[yellow]{escape(name)}[/yellow]: {r.status}: {escape(r.reason)}")


def evaluated(genome, flip: bool):
    """The genome as an evaluation trained it: with the integrity check's sign flip."""
    if not flip:
        return genome
    from nosplug.genome.model import Genome

    g = Genome.from_dict(genome.to_dict())
    g.flip = not g.flip
    return g


def _table(title: str, headers: list[tuple[str, str]]) -> Table:
    """A table whose first column names the rows (never split) and whose other columns never cut
    a word (:func:`~nosplug.cli.console.value_column`)."""
    table = Table(title=title, title_justify="left")
    name_column(table, headers[0][0])
    for header, justify in headers[1:]:
        value_column(table, header, justify)
    return table


def result_table(title: str, results, value: str = "val accuracy"):
    """One row per genome: the outcome (reasons for rejections, with the stage that rejected
    them, are printed below the tables). Genome names are never split (:func:`fitted`)."""

    def build(labels: list[str]) -> Table:
        table = _table(
            title,
            [("genome", "left"), ("integrity", "left"), ("chosen lr", "right"), (value, "right"),
             ("status", "left"), ("time", "right")],
        )  # fmt: skip
        for label, (_name, _, r) in zip(labels, results):
            integ = (
                "–"
                if r.integrity is None
                else ("pass" + (" (flip)" if r.flip else "") if r.integrity["passed"] else "[red]fail[/red]")
            )
            table.add_row(
                escape(label),
                integ,
                "–" if r.chosen_lr is None else f"{r.chosen_lr:g}",
                _fmt(r.fitness),
                r.status if r.status == "complete" else f"[yellow]{r.status}[/yellow]",
                f"{r.duration:.1f}s",
            )
        return table

    return fitted(build, [name for name, _, _ in results])


def sweep_table(lrs, results, title: str = "sweep: best training accuracy"):
    """Best training value of each genome at each swept rate, largest rate first."""
    order = sorted(lrs, reverse=True)

    def build(labels: list[str]) -> Table:
        table = _table(
            f"{title} per learning rate", [("genome", "left")] + [(f"{lr:g}", "right") for lr in order]
        )
        for label, (_name, _, r) in zip(labels, results):
            table.add_row(escape(label), *[_fmt(r.lr_scores.get(repr(lr))) for lr in order])
        return table

    return fitted(build, [name for name, _, _ in results])
