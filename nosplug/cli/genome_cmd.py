"""``nosplug genome show|random``: look at genomes."""

from __future__ import annotations

import random

import click
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from nosplug.cli.console import console, emit_json


@click.group()
def genome() -> None:
    """Show zoo genomes and genome files, or draw random ones."""


def _describe(g, title: str, latex: bool) -> None:
    from nosplug.genome.render import render_decay
    from nosplug.primitives.registry import registry

    reg = registry()
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("formula", escape(g.formula()))
    if latex:
        table.add_row("latex", escape(g.latex()))
    table.add_row("momentum", g.momentum + (f" ({g.nesterov} form)" if g.momentum == "nesterov" else ""))
    table.add_row("sign flip", "yes" if g.flip else "no")
    table.add_row("hash", g.canonical_hash())
    active = g.active_ids()
    table.add_row("active nodes", f"{len(active)} of {len(g.nodes)}: {', '.join(sorted(active))}")
    decays = [(n.id, i, e) for n, i, e in g.edges() if e.decay is not None and n.id in active]
    for nid, i, e in decays:
        table.add_row("decay", escape(f"{nid} input {i} ({e.src}): {render_decay(e.decay, reg)}"))
    if not decays:
        table.add_row("decay", "none")
    for key in ("description", "source"):
        if g.meta.get(key):
            table.add_row(key, escape(str(g.meta[key])))
    if g.meta.get("defaults"):
        table.add_row("defaults", escape(", ".join(f"{k}={v}" for k, v in g.meta["defaults"].items())))
    console.print(Panel(table, title=escape(title), expand=False))


@genome.command("show")
@click.argument("names", nargs=-1, required=True, metavar="NAME|FILE...")
@click.option("--latex", is_flag=True, help="Also print the update rule as LaTeX.")
@click.option("--json", "as_json", is_flag=True, help="Print the genome JSON instead.")
def show(names: tuple[str, ...], latex: bool, as_json: bool) -> None:
    """Formula, momentum type, decay functions and hash of zoo genomes or genome files."""
    from nosplug import zoo

    for name in names:
        g = zoo.load(name)
        if as_json:
            emit_json(g.to_dict())
        else:
            _describe(g, name, latex)


@genome.command("random")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draw.")
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True, help="How many genomes.")
@click.option("--latex", is_flag=True, help="Also print LaTeX.")
@click.option("--json", "as_json", is_flag=True, help="Print genome JSON, one per line.")
@click.option("--checked", is_flag=True, help="Keep drawing until the genome passes the integrity check.")
def random_cmd(seed: int, count: int, latex: bool, as_json: bool, checked: bool) -> None:
    """Draw random genomes from the paper's search space (spec §5), reproducibly."""
    from nosplug.genome.random import random_genome
    from nosplug.genome.space import SearchSpace

    space = SearchSpace.paper()
    rng = random.Random(seed)
    accept = None
    if checked:
        from nosplug.evaluation.integrity import integrity_check

        accept = lambda g: integrity_check(g).passed  # noqa: E731
    for k in range(count):
        g = random_genome(space, rng, accept=accept)
        if as_json:
            emit_json(g.to_dict())
        else:
            _describe(g, f"random genome (seed {seed}, #{k})", latex)
