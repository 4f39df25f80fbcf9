"""The contract between a search and whatever runs its evaluations.

A search is a *planner*: a pure function from what is known (one :class:`Record` per finished or
pending evaluation key) to what must be evaluated next (:class:`Planned`). Every random choice
is seeded from the study seed and the evaluation key, never from timing, so any number of
workers, a crash, or a resume all lead to the same plan. :mod:`nosplug.study` stores records in
Optuna and hands planned evaluations out as trials; tests drive planners with plain dicts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nosplug.genome.model import Genome

#: Result statuses of a finished evaluation (from :class:`~nosplug.evaluation.evaluate.EvalResult`):
#: trained to the end, rejected by a gate (integrity check, pre-screen, sweep), or diverged
#: (non-finite) before it produced a fitness. ``failed`` is how studies written by nosplug 0.1
#: recorded gate rejections and crashes alike. A *crash* (an exception) is not a result: its
#: trial is kept for the record but does not stand for its key, which is planned again.
COMPLETE, PRUNED, NONFINITE, FAILED = "complete", "pruned", "nonfinite", "failed"
CRASHED = "crashed"


@dataclass(frozen=True)
class Planned:
    """One evaluation to run: the key names it uniquely inside its study."""

    key: str
    genome: Genome | None
    stage: str  # which evaluation settings apply (e.g. "init", "evolution", "base64")
    seed: int  # the evaluation's own seed (data order, initial weights)
    attrs: dict[str, Any] = field(default_factory=dict)  # particle, timestep, parent, ...
    lr: float | None = None  # a fixed learning rate skips the sweep (elimination stages)


@dataclass(frozen=True)
class Record:
    """What the study knows about one key."""

    key: str
    genome: Genome | None  # None for evaluations that train no genome (benchmark runs of torch.optim)
    finished: bool
    status: str | None = None  # COMPLETE | PRUNED | NONFINITE (| FAILED in old studies) once finished
    fitness: float | None = None
    chosen_lr: float | None = None
    number: int | None = None  # the Optuna trial number
    attrs: dict[str, Any] = field(default_factory=dict)  # the trial's planned attributes

    @property
    def accepted(self) -> bool:
        return self.finished and self.status == COMPLETE and self.fitness is not None


@dataclass
class PlanResult:
    new: list[Planned]
    done: bool
    #: Human-facing progress: phase, particles finished, evaluations expected, ...
    progress: dict[str, Any] = field(default_factory=dict)


class Planner(Protocol):
    name: str

    def plan(self, records: Mapping[str, Record]) -> PlanResult: ...


def key_rng(seed: int, key: str) -> random.Random:
    """The random stream of one evaluation key: independent of order, process and hash seed."""
    return random.Random(f"nosplug/{seed}/{key}")


def derived_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts (stable across processes and Python versions)."""
    text = "/".join(str(p) for p in parts)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) & 0x7FFFFFFF
