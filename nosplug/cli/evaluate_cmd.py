"""``nosplug evaluate``: the full fitness evaluation of one or more genomes, side by side."""

from __future__ import annotations

import math
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json
from nosplug.config import DEFAULT_DEVICE


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.3g}"


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
                    "hash": g.canonical_hash(),
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
            console.print(f"[yellow]{escape(name)}[/yellow]: {escape(r.reason)}")


def _table(title: str, headers: list[tuple[str, str]]) -> Table:
    """A table whose headers are never cut: each column is at least as wide as its header."""
    table = Table(title=title, title_justify="left")
    for header, justify in headers:
        table.add_column(header, justify=justify, min_width=len(header), no_wrap=True)  # type: ignore[arg-type]
    return table


def result_table(title: str, results, value: str = "val accuracy") -> Table:
    """One row per genome: the outcome (reasons for rejections are printed below the tables)."""
    table = _table(
        title,
        [("genome", "left"), ("integrity", "left"), ("chosen lr", "right"), (value, "right"),
         ("status", "left"), ("time", "right")],
    )  # fmt: skip
    for name, _, r in results:
        integ = (
            "–"
            if r.integrity is None
            else ("pass" + (" (flip)" if r.flip else "") if r.integrity["passed"] else "[red]fail[/red]")
        )
        table.add_row(
            escape(name),
            integ,
            "–" if r.chosen_lr is None else f"{r.chosen_lr:g}",
            _fmt(r.fitness),
            r.status if r.status == "complete" else f"[yellow]{r.status}[/yellow] ({r.stage})",
            f"{r.duration:.1f}s",
        )
    return table


def sweep_table(lrs, results, title: str = "sweep: best training accuracy") -> Table:
    """Best training value of each genome at each swept rate, largest rate first."""
    order = sorted(lrs, reverse=True)
    table = _table(
        f"{title} per learning rate", [("genome", "left")] + [(f"{lr:g}", "right") for lr in order]
    )
    for name, _, r in results:
        table.add_row(escape(name), *[_fmt(r.lr_scores.get(repr(lr))) for lr in order])
    return table
