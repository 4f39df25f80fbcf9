"""Local workers: several worker processes on this machine, each on cores of its own.

``nosplug study run NAME --workers K`` starts K worker processes on one study
(:func:`start_workers`); worker i of K learns its place from the command line (``--slot i/K``)
and pins itself to its own cores when the machine has them (:class:`LocalSlot`). Whether a
worker that wrote a heartbeat still runs is told by :func:`process_gone`, for workers of this
machine, so their trials are handed out again at once instead of after a lease.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nosplug.errors import EvaluationCrashError


@dataclass(frozen=True)
class LocalSlot:
    """Worker ``index`` of ``count`` local workers of one study."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> LocalSlot:
        """``"i/K"`` (0 <= i < K)."""
        i, _, k = text.partition("/")
        if not (i.isdigit() and k.isdigit() and 0 <= int(i) < int(k)):
            raise ValueError(f"expected I/K with 0 <= I < K, got {text!r}")
        return cls(int(i), int(k))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def pin(self, threads: int) -> list[int] | None:
        """Pin this process to its own ``threads`` cores when the machine has ``count`` x
        ``threads`` cores to give: the workers then neither migrate between cores nor share one.
        Returns the cores, or None when not pinned (a single worker, too few cores, or no
        affinity API on this system)."""
        if self.count < 2 or not hasattr(os, "sched_setaffinity"):
            return None
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < self.count * threads:
            return None
        mine = cpus[self.index * threads : (self.index + 1) * threads]
        os.sched_setaffinity(0, mine)
        return mine


def process_gone(worker: str) -> bool:
    """True when ``worker`` (host:pid) ran on this machine and that process no longer runs."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child its parent has not waited for yet is a zombie: gone as well
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def start_workers(
    name: str,
    url: str,
    devices: Sequence[str | None],
    *,
    jsonl: bool = False,
    max_trials: int | None = None,
    threads: int | None = None,
    artifacts: str | None = None,
    wait: Callable[[list[subprocess.Popen]], list[int]] | None = None,
) -> None:
    """Run one worker process per entry of ``devices`` on study ``name`` until they stop.

    ``wait`` waits for the processes and returns their exit codes (the CLI shows progress while
    it waits). Each child's error line (a crash that used up its retries, a failed preflight) is
    collected and raised once as :class:`~nosplug.errors.EvaluationCrashError`.
    """
    k = len(devices)
    cmd = [sys.executable, "-m", "nosplug", "study", "run", name, "--storage", url, "--workers", "1"]
    cmd += ["--jsonl"] if jsonl else ["--quiet"]
    if max_trials:
        cmd += ["--max-trials", str(max_trials)]
    if threads:
        cmd += ["--threads", str(threads)]
    if artifacts:
        cmd += ["--artifacts", artifacts]
    with contextlib.ExitStack() as files:
        logs = [files.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(k)]
        procs = [
            subprocess.Popen(
                [*cmd, "--slot", f"{i}/{k}", *(["--device", dev] if dev else [])],
                stdout=None if jsonl else subprocess.DEVNULL,
                stderr=log,
            )
            for i, (log, dev) in enumerate(zip(logs, devices))
        ]
        try:
            codes = (wait or _wait_all)(procs)
        except KeyboardInterrupt:
            for p in procs:
                p.wait()  # they got the same Ctrl-C and mark their trials abandoned
            raise
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
    errors: list[str] = []
    for text, code in zip(outputs, codes):
        if code != 0:
            line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("error:")), None)
            line = (line or f"a worker exited with status {code}: {_last_line(text)}").removeprefix("error: ")
            if line not in errors:
                errors.append(line)
        elif text.strip():
            sys.stderr.write(text)  # warnings of a worker that succeeded
    if errors:
        failed = sum(c != 0 for c in codes)
        raise EvaluationCrashError(f"{failed} of {k} workers stopped: " + " | ".join(errors))


def _wait_all(procs: list[subprocess.Popen]) -> list[int]:
    return [p.wait() for p in procs]


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"
