"""``nosplug genome show|random|export``: look at genomes, and export them as plain PyTorch."""

from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from nosplug.cli.console import console, emit_json, err_console
from nosplug.errors import UserError


@click.group()
def genome() -> None:
    """Show zoo genomes and genome files, draw random ones, or export one as PyTorch source."""


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


STUDY_REF = re.compile(r"^study:(?P<name>[^#]+?)(?:#(?P<rank>[^#]*))?$")


@genome.command("export")
@click.argument("spec", metavar="NAME|FILE|study:NAME[#k]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["torch"]),
    default="torch",
    show_default=True,
    help="Output format: a Python module with a torch.optim.Optimizer subclass (the only format).",
)
@click.option("--out", metavar="FILE.py", help="Write the module to this file (default: print it to stdout).")
@click.option(
    "--class-name", help="Name of the optimizer class (default: from the genome's or study's name)."
)
@click.option(
    "--storage",
    help="Optuna storage of study:NAME (default: $NOSPLUG_STORAGE, else ./nosplug-studies/journal.log).",
)
def export_cmd(spec: str, fmt: str, out: str | None, class_name: str | None, storage: str | None) -> None:
    """Write a genome as one self-contained PyTorch module that imports only torch and math.

    SPEC is a zoo name, a genome JSON file, or study:NAME#k, the k-th best genome of a study
    (default k = 1) as it was evaluated, sign flip included. The module holds the optimizer
    class, its decay functions and the paper's learning-rate schedule; see docs/export.md.
    """
    from nosplug.export import to_torch_source

    genome, provenance, default_name = _resolve(spec, storage)
    source = to_torch_source(genome, class_name=class_name or default_name, provenance=provenance)
    if out is None:
        click.echo(source, nl=False)
        return
    _write_atomically(Path(out), source)
    err_console.print(f"wrote {escape(out)} ({fmt} format)")


def _resolve(spec: str, storage: str | None) -> tuple[Any, dict[str, Any], str | None]:
    """(genome, provenance for the docstring, default class name) of a SPEC."""
    m = STUDY_REF.match(spec)
    if m is None:
        from nosplug import zoo

        genome = zoo.load(spec)
        is_file = spec.lower() not in zoo.names()
        return genome, ({"genome file": Path(spec).name} if is_file else {}), None
    from nosplug.export.codegen import camel_case
    from nosplug.study.kinds import best_genomes

    name, rank_text = m.group("name"), m.group("rank")
    if rank_text is not None and not (rank_text.isdigit() and int(rank_text) >= 1):
        raise UserError(f"{spec!r}: the rank after '#' must be a positive integer, as in study:{name}#1")
    rank = int(rank_text or 1)
    top = best_genomes(name, storage, n=rank)
    if len(top) < rank:
        raise UserError(f"study {name!r} has {len(top)} distinct evaluated genome(s), so there is no #{rank}")
    genome, fitness = top[rank - 1]
    provenance = {"study": name, "rank": rank, "fitness": float(fitness)}
    return genome, provenance, f"{camel_case(name)}Best{rank}"


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, so a failure leaves
    neither a partial file nor a temporary one behind (and an existing file untouched)."""
    if path.is_dir():
        raise UserError(
            f"cannot write {path}: it is a folder; give a file name such as {path / 'optimizer.py'}"
        )
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
