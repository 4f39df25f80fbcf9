"""What one work item produced: the single result type every kind of study returns.

A study kind's ``evaluate`` returns a :class:`TrialResult`; the worker writes it to the trial (its
user attributes and, for a complete result, its value) and tells Optuna the state that goes with
the status (:func:`nosplug.study.trials.state_for`). A crash (an exception) is a result of its
own (:meth:`TrialResult.crashed`): recorded on the trial, never a verdict on the work item, so
the key is planned again.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any

from nosplug.study.plan import CRASHED


@dataclass
class TrialResult:
    """One work item's outcome.

    Attributes:
        status: ``complete`` | ``pruned`` (a gate rejected it) | ``nonfinite`` (diverged without a
            value) | ``crashed`` (an exception; see :meth:`crashed`).
        fitness: the trial's value in its study's direction (None unless complete).
        reason: one line a reader can check: why it stopped, or what was rejected.
        attrs: everything else the trial stores as user attributes (small JSON values).
    """

    status: str
    fitness: float | None
    reason: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes the trial stores."""
        return {"status": self.status, "fitness": self.fitness, "reason": self.reason, **self.attrs}

    @classmethod
    def crashed(cls, exc: BaseException) -> TrialResult:
        """The record of an evaluation that raised: its error line and the end of its traceback."""
        error = f"{type(exc).__name__}: {first_line(exc)}"
        return cls(
            CRASHED,
            None,
            f"crashed: {error}",
            {"error": error, "traceback": traceback.format_exc()[-4000:]},
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
