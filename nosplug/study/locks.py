"""The planning lock: one worker at a time turns results into new queued trials.

Handing trials *out* is safe without it (Optuna's WAITING -> RUNNING transition is atomic in every
storage). Planning is not: two workers that both see a finished timestep would both enqueue its
children. The lock lives next to the data: a file lock beside a journal or SQLite file, a
PostgreSQL/MySQL advisory lock for a database shared by several machines, a Redis ``SET NX``
lease for Redis, a process-local lock for in-memory storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from nosplug.study.storage import StorageError, database_url, shown_url, storage_url

_local_locks: dict[str, threading.Lock] = {}
_engines: dict[str, object] = {}


def _lock_id(study: str) -> int:
    """A signed 63-bit id for database advisory locks."""
    return int(hashlib.sha256(f"nosplug-plan/{study}".encode()).hexdigest()[:15], 16)


@contextlib.contextmanager
def planning_lock(url: str | None, study: str, timeout: float = 600.0) -> Iterator[None]:
    """Hold the planning lock of ``study`` in the storage behind ``url``."""
    url = storage_url(url)
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = Path(url.removeprefix("journal:"))
        with _file_lock(path.with_name(path.name + f".{_safe(study)}.plan-lock")):
            yield
    elif url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        with _file_lock(path.with_name(path.name + f".{_safe(study)}.plan-lock")):
            yield
    elif url.startswith(("postgres", "mysql")):
        with _advisory_lock(database_url(url), study, timeout):
            yield
    elif url.startswith("redis://"):
        with _redis_lock(url, study, timeout):
            yield
    else:
        lock = _local_locks.setdefault(f"{url}/{study}", threading.Lock())
        with lock:
            yield


def _safe(study: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in study)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def _advisory_lock(url: str, study: str, timeout: float) -> Iterator[None]:
    import sqlalchemy

    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    key = _lock_id(study)
    try:
        conn = engine.connect()  # type: ignore[attr-defined]
    except Exception as exc:
        raise StorageError(f"cannot reach storage {shown_url(url)!r} for the planning lock: {exc}") from exc
    try:
        if url.startswith("postgresql"):
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        else:
            got = conn.execute(
                sqlalchemy.text("SELECT GET_LOCK(:k, :t)"), {"k": str(key), "t": int(timeout)}
            ).scalar()
            if got != 1:
                raise StorageError(
                    f"timed out after {timeout:.0f} s waiting for the planning lock of {study!r}"
                )
        try:
            yield
        finally:
            if url.startswith("postgresql"):
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            else:
                conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": str(key)})
    finally:
        conn.close()


@contextlib.contextmanager
def _redis_lock(url: str, study: str, timeout: float) -> Iterator[None]:
    import redis

    client = redis.Redis.from_url(url)
    name = f"nosplug:plan-lock:{study}"
    token = f"{os.getpid()}-{time.time()}"
    deadline = time.monotonic() + timeout
    while not client.set(name, token, nx=True, px=int(timeout * 1000)):
        if time.monotonic() > deadline:
            raise StorageError(f"timed out after {timeout:.0f} s waiting for the planning lock of {study!r}")
        time.sleep(0.05)
    try:
        yield
    finally:
        if client.get(name) == token.encode():
            client.delete(name)
