"""The planner plugin point of a search: ``[search] planner = NAME`` with its own options.

A planner decides which genomes a search evaluates next. It is registered through the hook
``nosplug_planners`` as a :class:`PlannerSpec` (the built-ins, ``particle-ga``, ``random`` and
``regularized-evolution``, by the built-in plugin :mod:`nosplug.builtin.planners`); the search
kind builds it from the study's stored config, so every worker plans the same work.

A planner is pure and deterministic: ``plan(records) -> PlanResult`` reads only the study seed
and the stored results, and every random draw comes from :func:`~nosplug.study.plan.key_rng` of
the evaluation key (:class:`~nosplug.search.planners.draws.Draws` draws integrity-checked random
genomes and mutants that way). It names the evaluation stage of each genome it plans (``init``
or ``evolution``, whose settings the config gives) and how many evaluations it expects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nosplug.errors import UserError
from nosplug.study.plan import Planned, PlanResult, Record

if TYPE_CHECKING:
    from nosplug.genome.model import Genome
    from nosplug.genome.space import SearchSpace


class PlannerOptionsError(ValueError, UserError):
    """A planner's options cannot work together; the message starts with ``search.options``."""


#: Planned attribute naming the warm start a genome came from (``ga.seed_genomes``).
SEEDED = "seeded"


class SearchPlanner(Protocol):
    name: str

    @property
    def expected_evaluations(self) -> int: ...

    def plan(self, records: Mapping[str, Record]) -> PlanResult: ...


@dataclass(frozen=True)
class PlannerInputs:
    """What every planner is built from (the search config, parsed once).

    Attributes:
        seed: the study seed.
        space: the search space.
        direction: the fitness direction (``maximize`` / ``minimize``).
        seeds: warm starts (``ga.seed_genomes``): (the reference as written, its genome), in order.
        ga: the particle GA's settings (``[ga]``), which other planners may read (``max_draws``).
        options: the planner's own options (``[search.options]``), defaults filled in.
    """

    seed: int
    space: SearchSpace
    direction: str
    seeds: tuple[tuple[str, Genome], ...]
    ga: Any
    options: Mapping[str, Any] = field(default_factory=dict)

    def score(self, fitness: float) -> float:
        """Fitness as a score where higher is better, whatever the direction."""
        return float(fitness) if self.direction == "maximize" else -float(fitness)


@dataclass(frozen=True)
class PlannerSpec:
    """A planner plugin record.

    Attributes:
        name: what ``[search] planner`` names.
        make: builds the planner from :class:`PlannerInputs`.
        options: each option of ``[search.options]`` with its default (its type is the default's).
        description: one line for ``nosplug plugins list`` and the docs.
    """

    name: str
    make: Callable[[PlannerInputs], SearchPlanner]
    options: Mapping[str, Any]
    description: str
    tags: frozenset[str] = field(default_factory=frozenset)


def seeded_planned(planned: Planned, ref: str | None) -> Planned:
    """``planned`` marked as the warm start ``ref`` (no change when ``ref`` is None)."""
    if ref is None:
        return planned
    return Planned(planned.key, planned.genome, planned.stage, planned.seed, {**planned.attrs, SEEDED: ref})
