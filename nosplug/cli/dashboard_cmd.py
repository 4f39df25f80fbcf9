"""``nosplug dashboard NAME``: optuna-dashboard on a study's storage and artifact store.

Every study nosplug writes (searches, elimination, amalgamation runs) is a plain Optuna study, and
its results are Optuna artifacts (:mod:`nosplug.study.artifacts`), so Optuna's own dashboard shows
the trials, their learning curves and attached files without any nosplug code in the browser.
This command only resolves the storage and the artifact store the way every other command does
(``--storage`` / ``$NOSPLUG_STORAGE``, ``--artifacts`` / ``$NOSPLUG_ARTIFACTS`` / the folder
beside the journal) and prints the address of the study's page.
"""

from __future__ import annotations

import importlib.util
import os
import socket

import click
from rich.markup import escape

from nosplug.cli.console import console, err_console
from nosplug.cli.options import ARTIFACTS_HELP, STORAGE_HELP
from nosplug.errors import UserError

INSTALL = "pip install 'nosplug[dashboard]'"


class DashboardError(UserError):
    """optuna-dashboard is missing or cannot listen where asked."""


@click.command()
@click.argument("name")
@click.option("--storage", help=STORAGE_HELP)
@click.option("--artifacts", help=ARTIFACTS_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port.")
def dashboard(name: str, storage: str | None, artifacts: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard on the storage of study NAME, with its artifacts; Ctrl-C stops it.

    The dashboard shows every study in the storage; the address printed is NAME's page. It listens
    on loopback unless --host says otherwise: it can rename and delete studies, so do not expose it
    on a shared network.
    """
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise DashboardError(f"nosplug dashboard needs optuna-dashboard, which is not installed: {INSTALL}")
    import optuna

    from nosplug.study import optuna_adapter as oa
    from nosplug.study.storage import (
        ARTIFACTS_ENV,
        artifacts_url,
        no_artifacts_note,
        open_artifact_store,
        shown_url,
    )
    from nosplug.study.studies import find_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, store, study = find_study(name, storage)
    where = artifacts_url(artifacts, url)
    artifact_store = None
    if where is None:
        err_console.print(f"[yellow]note:[/yellow] {escape(no_artifacts_note(url))}")
    else:
        # the folder beside the journal may not exist before anything was attached; a folder the
        # user named must exist (a mistyped path would otherwise show an empty, new store)
        chosen = bool(artifacts or os.environ.get(ARTIFACTS_ENV))
        artifact_store = open_artifact_store(where, create=not chosen)
    address = f"http://{_host_for_url(host)}:{port}{oa.dashboard_study_path(study)}"
    # soft_wrap: the address stays one line to copy (and to find) whatever the terminal's width
    console.print(
        f"optuna-dashboard for study [bold]{escape(name)}[/bold]: {escape(address)}", soft_wrap=True
    )
    console.print(
        f"  storage {escape(shown_url(url))}, artifacts {escape(where or 'none')}; Ctrl-C stops it",
        soft_wrap=True,
    )

    from optuna_dashboard import run_server

    try:
        run_server(store, host=host, port=port, artifact_store=artifact_store)
    except OSError as exc:  # the port is taken, the address is not this machine's
        raise DashboardError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def _host_for_url(host: str) -> str:
    """``host`` as it goes into an address to open: a wildcard becomes this machine's name, and an
    IPv6 address gets its brackets."""
    if host in ("", "0.0.0.0", "::"):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
