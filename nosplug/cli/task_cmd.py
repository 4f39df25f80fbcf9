"""``nosplug task``: the tasks an evaluation can train (built-in and from plugins)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json


@click.group()
def task() -> None:
    """Tasks: what one evaluation trains (model, data splits, loss, metric and its direction)."""


@task.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_tasks(as_json: bool) -> None:
    """Every registered task with its metric, direction, plugin and options."""
    from nosplug.primitives.registry import registry
    from nosplug.tasks import resolve_task, task_specs

    reg = registry()
    rows = []
    for name, spec in sorted(task_specs().items()):
        t = resolve_task(name)  # cheap: tasks load data only when asked
        rows.append(
            {
                "name": name,
                "metric": t.metric.name,
                "direction": t.metric.direction,
                "gates": t.gates.scale,
                "options": list(spec.options),
                "plugin": reg.provenance.get(("tasks", name), "?"),
                "description": spec.description,
            }
        )
    if as_json:
        emit_json({"tasks": rows})
        return
    table = Table(
        title="tasks (also: any module:callable returning a nosplug.tasks.Task)", title_justify="left"
    )
    for col in ("task", "metric", "options", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        metric = f"{r['metric']} ({'higher' if r['direction'] == 'maximize' else 'lower'} is better)"
        table.add_row(
            escape(r["name"]), metric, escape(", ".join(r["options"]) or "-"), escape(r["description"])
        )
    console.print(table)
