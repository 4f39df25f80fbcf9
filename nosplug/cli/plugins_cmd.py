"""``nosplug plugins list``: every plugin, its version and what it registers."""

from __future__ import annotations

import click
from rich.table import Table

from nosplug.cli.console import console, emit_json


@click.group()
def plugins() -> None:
    """Inspect the plugins nosplug has loaded."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_plugins(as_json: bool) -> None:
    """Show each plugin with its version and what it registers."""
    from nosplug.plugins import disabled_plugins, plugin_infos
    from nosplug.primitives.registry import KIND_BY_KEY, registry

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
    table = Table(title="nosplug plugins", show_lines=True)
    table.add_column("plugin", style="bold cyan")
    table.add_column("version")
    table.add_column("registers")
    for row in rows:
        parts = []
        for kind, names in row["registers"].items():
            label = KIND_BY_KEY[kind].label
            shown = ", ".join(names[:12]) + (f", … (+{len(names) - 12})" if len(names) > 12 else "")
            parts.append(f"[bold]{len(names)} {_plural(label, len(names))}[/bold]: {shown}")
        table.add_row(
            row["name"] + ("" if row["builtin"] else f"\n[dim]{row['module']}[/dim]"),
            row["version"],
            "\n".join(parts) or "[dim]nothing[/dim]",
        )
    console.print(table)
    disabled = disabled_plugins()
    if disabled:
        console.print(f"[yellow]disabled:[/yellow] {', '.join(sorted(disabled))}")


def _plural(label: str, n: int) -> str:
    """English plural of a kind label: "family" -> "families", "loss" -> "losses"."""
    if n == 1:
        return label
    if label.endswith("y"):
        return label[:-1] + "ies"
    return label + ("es" if label.endswith(("s", "x", "sh", "ch")) else "s")
