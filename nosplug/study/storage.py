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

Artifact stores (results attached to studies and trials, which optuna-dashboard shows and serves)
are chosen the same way: ``--artifacts`` URL, then ``NOSPLUG_ARTIFACTS``, then a folder
``artifacts/`` beside a journal or SQLite file (see :func:`artifacts_url`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, BinaryIO

import optuna

from nosplug.errors import UserError

ENV = "NOSPLUG_STORAGE"
DEFAULT_JOURNAL = Path("nosplug-studies") / "journal.log"
ARTIFACTS_ENV = "NOSPLUG_ARTIFACTS"
#: The artifact folder's name beside a journal or SQLite file.
ARTIFACTS_DIR = "artifacts"


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


# ----------------------------------------------------------------------------- artifact stores
class ArtifactStoreError(StorageError):
    """The artifact store URL is malformed, or its package is missing."""


def _local_file(url: str) -> Path | None:
    """The file of a storage that lives in one local file (journal or SQLite), else None."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        return Path(url.removeprefix("journal:"))
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///"))
    return None


def artifacts_url(explicit: str | None = None, storage: str | None = None) -> str | None:
    """The artifact store in force for ``storage``, or None when there is none.

    Explicit ``--artifacts``, else ``$NOSPLUG_ARTIFACTS``, else the folder ``artifacts/`` beside a
    journal or SQLite file: a storage that is one local file gets its results next to it, so the
    default setup needs no option. A database or Redis storage is usually shared by machines that
    do not share a folder, so it has no default; the caller says that artifacts are skipped.
    """
    if explicit:
        return explicit
    env = os.environ.get(ARTIFACTS_ENV)
    if env:
        return env
    path = _local_file(storage_url(storage))
    return str(path.parent / ARTIFACTS_DIR) if path is not None else None


def no_artifacts_note(storage: str | None = None) -> str:
    """The one line saying why nothing is attached and how to change that."""
    return (
        f"artifacts skipped: storage {shown_url(storage_url(storage))!r} has no artifact store; give "
        f"--artifacts DIR (or s3://bucket/prefix) or set {ARTIFACTS_ENV} to attach results "
        "for optuna-dashboard"
    )


class PrefixedArtifactStore:
    """An artifact store that keeps every artifact under ``prefix/`` of another store.

    Optuna's :class:`~optuna.artifacts.Boto3ArtifactStore` writes to the bucket's top level; an
    ``s3://bucket/prefix`` URL promises the prefix, so the artifact ids are prefixed here.
    """

    def __init__(self, store: Any, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self._key(artifact_id))


def check_artifact_store(url: str) -> None:
    """Refuse an artifact store URL that cannot work, before any work is done and without
    creating anything: a long search must not find out at its end that its results have nowhere
    to go. Raises :class:`ArtifactStoreError` (one line)."""
    if url.startswith("s3://"):
        if not url.removeprefix("s3://").partition("/")[0]:
            raise ArtifactStoreError(f"artifact store {url!r} names no bucket (use s3://bucket/prefix)")
        if not _importable("boto3"):
            raise ArtifactStoreError(
                f"artifact store {url!r} needs boto3, which is not installed: pip install boto3"
            )
        return
    if "://" in url:
        raise ArtifactStoreError(f"artifact store {url!r} is not a folder path or an s3://bucket/prefix URL")
    path = Path(url).expanduser()
    if path.exists() and not path.is_dir():
        raise ArtifactStoreError(f"artifact store {url!r} is not a folder")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if not path.exists() and parent is not None and not parent.is_dir():
        raise ArtifactStoreError(f"artifact store {url!r} cannot be created: {parent} is not a folder")


def open_artifact_store(url: str, *, create: bool = True) -> Any:
    """Open the artifact store behind ``url``: a folder path or ``s3://bucket/prefix``.

    ``create=False`` (the dashboard only reads) refuses a folder that does not exist instead of
    making an empty one for a mistyped path.
    """
    from optuna.artifacts import FileSystemArtifactStore

    check_artifact_store(url)
    if url.startswith("s3://"):
        from optuna.artifacts import Boto3ArtifactStore

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        try:
            store = Boto3ArtifactStore(bucket)
        except Exception as exc:  # botocore configuration errors: one readable line
            raise ArtifactStoreError(f"cannot open artifact store {url!r}: {_first(exc)}") from exc
        return PrefixedArtifactStore(store, prefix) if prefix.strip("/") else store
    path = Path(url).expanduser().resolve()
    if not path.exists():
        if not create:
            raise ArtifactStoreError(f"artifact store {url!r} does not exist (no folder {path})")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactStoreError(f"cannot create artifact folder {path}: {exc.strerror or exc}") from exc
    return FileSystemArtifactStore(path)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
