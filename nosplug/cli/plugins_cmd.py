"""``nosplug plugins list``: every plugin, its version and what it registers."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from nosplug.cli.console import console, emit_json, fitted, name_column


@click.group()
def plugins() -> None:
    """Inspect the plugins nosplug has loaded."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_plugins(as_json: bool) -> None:
    """Show each plugin with its version and what it registers."""
    from nosplug.plugins import disabled_plugins, plugin_infos
    from nosplug.primitives.registry import registry

    reg = registry()
    registered = reg.by_plugin()
    rows = []
    for info in plugin_infos():
        kinds = registered.get(info.name, {})
        rows.append(
            {
                "name": info.name,
                "version": info.version,
                "module": info.module,
                "builtin": info.builtin,
                "registers": {k: sorted(v) for k, v in kinds.items()},
            }
        )
    if as_json:
        emit_json({"plugins": rows, "disabled": sorted(disabled_plugins())})
        return
    console.print(plugin_table(rows))
    disabled = disabled_plugins()
    if disabled:
        console.print(f"[yellow]disabled:[/yellow] {', '.join(sorted(disabled))}")


def plugin_table(rows: list[dict]):
    """One row per plugin: its name (never split, :func:`fitted`), version and what it registers
    (names wrap between names; an outside plugin's module is the first line)."""
    from nosplug.primitives.registry import KIND_BY_KEY

    def build(labels: list[str]) -> Table:
        table = Table(title="nosplug plugins", show_lines=True)
        name_column(table, "plugin", style="bold cyan")
        table.add_column("version", no_wrap=True)
        table.add_column("registers", ratio=1)
        for label, row in zip(labels, rows):
            parts = [] if row["builtin"] else [f"[dim]module {escape(row['module'])}[/dim]"]
            for kind, names in row["registers"].items():
                kind_label = KIND_BY_KEY[kind].label
                shown = ", ".join(names[:12]) + (f", … (+{len(names) - 12})" if len(names) > 12 else "")
                parts.append(f"[bold]{len(names)} {_plural(kind_label, len(names))}[/bold]: {escape(shown)}")
            table.add_row(escape(label), row["version"], "\n".join(parts) or "[dim]nothing[/dim]")
        return table

    return fitted(build, [r["name"] for r in rows])


def _plural(label: str, n: int) -> str:
    """English plural of a kind label: "family" -> "families", "loss" -> "losses"."""
    if n == 1:
        return label
    if label.endswith("y"):
        return label[:-1] + "ies"
    return label + ("es" if label.endswith(("s", "x", "sh", "ch")) else "s")
