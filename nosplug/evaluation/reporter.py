"""How an evaluation tells the outside world what it sees, and asks whether to go on.

An evaluation reports its validation curve point by point and asks at each early-stopping gate
whether the candidate is rejected. Who listens differs: a study's trial (the curve becomes the
trial's intermediate values, the gate goes through the study's Optuna pruner, see
:class:`nosplug.evaluation.pruners.TrialReporter`), or nobody in particular (a standalone
``evaluate_genome`` call: :class:`GateReporter` decides the gates with the same
:class:`~nosplug.evaluation.pruners.GatePruner` and keeps the curve). Evaluation code sees only
this small interface, never an ``optuna.Trial``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from nosplug.evaluation.pruners import GatePruner


class Reporter(Protocol):
    """What an evaluation reports to, and asks at its gates."""

    def report(self, value: float, step: int) -> None:
        """One point of the validation curve (the metric after ``step`` training steps)."""

    def gate(self, stage: str, value: float, epoch: int = 0) -> bool:
        """Whether the candidate is rejected at ``stage`` with ``value`` (in gate units)."""


@dataclass
class GateReporter:
    """A reporter of its own: gates decided by ``pruner``, the curve kept in ``curve``."""

    pruner: GatePruner
    curve: dict[int, float] = field(default_factory=dict)

    def report(self, value: float, step: int) -> None:
        self.curve[step] = float(value)

    def gate(self, stage: str, value: float, epoch: int = 0) -> bool:
        return not self.pruner.passes(stage, float(value), epoch)
