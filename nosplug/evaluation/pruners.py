"""The paper's early-stopping gates as Optuna pruners.

One trial reports, in order: at step 0 the best pre-screen training accuracy, at step 1 the
best accuracy of the whole sweep, and from step 2 on the final run's epoch-mean training
accuracy (step ``2 + e`` for epoch ``e``). :class:`StagedPruner` hands each step to the Optuna
pruner of its stage; the stages are plain :class:`optuna.pruners.ThresholdPruner` instances, so
the same code decides standalone (an in-memory trial) and inside a study.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.pruners import BasePruner, NopPruner, ThresholdPruner

STEP_PRESCREEN = 0
STEP_SWEEP = 1
STEP_FINAL0 = 2


class StagedPruner(BasePruner):
    """Delegates to the pruner of the stage that the trial's latest step falls in.

    ``stages`` is a list of ``(first_step, pruner)``, sorted by first step.
    """

    def __init__(self, stages: Sequence[tuple[int, BasePruner]]) -> None:
        self.stages = sorted(stages, key=lambda s: s[0])

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        current: BasePruner = NopPruner()
        for first, pruner in self.stages:
            if step >= first:
                current = pruner
        return current.prune(study, trial)


class _AtStep(BasePruner):
    """Applies ``inner`` only at exactly ``step`` (the two sweep gates are single decisions)."""

    def __init__(self, step: int, inner: BasePruner) -> None:
        self.step, self.inner = step, inner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.last_step == self.step and self.inner.prune(study, trial)


def gate_pruner(
    prescreen_gate: float, sweep_gate: float, final_floor: float, final_floor_from_epoch: int
) -> StagedPruner:
    """The pruner that implements a preset's three gates."""
    return StagedPruner(
        [
            (STEP_PRESCREEN, _AtStep(STEP_PRESCREEN, ThresholdPruner(lower=prescreen_gate))),
            (STEP_SWEEP, _AtStep(STEP_SWEEP, ThresholdPruner(lower=sweep_gate))),
            (
                STEP_FINAL0,
                ThresholdPruner(lower=final_floor, n_warmup_steps=STEP_FINAL0 + final_floor_from_epoch),
            ),
        ]
    )


def pruner_for(preset) -> StagedPruner:
    return gate_pruner(
        preset.prescreen_gate, preset.sweep_gate, preset.final_floor, preset.final_floor_from_epoch
    )
