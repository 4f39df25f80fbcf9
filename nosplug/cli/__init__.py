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
    """Entry point: every error is one red line. User errors exit with status 2; an unexpected
    exception (a bug in nosplug, a plugin or a user's task) exits with status 1, its full
    traceback written to a file the line names (``NOSPLUG_TRACEBACK=1`` prints it instead)."""
    import warnings

    from rich.console import Console

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
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

        Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(
            f"[bold red]error:[/bold red] {escape(str(exc))}"
        )
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _unexpected(exc)
    return 0


#: Where the traceback of an unexpected error goes (one file per error).
ERROR_DIR_ENV = "NOSPLUG_ERROR_DIR"


def _unexpected(exc: Exception) -> int:
    """One line naming the exception and the file that holds its full traceback; exit status 1."""
    import os
    import tempfile
    import time
    import traceback

    from rich.console import Console
    from rich.markup import escape

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    if os.environ.get("NOSPLUG_TRACEBACK"):
        err.print(escape(text), end="")
        return 1
    first = (str(exc).strip().splitlines() or [""])[0]
    where = "not written"
    try:
        folder = os.environ.get(ERROR_DIR_ENV) or os.path.join(tempfile.gettempdir(), "nosplug-errors")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"nosplug {' '.join(sys.argv[1:])}\n\n{text}")
        where = path
    except OSError as write_error:
        where = f"not written: {write_error}"
    err.print(
        f"[bold red]error:[/bold red] {escape(type(exc).__name__)}: {escape(first)} "
        f"(unexpected; full traceback: {escape(where)}; NOSPLUG_TRACEBACK=1 prints it)"
    )
    return 1


def _one_line_warnings(show):
    """``warnings.showwarning`` that prints nosplug's own warnings as one yellow line and hands
    any other warning to ``show`` (Python's)."""

    def _show(message, category, filename, lineno, file=None, line=None) -> None:
        if not category.__module__.startswith("nosplug"):
            show(message, category, filename, lineno, file, line)
            return
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(
            f"[yellow]warning:[/yellow] {escape(str(message))}"
        )

    return _show
