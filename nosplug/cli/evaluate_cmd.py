"""``nosplug evaluate``: the full fitness evaluation of one or more genomes, side by side."""

from __future__ import annotations

import math

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json


def _fmt(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


@click.command()
@click.argument("genomes", nargs=-1, required=True, metavar="NAME|FILE...")
@click.option("--dataset", "-d", default="mnist5k", show_default=True, help="Dataset plugin name.")
@click.option("--surrogate", "-s", default=None, help="Surrogate plugin name (default: the preset's).")
@click.option("--base", type=int, default=None, help="ConvNet width (the surrogate option 'base').")
@click.option(
    "--preset",
    "--budget",
    "preset",
    default="quick",
    show_default=True,
    help="Evaluation preset: quick, smoke, paper, paper-init.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="Use at most this many training examples.")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder holding CIFAR data (else $NOSPLUG_DATA or ./data).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per genome instead of a table.")
def evaluate(genomes, dataset, surrogate, base, preset, seed, limit, data_root, as_json) -> None:
    """Integrity check, learning-rate sweep and final run for each genome; prints a comparison.

    Example: nosplug evaluate adam opt6 a1 --dataset mnist5k
    """
    import optuna

    from nosplug import zoo
    from nosplug.evaluation.datasets import load_dataset
    from nosplug.evaluation.presets import get_preset
    from nosplug.evaluation.training import evaluate_genome

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table says what happened
    p = get_preset(preset)
    overrides: dict = {}
    if surrogate:
        overrides["surrogate"] = surrogate
    if base is not None:
        overrides["surrogate_options"] = {**p.surrogate_options, "base": base}
    if overrides:
        p = p.with_overrides(overrides, where="option")
    loaded = [(name, zoo.load(name)) for name in genomes]  # fail fast on a bad name
    data = load_dataset(dataset, seed=seed, limit=limit, root=data_root)
    results = []
    for name, g in loaded:
        if not as_json:
            console.print(
                f"[dim]evaluating[/dim] [bold]{escape(name)}[/bold] [dim]{escape(g.formula())}[/dim]"
            )
        res = evaluate_genome(g, data, p, seed=seed)
        results.append((name, g, res))
        if as_json:
            emit_json(
                {
                    "genome": name,
                    "hash": g.canonical_hash(),
                    "dataset": dataset,
                    "preset": p.name,
                    **res.to_dict(),
                }
            )
    if as_json:
        return
    console.print(
        result_table(
            f"evaluation on {dataset} ({p.surrogate} {p.surrogate_options}, preset {p.name})", results
        )
    )
    console.print(sweep_table(p.all_lrs, results))
    for name, _, r in results:
        if r.status != "complete":
            console.print(f"[yellow]{escape(name)}[/yellow]: {escape(r.reason)}")


def _table(title: str, headers: list[tuple[str, str]]) -> Table:
    """A table whose headers are never cut: each column is at least as wide as its header."""
    table = Table(title=title, title_justify="left")
    for header, justify in headers:
        table.add_column(header, justify=justify, min_width=len(header), no_wrap=True)  # type: ignore[arg-type]
    return table


def result_table(title: str, results) -> Table:
    """One row per genome: the outcome (reasons for rejections are printed below the tables)."""
    table = _table(
        title,
        [("genome", "left"), ("integrity", "left"), ("chosen lr", "right"), ("val acc", "right"),
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


def sweep_table(lrs, results) -> Table:
    """Best training accuracy of each genome at each swept rate, largest rate first."""
    order = sorted(lrs, reverse=True)
    table = _table("sweep: best training accuracy per learning rate", [("genome", "left")] + [
        (f"{lr:g}", "right") for lr in order
    ])  # fmt: skip
    for name, _, r in results:
        table.add_row(escape(name), *[_fmt(r.lr_accuracies.get(repr(lr))) for lr in order])
    return table
