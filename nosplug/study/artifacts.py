"""Study results as Optuna artifacts: files attached to the study or its trials, beside the data.

A finished search attaches its best genomes to the trials that evaluated them (``NAME_bestK.json``,
the genome as evaluated, and ``NAME_bestK.py``, the same optimizer as ``nosplug genome export
study:NAME#K``); ``nosplug report`` attaches the report's documents and figures to the study; a
trained amalgamation student (``student.pt`` and ``student.json``) is attached to its run. They
live in the artifact store that :func:`nosplug.study.storage.artifacts_url` chooses, and
optuna-dashboard (``nosplug dashboard NAME``) lists them next to the trials and serves them.

**Idempotent.** Attaching compares content, not just names: a file whose name is attached with
the same bytes (SHA-256 of the stored artifact) is skipped, so a resumed or re-run command adds
nothing. A file whose name is attached with *different* bytes (a report built again after more
trials) is uploaded and the older artifacts of that name are detached and deleted, so the
dashboard shows one current ``report.html``, never a pile of them. Workers of one study finish
together, so every publish holds a lock of the study (the planning lock's mechanism under the
name ``NAME/artifacts``): the second worker finds the first one's files and skips them.

**Failure.** Only "no artifact store configured" (a database or Redis storage without
``--artifacts``) is a note; every other failure (an unwritable folder, S3 refusing, the storage
gone) is an :class:`ArtifactError`, one line, and a partly written artifact is detached again.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nosplug.errors import UserError
from nosplug.study import optuna_adapter as oa
from nosplug.study.locks import planning_lock
from nosplug.study.result import first_line
from nosplug.study.storage import (
    artifacts_url,
    check_artifact_store,
    no_artifacts_note,
    open_artifact_store,
    storage_url,
)

_CHUNK = 1 << 20


class ArtifactError(UserError):
    """Attaching a result failed for another reason than a missing artifact store."""


@dataclass
class Attached:
    """What one publish did, for a summary line (``note`` set when nothing could be attached)."""

    target: str
    where: str = ""
    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    holders: int = 0  # trials the files belong to (0: the study itself)
    note: str | None = None

    def line(self) -> str:
        """One line for the CLI: what is attached where, or why nothing is."""
        if self.note and not (self.added or self.unchanged):
            return self.note
        files = len(self.added) + len(self.unchanged)
        on = f"{self.holders} trial{'s' if self.holders != 1 else ''} of " if self.holders else ""
        counts = [f"{len(self.added)} new"]
        if self.replaced:
            counts.append(f"{len(self.replaced)} of them replacing older versions")
        counts.append(f"{len(self.unchanged)} already there")
        text = (
            f"artifacts: {files} file{'s' if files != 1 else ''} on {on}{self.target} in {self.where} "
            f"({', '.join(counts)})"
        )
        return text + (f"; {self.note}" if self.note else "")


# ----------------------------------------------------------------------------- what is published
def publish_genomes(
    study: optuna.Study,
    top: Sequence[FrozenTrial],
    storage: str | None = None,
    artifacts: str | None = None,
) -> Attached:
    """Attach the ranked genomes ``top`` (best first) of a finished study to the trials that
    evaluated them (the search kind passes its :func:`~nosplug.search.ranking.best`).

    Each trial gets ``NAME_bestK.json`` (the genome as evaluated: sign flip applied, loadable by
    ``nosplug genome show``) and ``NAME_bestK.py`` (the exported optimizer with the study, rank
    and fitness in its docstring; skipped with a note for a genome a plugin primitive keeps from
    being exported).
    """
    from nosplug.export import ExportError, to_torch_source
    from nosplug.export.codegen import camel_case
    from nosplug.study import trials as T

    name = study.study_name
    out = Attached(f"study {name!r}")
    store = _store(storage, artifacts, out)
    if store is None:
        return out
    unexportable = []
    with tempfile.TemporaryDirectory(prefix="nosplug-artifacts-") as tmp, _lock(storage, name):
        out.holders = len(top)
        if not top:
            out.note = f"artifacts: study {name!r} has no evaluation with a fitness, so no genome is attached"
        for rank, t in enumerate(top, 1):
            genome = T.evaluated_genome(t.user_attrs)
            fitness = float(t.user_attrs[T.FITNESS])
            folder = Path(tmp) / str(rank)
            folder.mkdir()
            files = [_write(folder / best_file(name, rank, "json"), genome.to_json())]
            try:
                source = to_torch_source(
                    genome,
                    class_name=f"{camel_case(name)}Best{rank}",
                    provenance={"study": name, "rank": rank, "fitness": fitness},
                )
                files.append(_write(folder / best_file(name, rank, "py"), source))
            except ExportError:
                unexportable.append(f"#{rank}")
            _sync(study, store, files, out, trial=t, label=f"trial {t.number}")
    if unexportable:
        out.note = f"no .py for {', '.join(unexportable)}: a primitive has no source form (docs/export.md)"
    return out


def best_file(name: str, rank: int, ext: str) -> str:
    """``NAME_bestK.EXT``, the study's name as it is (``my-study_best1.json``); only characters
    a file name cannot hold (separators, spaces) become ``_``."""
    stem = re.sub(r"[^\w.-]+", "_", name).strip("_.") or "study"
    return f"{stem}_best{rank}.{ext}"


def line_if_done(study: optuna.Study, storage: str | None = None, artifacts: str | None = None) -> str:
    """The artifacts line of a finished study, for the parent of ``study run --workers K``.

    Its worker processes attach the results and print nothing; this asks the study's kind again
    (:meth:`~nosplug.study.kinds.KindStudy.on_done`, idempotent), which finds them attached (or
    attaches what a worker could not) and says so. An unfinished study attaches nothing: "".
    """
    from nosplug.study.kinds import open_study

    ctx = open_study(study)
    if not ctx.queued or not ctx.plan_state().done:
        return ""
    return ctx.on_done(storage_url(storage), artifacts)


def publish_report(
    name: str, files: Sequence[Path], storage: str | None = None, artifacts: str | None = None
) -> Attached:
    """Attach a report's files (``report.md``, ``report.html``, the PNG figures) to study ``name``."""
    from nosplug.study.studies import load

    out = Attached(f"study {name!r}")
    store = _store(storage, artifacts, out)
    if store is None:
        return out
    study = load(name, storage)
    with _lock(storage, name):
        _sync(study, store, [Path(f) for f in files], out, trial=None, label=f"study {name!r}")
    return out


