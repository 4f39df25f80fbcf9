"""Amalgamation losses (spec §4.1): the meta loss and how imitation distances are reduced.

Per truncation of N steps, with student trajectory θ^P and teacher trajectories θ^T:

* meta loss  L_meta = (1/N) Σ_i [log(M(x_i, θ^P_i) + ε) − log(M(x_i, θ^P_0) + ε)], the loss at
  the parameters *before* update i, against the truncation-start parameters on the same batch;
* distance   d_T(i) = log(½ Σ_j (θ^P_ij − θ^T_ij)² + ε) − log n, after update i;
* total      L = L_meta + α · reduce(d), with ``reduce`` the plugin's: ``mean`` over teachers
  (eq. 2), ``minmax`` = max over teachers per step (eq. 3), ``choice`` = the single choice
  teacher (eq. 4; the same reduction with one teacher), ``none`` = no imitation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

EPS = 1e-10


@dataclass(frozen=True)
class AmalgamationLoss:
    """A loss plugin record: ``reduce(d)`` maps distances [teachers, steps] to a scalar."""

    name: str
    reduce: Callable[[Tensor], Tensor]
    description: str
    needs_teachers: bool = True
    single_teacher: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)


def log_distance(student: Tensor, teachers: Tensor) -> Tensor:
    """d_T for teachers stacked on dim 0: log of the per-parameter mean half squared distance."""
    n = student.numel()
    sq = 0.5 * (student.unsqueeze(0) - teachers).pow(2).sum(dim=1)
    return torch.log(sq + EPS) - math.log(n)


def meta_term(loss_now: Tensor, loss_ref: Tensor) -> Tensor:
    return torch.log(loss_now + EPS) - torch.log(loss_ref + EPS)


def reduce_mean(d: Tensor) -> Tensor:
    return d.mean()


def reduce_minmax(d: Tensor) -> Tensor:
    return d.max(dim=0).values.mean()


def reduce_none(d: Tensor) -> Tensor:
    return d.new_zeros(())


def builtin_losses() -> list[AmalgamationLoss]:
    return [
        AmalgamationLoss("mean", reduce_mean, "mean distance over teachers and steps (eq. 2)"),
        AmalgamationLoss("minmax", reduce_minmax, "per-step max distance over teachers, then mean (eq. 3)"),
        AmalgamationLoss(
            "choice", reduce_mean, "distance to the trained choice optimizer (eq. 4)", single_teacher=True
        ),
        AmalgamationLoss("none", reduce_none, "meta loss only (used to train the choice optimizer)", False),
    ]


def alpha_schedule(stage: int, schedule: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02)) -> float:
    """α of curriculum stage ``stage`` (preset ``il_more``: 0.2, 0.1, 0.05, 0.02; last value after)."""
    return schedule[min(stage, len(schedule) - 1)]
