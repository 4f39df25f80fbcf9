"""Every use of Optuna internals, in one place, each with the reason public API does not suffice.

nosplug runs its own worker loop instead of ``study.optimize`` (work is planned by a GA and
handed out through Optuna's queue, several workers share it, dead workers' trials are handed
out again). Optuna's public API covers asking for new trials and telling results, but not
claiming a *particular* waiting trial, writing attributes of a trial we hold only as a
:class:`~optuna.trial.FrozenTrial`, or failing a trial that another process started. Those need
the study's storage and the trial's storage id, which Optuna keeps in private attributes
(``Study._storage``, ``Study._study_id``, ``FrozenTrial._trial_id``). Artifacts (results attached
for optuna-dashboard) need the same ids, plus the system attributes in which Optuna and the
dashboard record them. When a new Optuna release renames them, this module is the one file to
change; ``tests/test_optuna_adapter.py`` pins each function against the installed Optuna.

The module imports nothing from nosplug, so study, amalgamation and benchmark code can share it.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import uuid
from typing import Any

import optuna
import optuna.artifacts
from optuna.artifacts import ArtifactMeta
from optuna.trial import FrozenTrial, TrialState

#: System attributes holding artifact metadata: ``optuna.artifacts``' own prefix (on the study or
#: trial), and optuna-dashboard's record of a trial's artifact kept on the study.
ARTIFACTS_ATTR_PREFIX = "artifacts:"
DASHBOARD_TRIAL_ARTIFACTS_PREFIX = "dashboard:artifacts:"
DEFAULT_MIMETYPE = "application/octet-stream"


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study writes to.

    Why private: ``Study`` exposes no public accessor for its storage, and the writes below
    (attributes of a trial we hold as a FrozenTrial) are only possible on the storage.
    """
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The storage's id of ``study``. Why private: needed for ``get_all_trials`` with a state
    filter straight from the storage, which skips the study's per-call deep copies."""
    return study._study_id


def trial_id(trial: FrozenTrial | optuna.Trial) -> int:
    """The storage's id of a trial (not its number). Why private: every storage write is keyed
    by this id, and a FrozenTrial (what ``get_trials`` returns) does not expose it publicly."""
    return trial._trial_id


def set_attr(study: optuna.Study, trial: FrozenTrial, key: str, value: Any) -> None:
    """Write a user attribute of a trial we hold as a FrozenTrial (e.g. one another worker ran).

    Why private: ``Trial.set_user_attr`` needs a live ``Trial`` object, which Optuna hands out
    only from ``ask``; a reclaiming worker holds someone else's trial.
    """
    storage_of(study).set_trial_user_attr(trial_id(trial), key, value)


def set_intermediate(study: optuna.Study, trial: FrozenTrial, step: int, value: float) -> None:
    """Write an intermediate value of a FrozenTrial (copying a finished trial's curve to a reused one)."""
    storage_of(study).set_trial_intermediate_value(trial_id(trial), step, value)


