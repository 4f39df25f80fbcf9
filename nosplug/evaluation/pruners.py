"""The paper's early-stopping gates as an Optuna pruner, in the task's gate units.

An evaluation asks its reporter at each gate (:mod:`nosplug.evaluation.reporter`). Reporting to a
trial (:class:`TrialReporter`), the gate's value is published in the trial's user attribute
``gate`` (the stage, the value, and for the final run the epoch) and ``trial.should_prune()``
asked; :class:`GatePruner` decides. The gates read training accuracies, which the paper's gates
are defined on, while the trial's *intermediate values* are left to the validation curve that
fitness is read from, so optuna-dashboard plots the curve behind each fitness. The same pruner
decides standalone (:class:`~nosplug.evaluation.reporter.GateReporter`) and inside a study.

Gates (spec §8): pre-screen (best training accuracy of the pre-screen rates at least
``prescreen_gate``), sweep (best of all rates at least ``sweep_gate``), and the final run's
floor (epoch-mean training accuracy at least ``final_floor`` from epoch index
``final_floor_from_epoch`` on). A non-finite value never passes.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.pruners import BasePruner

from nosplug.tasks.base import Gates

#: Trial user attribute holding the value of the gate being decided.
GATE_ATTR = "gate"
PRESCREEN, SWEEP, FINAL = "prescreen", "sweep", "final"


class GatePruner(BasePruner):
    """Prunes when the published gate value falls short of its threshold.

    ``direction`` is the direction of the gated metric: ``"maximize"`` (accuracy: prune below
    the threshold) or ``"minimize"`` (a loss: prune above it).
    """

    def __init__(
        self,
        prescreen_gate: float,
        sweep_gate: float,
        final_floor: float,
        final_floor_from_epoch: int,
        direction: str = "maximize",
    ) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be maximize or minimize, got {direction!r}")
        self.thresholds = {PRESCREEN: prescreen_gate, SWEEP: sweep_gate, FINAL: final_floor}
        self.final_from = final_floor_from_epoch
        self.direction = direction

    def passes(self, stage: str, value: float, epoch: int = 0) -> bool:
        """The gate decision itself (pure; :meth:`prune` applies it to a trial)."""
        if not math.isfinite(value):
            return False
        if stage == FINAL and epoch < self.final_from:
            return True
        limit = self.thresholds[stage]
        return value >= limit if self.direction == "maximize" else value <= limit

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        gate: dict[str, Any] | None = trial.user_attrs.get(GATE_ATTR)
        if not gate:
            return False
        value = gate.get("value")
        value = float("nan") if value is None else float(value)
        return not self.passes(gate["stage"], value, int(gate.get("epoch", 0)))


class TrialReporter:
    """An evaluation reporting to an Optuna trial (a :class:`~nosplug.evaluation.reporter.Reporter`):
    the validation curve becomes the trial's intermediate values (what optuna-dashboard plots),
    and each gate is published in the trial's user attribute ``gate`` and decided by the study's
    pruner through ``trial.should_prune()``, exactly as inside ``study.optimize``."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def report(self, value: float, step: int) -> None:
        self.trial.report(value, step)

    def gate(self, stage: str, value: float, epoch: int = 0) -> bool:
        v = float(value)
        attr = {"stage": stage, "value": v if math.isfinite(v) else None, "epoch": epoch}
        self.trial.set_user_attr(GATE_ATTR, attr)
        return self.trial.should_prune()


def stage_gates(task, preset) -> Gates:
    """The task's gates with the preset's explicit thresholds (in the task's gate units)."""
    g = task.gates
    return Gates(
        g.prescreen if preset.prescreen_gate is None else float(preset.prescreen_gate),
        g.sweep if preset.sweep_gate is None else float(preset.sweep_gate),
        g.run if preset.run_gate is None else float(preset.run_gate),
        g.final_floor if preset.final_floor is None else float(preset.final_floor),
        g.scale,
    )


def pruner_for(task, preset) -> GatePruner:
    """The Optuna pruner that decides a stage's gates for ``task``."""
    g = stage_gates(task, preset)
    return GatePruner(
        g.prescreen, g.sweep, g.final_floor, preset.final_floor_from_epoch, g.direction(task.train_metric)
    )
