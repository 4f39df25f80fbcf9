"""Small helpers shared by the tutorials: command line, step headings, running the CLI.

Not a tutorial itself. Every tutorial imports it as ``_tutorial`` (Python puts the folder of the
script being run first on ``sys.path``, so ``python tutorials/NN_name.py`` finds it from anywhere).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: Environment variable that selects the realistic budget, like ``--full``.
FULL_ENV = "NOSPLUG_TUTORIAL_FULL"


@dataclass(frozen=True)
class Options:
    """What every tutorial accepts on its command line."""

    workdir: Path
    full: bool
    extra: argparse.Namespace

    @property
    def env(self) -> dict[str, str]:
        """Extra environment for ``nosplug`` subprocesses: one torch thread unless you set one.

        The tutorials' models are tiny: one thread per process is as fast as two, and on a busy
        machine threads that wait for each other slow every step down several times. (A study's
        ``workers.threads`` still decides for its workers.)
        """
        return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def parse_args(
    doc: str | None,
    slug: str,
    argv: Sequence[str] | None = None,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
    validate: Callable[[argparse.Namespace], None] | None = None,
) -> Options:
    """``--workdir DIR`` (default: a fresh temporary folder) and ``--full`` (or ``$NOSPLUG_TUTORIAL_FULL=1``).

    ``configure`` may add tutorial-specific options to the parser; ``validate`` checks the parsed
    options (and may exit) before anything is written.
    """
    first = (doc or "").strip().splitlines()[0] if doc else slug
    parser = argparse.ArgumentParser(description=first)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for every file this tutorial writes (default: a fresh temporary folder)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        default=os.environ.get(FULL_ENV, "") not in ("", "0"),
        help=f"a realistic budget instead of the small default (also: {FULL_ENV}=1)",
    )
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    if validate is not None:
        validate(args)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"nosplug-tutorial-{slug}-"))
    workdir = workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        # Studies and runs refuse to be created twice under one name: start from a clean folder.
        parser.exit(2, f"error: the working folder {workdir} is not empty; give a new or empty one\n")
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"working folder: {workdir}")
    print(f"budget: {'full' if args.full else 'small (pass --full for a realistic one)'}")
    return Options(workdir=workdir, full=bool(args.full), extra=args)


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = f"{parts.hostname}:{parts.port}" if parts.port else f"{parts.hostname}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def step(number: int, title: str) -> None:
    """Print a step heading, so the output reads like the tutorial's text."""
    print(f"\n=== Step {number}: {title} ===", flush=True)


def nosplug_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for ``nosplug`` subprocesses: ours, wide tables, plus ``extra``."""
    env = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "110")}
    env.update(extra or {})
    return env


def run_nosplug(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    show: bool = True,
    timeout: float = 3600,
    secret: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``nosplug ARGS`` (as ``python -m nosplug``) in ``cwd``, echo the command and its output.

    With ``check`` a non-zero exit status stops the tutorial with the command's error output.
    ``secret`` (a storage URL) is printed with its password masked.
    """
    cmd = [sys.executable, "-m", "nosplug", *args]

    def hide(text: str) -> str:
        return text.replace(secret, mask_url(secret)) if secret else text

    if show:
        print(hide(f"\n$ nosplug {shlex.join(args)}"), flush=True)
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=nosplug_env(env), capture_output=True, text=True, timeout=timeout)
    if show:
        text = out.stdout.rstrip()
        if text:
            print(hide(text))
        if out.stderr.strip():
            print(hide(out.stderr.rstrip()))
        print(f"[exit status {out.returncode}, {time.perf_counter() - started:.1f} s]", flush=True)
    if check and out.returncode != 0:
        raise SystemExit(
            hide(f"`nosplug {shlex.join(args)}` failed with status {out.returncode}:\n{out.stderr}")
        )
    return out


def stream_nosplug_jsonl(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``nosplug ARGS`` that print one JSON object per line (``--jsonl``); return the events.

    Events are handed to ``on_event`` as they arrive, so a long run shows its progress live.
    """
    cmd = [sys.executable, "-m", "nosplug", *args]
    print(f"\n$ nosplug {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    events: list[dict[str, Any]] = []
    other: list[str] = []
    # stderr joins stdout: one pipe cannot fill up unread while we wait on the other
    with subprocess.Popen(
        cmd, cwd=cwd, env=nosplug_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip()
            if not line.startswith("{"):
                other.append(line)
                print(line, flush=True)
                continue
            event = json.loads(line)
            events.append(event)
            if on_event is not None:
                on_event(event)
        code = proc.wait()
    print(f"[exit status {code}, {time.perf_counter() - started:.1f} s]", flush=True)
    if code != 0:
        raise SystemExit(f"`nosplug {shlex.join(args)}` failed with status {code}:\n" + "\n".join(other))
    return events