def claim(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Move a WAITING trial to RUNNING if nobody else did; True when this process got it.

    Why private: ``study.ask()`` pops *some* waiting trial, but a worker must pick the waiting
    trial the plan put first, and skip ones enqueued by other tools. The storage's
    WAITING -> RUNNING transition is atomic, which is what makes one trial go to one worker.
    """
    try:
        return storage_of(study).set_trial_state_values(trial_id(trial), TrialState.RUNNING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def fail(study: optuna.Study, trial: FrozenTrial) -> None:
    """Mark a trial FAIL whoever runs it (a dead worker's trial); a finished trial stays as it is.

    Why private: ``study.tell`` accepts only trials this process may finish through the public
    flow; failing another process's RUNNING trial needs the storage.
    """
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        storage_of(study).set_trial_state_values(trial_id(trial), TrialState.FAIL)


def waiting(study: optuna.Study) -> list[FrozenTrial]:
    """WAITING trials in number order, read without deep copies (the worker loop polls this)."""
    trials = storage_of(study).get_all_trials(study_id(study), deepcopy=False, states=(TrialState.WAITING,))
    return sorted(trials, key=lambda t: t.number)


def reload(study: optuna.Study, trial: FrozenTrial) -> FrozenTrial:
    """The current stored state of ``trial``."""
    return storage_of(study).get_trial(trial_id(trial))


def live_trial(study: optuna.Study, trial: FrozenTrial) -> optuna.Trial:
    """A ``Trial`` handle for a RUNNING trial this worker claimed, so ``trial.report`` and
    ``trial.should_prune`` go through the study's pruner exactly as in ``study.optimize``.

    Why private: Optuna creates ``Trial`` objects only inside ``ask``; the constructor taking a
    study and a trial id is undocumented.
    """
    return optuna.Trial(study, trial_id(trial))


# ----------------------------------------------------------------------------- artifacts
def artifact_metas(study: optuna.Study, trial: FrozenTrial | None = None) -> list[ArtifactMeta]:
    """The artifacts attached to ``trial`` (or to the study itself when None), as optuna-dashboard
    lists them.

    Why private: artifact metadata lives in system attributes (``artifacts:<id>`` of the study or
    trial, and for a finished trial ``dashboard:artifacts:<trial id>:<id>`` of the study, see
    :func:`upload_artifact`), read through the storage with the study's or trial's id. Not
    ``optuna.artifacts.get_all_artifact_meta``: it misses the second place, and raises on an
    artifact deleted in optuna-dashboard, which overwrites the attribute with JSON ``null``
    (such entries are skipped here).
    """
    storage = storage_of(study)
    study_attrs = storage.get_study_system_attrs(study_id(study))
    if trial is None:
        found = [v for k, v in study_attrs.items() if k.startswith(ARTIFACTS_ATTR_PREFIX)]
    else:
        prefix = _finished_trial_prefix(trial)
        found = [v for k, v in study_attrs.items() if k.startswith(prefix)]
        trial_attrs = storage.get_trial_system_attrs(trial_id(trial))
        found += [v for k, v in trial_attrs.items() if k.startswith(ARTIFACTS_ATTR_PREFIX)]
    out = []
    for text in found:
        meta = json.loads(text) if isinstance(text, str) else None
        if isinstance(meta, dict) and {"artifact_id", "filename"} <= meta.keys():
            out.append(
                ArtifactMeta(
                    artifact_id=meta["artifact_id"],
                    filename=meta["filename"],
                    mimetype=meta.get("mimetype") or DEFAULT_MIMETYPE,
                    encoding=meta.get("encoding"),
                )
            )
    return out


def upload_artifact(study: optuna.Study, store: Any, path: str, trial: FrozenTrial | None = None) -> str:
    """Attach the file ``path`` to ``trial`` (or to the study); returns the artifact id.

    The study, and a trial that is still running, go through Optuna's public
    ``optuna.artifacts.upload_artifact`` (it needs the storage for a FrozenTrial: private
    ``Study._storage``). A *finished* trial cannot take one: every Optuna storage refuses to
    write system attributes of a finished trial (``UpdateFinishedTrialError``), and the best
    genomes are known only when the search is over. For those the metadata goes where
    optuna-dashboard itself records artifacts of trials, a study system attribute
    ``dashboard:artifacts:<trial id>:<artifact id>``; the dashboard lists it with the trial and
    serves it from ``/artifacts/<study id>/<trial id>/<artifact id>``. The bytes are written
    first, so a failed write leaves no record pointing at nothing.
    """
    storage = storage_of(study)
    if trial is None or not trial.state.is_finished():
        return optuna.artifacts.upload_artifact(
            artifact_store=store,
            file_path=path,
            study_or_trial=trial if trial is not None else study,
            storage=storage,
        )
    artifact_id = str(uuid.uuid4())
    filename = os.path.basename(path)
    mimetype, encoding = mimetypes.guess_type(filename)
    meta = {"artifact_id": artifact_id, "filename": filename}
    meta |= {"mimetype": mimetype or DEFAULT_MIMETYPE, "encoding": encoding}
    with open(path, "rb") as f:
        store.write(artifact_id, f)
    try:
        storage.set_study_system_attr(
            study_id(study), _finished_trial_prefix(trial) + artifact_id, json.dumps(meta)
        )
    except BaseException:
        with contextlib.suppress(Exception):
            store.remove(artifact_id)
        raise
    return artifact_id


def detach_artifact(study: optuna.Study, artifact_id: str, trial: FrozenTrial | None = None) -> None:
    """Remove an artifact's metadata from ``trial`` (or the study), as optuna-dashboard's delete does.

    Why private: Optuna has no public call to delete an artifact; optuna-dashboard overwrites the
    system attribute that records it with JSON ``null`` (system attributes cannot be deleted),
    and so does this function, so the dashboard and nosplug agree on what is attached.
    """
    storage, sid, null = storage_of(study), study_id(study), json.dumps(None)
    if trial is None:
        storage.set_study_system_attr(sid, ARTIFACTS_ATTR_PREFIX + artifact_id, null)
        return
    key = _finished_trial_prefix(trial) + artifact_id
    if key in storage.get_study_system_attrs(sid):
        storage.set_study_system_attr(sid, key, null)
    else:
        storage.set_trial_system_attr(trial_id(trial), ARTIFACTS_ATTR_PREFIX + artifact_id, null)


def _finished_trial_prefix(trial: FrozenTrial) -> str:
    return f"{DASHBOARD_TRIAL_ARTIFACTS_PREFIX}{trial_id(trial)}:"


def dashboard_study_path(study: optuna.Study) -> str:
    """The path of the study's page in optuna-dashboard, ``/dashboard/studies/<study id>``.

    Why private: the dashboard addresses studies by the storage's study id, not by name.
    """
    return f"/dashboard/studies/{study_id(study)}"


def dashboard_artifact_path(study: optuna.Study, artifact_id: str, trial: FrozenTrial | None = None) -> str:
    """The path under which optuna-dashboard serves an artifact's bytes (``/artifacts/...``).

    Why private: the route is keyed by the storage's study and trial ids.
    """
    if trial is None:
        return f"/artifacts/{study_id(study)}/{artifact_id}"
    return f"/artifacts/{study_id(study)}/{trial_id(trial)}/{artifact_id}"
