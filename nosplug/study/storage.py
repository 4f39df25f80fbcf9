"""Where studies live: any Optuna storage, chosen by URL.

Resolution order: explicit ``--storage`` URL, then ``NOSPLUG_STORAGE``, then the embedded
default, a journal file ``./nosplug-studies/journal.log``. Optuna's journal file storage is safe
for several worker processes on one machine (SQLite is not safe for many concurrent writers).

Accepted forms:

* ``postgresql://...``, ``mysql://...``, ``sqlite:///...``: Optuna's RDB storage (PostgreSQL is
  the storage for workers on several machines). A plain ``postgresql://`` URL uses the psycopg
  (3) driver that ``pip install 'nosplug[postgres]'`` installs, or psycopg2 when only that one is
  installed; ``postgresql+psycopg://`` and ``postgresql+psycopg2://`` choose one explicitly;
* ``journal:PATH`` or a path ending in ``.log`` / ``.journal``: Optuna's journal file storage;
* ``redis://...``: Optuna's journal storage on Redis.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna

from nosplug.errors import UserError

ENV = "NOSPLUG_STORAGE"
DEFAULT_JOURNAL = Path("nosplug-studies") / "journal.log"


class StorageError(UserError):
    """The storage URL is malformed or cannot be reached."""


def storage_url(explicit: str | None = None) -> str:
    """The URL in force: explicit, else ``$NOSPLUG_STORAGE``, else the embedded default."""
    if explicit:
        return explicit
    env = os.environ.get(ENV)
    if env:
        return env
    return f"journal:{DEFAULT_JOURNAL}"


def shown_url(url: str) -> str:
    """``url`` fit for messages and logs: a password in it (``scheme://user:secret@host``) is masked."""
    return re.sub(r"^([a-z0-9+.\-]+://[^:/@]*):[^@/]*@", r"\1:***@", url, flags=re.I)


#: SQLAlchemy driver name -> (its Python module, the pip requirement that installs it).
DRIVERS = {
    "psycopg": ("psycopg", "psycopg[binary]"),
    "psycopg2": ("psycopg2", "psycopg2-binary"),
    "pg8000": ("pg8000", "pg8000"),
    "pymysql": ("pymysql", "PyMySQL"),
    "mysqldb": ("MySQLdb", "mysqlclient"),
}
#: The driver SQLAlchemy uses for a dialect given without one (PostgreSQL is handled apart).
DEFAULT_DRIVER = {"mysql": "mysqldb"}


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def database_url(url: str) -> str:
    """The SQLAlchemy URL for a database ``url``, with its driver installed or a clear error.

    A plain ``postgresql://`` URL means psycopg (3) to SQLAlchemy 2; it also works with only
    psycopg2 installed, and ``postgres://`` (as many hosting services print it) is read as
    ``postgresql://``. A driver that is not installed is named with the command that installs it.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    if scheme == "postgres":
        scheme = "postgresql"
    dialect, _, driver = scheme.partition("+")
    if dialect == "postgresql" and not driver:
        if _importable("psycopg"):
            driver = "psycopg"
        elif _importable("psycopg2"):
            driver = "psycopg2"
        else:
            raise StorageError(
                f"storage {shown_url(url)!r} needs a PostgreSQL driver, and neither psycopg nor psycopg2 is "
                "installed: pip install 'nosplug[postgres]' (or pip install 'psycopg[binary]')"
            )
        scheme = f"{dialect}+{driver}"
    driver = driver or DEFAULT_DRIVER.get(dialect, "")
    if driver in DRIVERS and not _importable(DRIVERS[driver][0]):
        module, package = DRIVERS[driver]
        raise StorageError(
            f"storage {shown_url(url)!r} needs the database driver {module!r}, which is not installed: "
            f"pip install '{package}'"
        )
    return f"{scheme}://{rest}"


def open_storage(url: str | None = None, *, create: bool = True) -> optuna.storages.BaseStorage:
    """Open the Optuna storage behind ``url`` (see the module docstring), with clear errors."""
    url = storage_url(url)
    try:
        if url.startswith("journal:") or url.endswith((".log", ".journal")):
            # Absolute, because Optuna's journal lock is a symlink to this path: a relative target
            # resolves against the link's own folder, so a lock left by a killed worker would
            # dangle, Optuna could never see its age, and every later writer would wait forever.
            path = Path(url.removeprefix("journal:")).resolve()
            if not path.exists():
                if not create:
                    raise StorageError(f"storage {shown_url(url)!r} does not exist (no file {path})")
                path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
        if url.startswith("redis://"):
            return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
        if "://" in url:
            db = database_url(url)
            return optuna.storages.RDBStorage(db, engine_kwargs=_engine_kwargs(db))
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy/redis/OS errors: one readable line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.replace(url, shown_url(url))
        raise StorageError(f"cannot open storage {shown_url(url)!r}: {first}") from exc
    raise StorageError(
        f"storage {shown_url(url)!r} is not a URL nosplug understands "
        "(use postgresql://..., sqlite:///..., redis://..., or journal:PATH)"
    )


def _engine_kwargs(url: str) -> dict:
    if url.startswith("postgresql"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 5}}
    return {}
