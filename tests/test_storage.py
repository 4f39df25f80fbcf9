"""Storage resolution, and recovery from a journal lock left behind by a killed worker."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from nosplug.study.storage import StorageError, open_storage, storage_url

HOLD_LOCK_AND_DIE = """
import os
from nosplug.study.storage import open_storage
storage = open_storage("journal:rel/journal.log")
storage._backend._lock.acquire()   # the state of a worker killed in the middle of a write
os._exit(0)
"""


def test_default_url_and_environment(monkeypatch) -> None:
    monkeypatch.delenv("NOSPLUG_STORAGE", raising=False)
    assert storage_url() == "journal:nosplug-studies/journal.log"
    monkeypatch.setenv("NOSPLUG_STORAGE", "sqlite:///x.db")
    assert storage_url() == "sqlite:///x.db"
    assert storage_url("journal:y.log") == "journal:y.log"


def test_unknown_or_missing_storage_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a URL nosplug understands"):
        open_storage("ftp-ish")
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"journal:{tmp_path / 'none.log'}", create=False)
    assert not (tmp_path / "none.log").exists()


def test_a_relative_journal_path_gives_a_lock_that_resolves(tmp_path: Path, monkeypatch) -> None:
    """Optuna's journal lock is a symlink to the journal; with a relative target it would dangle."""
    monkeypatch.chdir(tmp_path)
    storage = open_storage("journal:rel/journal.log")
    lock = storage._backend._lock
    lock.acquire()
    try:
        link = tmp_path / "rel" / "journal.log.lock"
        assert link.is_symlink() and link.exists(), "the lock must point at the journal itself"
    finally:
        lock.release()


@pytest.mark.slow
def test_a_lock_left_by_a_dead_worker_is_broken_and_writing_goes_on(tmp_path: Path) -> None:
    """Regression: a worker SIGKILLed inside a journal write used to block every later writer."""
    optuna.create_study(study_name="s", storage=_open_in(tmp_path))
    subprocess.run([sys.executable, "-c", HOLD_LOCK_AND_DIE], cwd=tmp_path, check=True)
    assert (tmp_path / "rel" / "journal.log.lock").is_symlink()
    t0 = time.monotonic()
    study = optuna.load_study(study_name="s", storage=_open_in(tmp_path))
    study.set_user_attr("after", "the dead worker")  # a write: needs the lock
    assert time.monotonic() - t0 < 90, "Optuna's grace period (30 s) breaks the stale lock"
    assert study.user_attrs["after"] == "the dead worker"


def _open_in(cwd: Path) -> optuna.storages.BaseStorage:
    import os

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return open_storage("journal:rel/journal.log")
    finally:
        os.chdir(old)


def test_passwords_never_appear_in_messages() -> None:
    from nosplug.study.storage import shown_url

    url = "postgresql+psycopg2://alice:s3cr3t@db.example:5432/nos"
    assert shown_url(url) == "postgresql+psycopg2://alice:***@db.example:5432/nos"
    assert shown_url("journal:/tmp/x.log") == "journal:/tmp/x.log"
    assert shown_url("redis://localhost:6379") == "redis://localhost:6379"
    with pytest.raises(StorageError) as err:
        open_storage("postgresql+psycopg2://alice:s3cr3t@127.0.0.1:1/nos")  # nothing listens on port 1
    assert "s3cr3t" not in str(err.value) and "alice:***@" in str(err.value)


@pytest.mark.parametrize(
    ("installed", "url", "expected"),
    [
        ({"psycopg", "psycopg2"}, "postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ({"psycopg2"}, "postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ({"psycopg"}, "postgres://u:pw@h:5432/db", "postgresql+psycopg://u:pw@h:5432/db"),
        ({"psycopg"}, "postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        (set(), "sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_plain_postgresql_urls_use_whichever_driver_is_installed(
    monkeypatch, installed, url, expected
) -> None:
    from nosplug.study import storage

    monkeypatch.setattr(storage, "_importable", lambda module: module in installed)
    assert storage.database_url(url) == expected


@pytest.mark.parametrize(
    ("installed", "url", "named"),
    [
        (set(), "postgresql://alice:s3cr3t@h/db", "pip install 'nosplug[postgres]'"),
        ({"psycopg"}, "postgresql+psycopg2://alice:s3cr3t@h/db", "'psycopg2'"),
        (set(), "mysql://alice:s3cr3t@h/db", "pip install 'mysqlclient'"),
    ],
)
def test_a_missing_database_driver_is_named_with_its_install_command(
    monkeypatch, installed, url, named
) -> None:
    from nosplug.study import storage

    monkeypatch.setattr(storage, "_importable", lambda module: module in installed)
    with pytest.raises(StorageError) as err:
        open_storage(url)
    message = str(err.value)
    assert named in message and "s3cr3t" not in message and "\n" not in message
