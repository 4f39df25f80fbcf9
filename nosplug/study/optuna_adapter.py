"""Every use of Optuna internals, in one place, each with the reason public API does not suffice.

nosplug runs its own worker loop instead of ``study.optimize`` (work is planned by a GA and
handed out through Optuna's queue, several workers share it, dead workers' trials are handed
out again). Optuna's public API covers asking for new trials and telling results, but not
claiming a *particular* waiting trial, writing attributes of a trial we hold only as a
:class:`~optuna.trial.FrozenTrial`, or failing a trial that another process started. Those need
the study's storage and the trial's storage id, which Optuna keeps in private attributes
(``Study._storage``, ``Study._study_id``, ``FrozenTrial._trial_id``). When a new Optuna release
renames them, this module is the one file to change; ``tests/test_optuna_adapter.py`` pins each
function against the installed Optuna.

The module imports nothing from nosplug, so study, amalgamation and benchmark code can share it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState


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
