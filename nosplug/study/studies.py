"""Creating, finding and loading nosplug studies in an Optuna storage, for every kind alike.

A nosplug study is an Optuna study whose user attributes name its kind (``nosplug.kind``), hold
its normalised config (``nosplug.config``) and the nosplug version that created it. Everything a
worker needs to rebuild the work lives there, so any process that reaches the storage can join.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from nosplug.errors import UserError
from nosplug.quiet import quiet_optuna
from nosplug.study import trials as T
from nosplug.study.result import first_line
from nosplug.study.storage import StorageError, open_storage, shown_url, storage_url


class StudyNotFoundError(LookupError, UserError):
    """No study of that name in the storage."""


class StudyExistsError(ValueError, UserError):
    """``study create`` would overwrite an existing study."""


def jsonable(raw: Mapping[str, Any]) -> Any:
    """A config as Optuna stores it (a JSON round trip: tuples become lists)."""
    return json.loads(json.dumps(raw))


def study_names(store: optuna.storages.BaseStorage) -> list[str]:
    try:
        return [s.study_name for s in store.get_all_studies()]
    except Exception as exc:  # unreachable database, unreadable journal
        raise StorageError(f"cannot read studies from the storage: {first_line(exc)}") from exc


def exists(name: str, storage: str | None = None) -> bool:
    """Whether the storage holds a study named ``name`` (the storage must exist)."""
    return name in study_names(open_storage(storage_url(storage), create=False))


def create_study(
    name: str,
    kind: str,
    raw: Mapping[str, Any],
    *,
    storage: str | None = None,
    direction: str = "maximize",
    exist_ok: bool = False,
    identity: Callable[[Any], Any] = lambda cfg: cfg,
    attrs: Mapping[str, Any] | None = None,
    what: str = "study",
) -> optuna.Study:
    """Create the nosplug study ``name`` of ``kind`` with config ``raw``; never overwrites.

    With ``exist_ok`` an existing study of that name is returned when it is of the same kind and
    was created from the same config (compared through ``identity``, e.g. leaving out where it
    trains), so a set-up step can be repeated; anything else is an error and nothing changes.
    ``attrs`` are further study user attributes set at creation.
    """
    url = storage_url(storage)
    store = open_storage(url)
    if name in study_names(store):
        if not exist_ok:
            raise StudyExistsError(
                f"a {what} named {name!r} already exists in {shown_url(url)}; continue it with "
                f"`nosplug study run {name}` or choose another name with --name"
            )
        existing = load(name, url)
        same_kind = existing.user_attrs.get(T.KIND_ATTR) == kind
        if not same_kind or identity(existing.user_attrs.get(T.CONFIG_ATTR)) != identity(jsonable(raw)):
            raise StudyExistsError(
                f"a study named {name!r} already exists in {shown_url(url)} and was created with another "
                f"config; give this {what} another name"
            )
        return existing
    with quiet_optuna():  # library code stays quiet (nosplug.quiet)
        study = optuna.create_study(study_name=name, storage=store, direction=direction)
    study.set_user_attr(T.KIND_ATTR, kind)
    study.set_user_attr(T.CONFIG_ATTR, jsonable(raw))
    from nosplug.version import __version__

    study.set_user_attr(T.VERSION_ATTR, __version__)
    for key, value in (attrs or {}).items():
        study.set_user_attr(key, value)
    return study


def find_study(
    name: str, storage: str | None = None
) -> tuple[str, optuna.storages.BaseStorage, optuna.Study]:
    """(storage URL, opened storage, study) of the existing study ``name``, nosplug's or not; a
    clear error naming the studies there when it does not exist (nothing is created)."""
    url = storage_url(storage)
    store = open_storage(url, create=False)
    names = study_names(store)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StudyNotFoundError(f"no study named {name!r} in {shown_url(url)} (studies there: {known})")
    return url, store, optuna.load_study(study_name=name, storage=store)


def load(name: str, storage: str | None = None) -> optuna.Study:
    """The nosplug study ``name``; a clear error when it does not exist or is not nosplug's."""
    url, _store, study = find_study(name, storage)
    if T.CONFIG_ATTR not in study.user_attrs:
        raise UserError(
            f"study {name!r} in {shown_url(url)} was not created by nosplug (no {T.CONFIG_ATTR} attribute)"
        )
    return study


def kind_name(study: optuna.Study) -> str:
    """The kind a study was created as (studies of nosplug 0.1 stored none: searches)."""
    return study.user_attrs.get(T.KIND_ATTR, "search")
