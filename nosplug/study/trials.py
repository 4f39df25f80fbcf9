"""How evaluations sit in Optuna trials: user-attribute names and the trial <-> record mapping.

Every value is plain JSON and small, so optuna-dashboard, the ``optuna`` CLI and plain
``optuna.load_study`` read a nosplug study unmodified. Learning curves are intermediate values.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nosplug.genome.model import Genome
from nosplug.study.plan import COMPLETE, CRASHED, FAILED, PRUNED, Planned, Record

#: Study user attribute holding the normalised config (JSON).
CONFIG_ATTR = "nosplug.config"
#: Study user attribute naming the planner ("particle-ga" for GA studies).
KIND_ATTR = "nosplug.kind"
VERSION_ATTR = "nosplug.version"

# trial user attributes written when the evaluation is planned ...
KEY, STAGE, GENOME, HASH, FORMULA, SEED, FIXED_LR = (
    "key",
    "stage",
    "genome",
    "hash",
    "formula",
    "seed",
    "fixed_lr",
)
# ... while it runs ...
WORKER, HEARTBEAT, ABANDONED = "worker", "heartbeat", "abandoned"
# ... and when it finishes
STATUS, FITNESS, REASON, REUSED_FROM = "status", "fitness", "reason", "reused_from"
#: A crashed evaluation's error (first line) and the tail of its traceback.
ERROR, TRACEBACK = "error", "traceback"
#: Epoch-mean training accuracy at each validation point of the final run. The validation curve
#: itself (what fitness is read from) is the trial's intermediate values, keyed by training step,
#: which is what optuna-dashboard plots.
TRAIN_CURVE = "train_curve"
RESULT_ATTRS = (
    "status",
    "fitness",
    "reason",
    "eval_stage",
    "integrity",
    "lr_scores",
    "metric",
    "untrained_loss",
    "chosen_lr",
    "final_steps_run",
    "flip",
    "duration",
    "train_curve",
    "seed_fitness",
    "sweep_mode",
    "sweep_note",
)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def planned_attrs(p: Planned) -> dict[str, Any]:
    attrs: dict[str, Any] = {KEY: p.key, STAGE: p.stage, SEED: p.seed}
    if p.genome is not None:
        attrs.update(
            {GENOME: p.genome.to_json(), HASH: p.genome.canonical_hash(), FORMULA: p.genome.formula()}
        )
    if p.lr is not None:
        attrs[FIXED_LR] = p.lr
    attrs.update(p.attrs)
    return attrs


def reuse_signature(attrs: dict[str, Any]) -> str:
    """Evaluations with equal signatures give identical results, so one may stand for another.
    An evaluation without a genome (a benchmark run) is only ever itself."""
    if HASH not in attrs:
        return f"key|{attrs.get(KEY)}"
    return f"{attrs.get(STAGE)}|{attrs.get(HASH)}|{attrs.get(SEED)}|{attrs.get(FIXED_LR)}"


def stands_for_its_key(attrs: dict[str, Any]) -> bool:
    """False for trials that produced no result: abandoned by a dead worker, or crashed. Their key
    is planned again, so the evaluation is still owed."""
    return KEY in attrs and not attrs.get(ABANDONED) and attrs.get(STATUS) != CRASHED


def live_trials(trials: Iterable[FrozenTrial]) -> dict[str, FrozenTrial]:
    """key -> the trial that stands for it (abandoned and crashed trials are skipped)."""
    out: dict[str, FrozenTrial] = {}
    for t in trials:
        if not stands_for_its_key(t.user_attrs):
            continue
        key = t.user_attrs[KEY]
        if key not in out or t.number < out[key].number:
            out[key] = t
    return out


class GenomeCache:
    """Parsing genome JSON is the costly part of reading a study; trials never change genomes."""

    def __init__(self) -> None:
        self._by_trial: dict[int, Genome] = {}

    def genome(self, t: FrozenTrial) -> Genome | None:
        if GENOME not in t.user_attrs:
            return None
        g = self._by_trial.get(t.number)
        if g is None:
            g = self._by_trial[t.number] = Genome.from_json(t.user_attrs[GENOME])
        return g


def evaluated_genome(attrs: dict[str, Any]) -> Genome:
    """The genome an evaluation actually trained: the planned genome with the sign flip that the
    integrity check applied (a genome that passes only flipped is gradient ascent without it).

    Every path that hands a genome out of a study goes through here: ``study best``,
    :func:`~nosplug.study.kinds.best_genomes` (``study:NAME`` teachers, exports), reports and
    elimination candidates.
    """
    g = Genome.from_json(attrs[GENOME])
    if attrs.get("flip"):
        g.flip = not g.flip
    return g


def to_record(t: FrozenTrial, cache: GenomeCache) -> Record:
    finished = t.state in FINISHED
    status = t.user_attrs.get(STATUS) if finished else None
    if finished and status is None:
        status = {TrialState.COMPLETE: COMPLETE, TrialState.PRUNED: PRUNED}.get(t.state, FAILED)
    fitness = t.user_attrs.get(FITNESS)
    if fitness is None and t.state == TrialState.COMPLETE:
        fitness = t.value
    return Record(
        key=t.user_attrs[KEY],
        genome=cache.genome(t),
        finished=finished,
        status=status,
        fitness=fitness,
        chosen_lr=t.user_attrs.get("chosen_lr"),
        number=t.number,
        attrs=t.user_attrs,
    )


def state_for(status: str) -> TrialState:
    """Optuna's state for a result status: gate rejections are PRUNED; a non-finite run is FAIL
    (Optuna's own rule for an objective that returns NaN), and so is a crash."""
    return {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED}.get(status, TrialState.FAIL)


def copy_as_reused(source: FrozenTrial, attrs: dict[str, Any]) -> FrozenTrial:
    """A finished trial for ``attrs``' key carrying ``source``'s result (nothing is trained twice)."""
    ua = dict(attrs)
    for k in RESULT_ATTRS:
        if k in source.user_attrs:
            ua[k] = source.user_attrs[k]
    ua[REUSED_FROM] = source.number
    ua["duration"] = 0.0
    state = source.state
    return optuna.trial.create_trial(
        state=state,
        value=source.value if state == TrialState.COMPLETE else None,
        user_attrs=ua,
        intermediate_values=dict(source.intermediate_values),
    )


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
