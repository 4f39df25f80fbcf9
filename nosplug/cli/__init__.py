"""The ``nosplug`` command. Sub-command groups live in their own modules and load lazily."""

from __future__ import annotations

import importlib
import sys

import click

from nosplug.errors import EvaluationCrashError, UserError

#: command name -> "module:attribute"; each module owns one click command or group.
COMMANDS: dict[str, str] = {
    "plugins": "nosplug.cli.plugins_cmd:plugins",
    "genome": "nosplug.cli.genome_cmd:genome",
    "evaluate": "nosplug.cli.evaluate_cmd:evaluate",
    "task": "nosplug.cli.task_cmd:task",
    "benchmark": "nosplug.cli.benchmark_cmd:benchmark",
    "study": "nosplug.cli.study_cmd:study",
    "amalgamate": "nosplug.cli.amalgamate_cmd:amalgamate",
    "report": "nosplug.cli.report_cmd:report",
    "dashboard": "nosplug.cli.dashboard_cmd:dashboard",
}


class LazyGroup(click.Group):
    """Imports a sub-command's module only when it is used (keeps ``nosplug --help`` fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, target in COMMANDS.items() if _module_exists(target))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None or not _module_exists(target):
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


def _module_exists(target: str) -> bool:
    return importlib.util.find_spec(target.split(":")[0]) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-p",
    "plugin_options",
    multiple=True,
    metavar="no:NAME",
    help="Disable the plugin NAME (repeatable), like pytest's -p no:NAME. "
    "The environment variable NOSPLUG_DISABLE_PLUGINS=a,b does the same.",
)
@click.version_option(package_name="nosplug")
def cli(plugin_options: tuple[str, ...]) -> None:
    """nosplug: search for optimizers and amalgamate them, with plugins for everything."""
    from nosplug import plugins

    names = []
    for opt in plugin_options:
        if not opt.startswith("no:") or len(opt) <= 3:
            raise click.BadParameter(f"expected no:NAME, got {opt!r}", param_hint="-p")
        names.append(opt[3:])
    if names:
        plugins.disable(*names)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one red line and exit status 2."""
    from rich.console import Console

    try:
        cli.main(args=argv, prog_name="nosplug", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        Console(stderr=True).print("[red]aborted[/red]")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (UserError, EvaluationCrashError) as exc:
        from rich.markup import escape

        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[bold red]error:[/bold red] {escape(str(exc))}"
        )
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
