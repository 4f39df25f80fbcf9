"""``nosplug task``: the tasks an evaluation can train (built-in and from plugins)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json, fitted, name_column


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
    console.print(task_table(rows))


def task_table(rows: list[dict]):
    """One row per task (task and metric names never split, :func:`fitted`), each task's
    description below the table, where it can run the full width."""
    from rich.console import Group
    from rich.text import Text

    def build(labels: list[str]) -> Table:
        table = Table(
            title="tasks, metric ↑ higher or ↓ lower is better (also: any module:callable returning "
            "a nosplug.tasks.Task)",
            title_justify="left",
        )
        name_column(table, "task")
        table.add_column("metric", no_wrap=True)
        table.add_column("options", ratio=1)
        for label, r in zip(labels, rows):
            arrow = "↑" if r["direction"] == "maximize" else "↓"
            table.add_row(
                escape(label), f"{escape(r['metric'])} {arrow}", escape(", ".join(r["options"]) or "-")
            )
        return table

    about = [Text.assemble((f"{r['name']}: ", "bold"), r["description"]) for r in rows]
    return Group(fitted(build, [r["name"] for r in rows]), *about)