def publish_student(
    study: optuna.Study, path: Path, storage: str | None = None, artifacts: str | None = None
) -> Attached:
    """Attach a trained amalgamation student (``PATH.pt`` and ``PATH.json``) to its run's study."""
    name = study.study_name
    out = Attached(f"amalgamation run {name!r}")
    store = _store(storage, artifacts, out)
    if store is None:
        return out
    path = Path(path).with_suffix("")
    files = [path.with_suffix(".pt"), path.with_suffix(".json")]
    with _lock(storage, name):
        _sync(study, store, files, out, trial=None, label=out.target)
    return out


def check(storage: str | None = None, artifacts: str | None = None) -> None:
    """Fail now, in one line, if the artifact store in force for ``storage`` cannot work (a file
    where a folder should be, ``s3://`` without boto3): commands call this before their work,
    not after hours of it. Creates nothing; no store configured is fine (a note comes later)."""
    url = artifacts_url(artifacts, storage)
    if url is not None:
        check_artifact_store(url)


def open_store(storage: str | None = None, artifacts: str | None = None, *, create: bool = True) -> Any:
    """The artifact store in force for ``storage`` (see :func:`~nosplug.study.storage.artifacts_url`),
    or None when there is none."""
    url = artifacts_url(artifacts, storage)
    return None if url is None else open_artifact_store(url, create=create)


def listed(study: optuna.Study, trial: FrozenTrial | None = None) -> list[optuna.artifacts.ArtifactMeta]:
    """The artifacts attached to ``trial`` (or to the study), the way optuna-dashboard lists them."""
    return oa.artifact_metas(study, trial)


# ----------------------------------------------------------------------------- the mechanism
def _store(storage: str | None, artifacts: str | None, out: Attached) -> Any:
    url = artifacts_url(artifacts, storage)
    if url is None:
        out.note = no_artifacts_note(storage)
        return None
    out.where = url if url.startswith("s3://") else str(Path(url))
    return open_artifact_store(url)


def _lock(storage: str | None, name: str) -> contextlib.AbstractContextManager[None]:
    """Serialise publishes of one study (workers finishing together), not its planning."""
    return planning_lock(storage, f"{name}/artifacts")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _digest_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest_stored(store: Any, artifact_id: str) -> str | None:
    """SHA-256 of a stored artifact; None when its bytes are missing (an interrupted upload)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    h = hashlib.sha256()
    try:
        with store.open_reader(artifact_id) as reader:
            for chunk in iter(lambda: reader.read(_CHUNK), b""):
                h.update(chunk)
    except ArtifactNotFound:
        return None
    return h.hexdigest()


def _sync(
    study: optuna.Study,
    store: Any,
    files: Iterable[Path],
    out: Attached,
    *,
    trial: FrozenTrial | None,
    label: str,
) -> None:
    """Make each file attached to ``trial`` (or the study) exactly once with its current bytes."""
    where = out.where
    try:
        attached = oa.artifact_metas(study, trial)
    except Exception as exc:
        raise ArtifactError(f"cannot list the artifacts of {label}: {first_line(exc)}") from exc
    for path in files:
        same_name = [m for m in attached if m.filename == path.name]
        try:
            digest = _digest_file(path)
            stored = {m.artifact_id: _digest_stored(store, m.artifact_id) for m in same_name}
            if digest in stored.values():
                keep = next(i for i, d in stored.items() if d == digest)
                for m in same_name:  # left by a replacement that was interrupted: one per name
                    if m.artifact_id != keep:
                        _remove(study, store, m.artifact_id, trial)
                out.unchanged.append(f"{label}: {path.name}")
                continue
            known = {m.artifact_id for m in oa.artifact_metas(study, trial)}
            try:
                oa.upload_artifact(study, store, str(path), trial)
            except BaseException:
                _detach_dangling(study, store, trial, path.name, known)
                raise
            for m in same_name:  # older versions of this file (or a broken upload): keep one
                _remove(study, store, m.artifact_id, trial)
        except UserError:
            raise
        except Exception as exc:
            raise ArtifactError(
                f"cannot attach {path.name} to {label} in artifact store {where}: {first_line(exc)}"
            ) from exc
        out.added.append(f"{label}: {path.name}")
        if same_name:
            out.replaced.append(f"{label}: {path.name}")


def _detach_dangling(
    study: optuna.Study, store: Any, trial: FrozenTrial | None, filename: str, known: set[str]
) -> None:
    """Optuna records an artifact's metadata before writing its bytes; after a failed write, detach
    the record so the dashboard does not list a file it cannot serve (best effort: the original
    error is what the user needs to see)."""
    try:
        for m in oa.artifact_metas(study, trial):
            if m.filename == filename and m.artifact_id not in known:
                _remove(study, store, m.artifact_id, trial)
    except Exception:  # the upload's own error, raised by the caller, is the one to show
        pass


def _remove(study: optuna.Study, store: Any, artifact_id: str, trial: FrozenTrial | None) -> None:
    from optuna.artifacts.exceptions import ArtifactNotFound

    oa.detach_artifact(study, artifact_id, trial)
    with contextlib.suppress(ArtifactNotFound):  # an interrupted upload never wrote its bytes
        store.remove(artifact_id)


__all__ = [
    "ArtifactError",
    "Attached",
    "best_file",
    "check",
    "listed",
    "open_store",
    "publish_genomes",
    "publish_report",
    "publish_student",
]
