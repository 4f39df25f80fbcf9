"""Random search: the baseline every search method must beat (Li & Talwalkar 2019).

``evaluations`` random genomes of the search space, each drawn from its key's stream through the
same integrity check as the particle GA's initial population (:class:`~nosplug.search.planners.draws.Draws`),
then pre-screened, swept and trained like every other candidate. Warm starts
(``ga.seed_genomes``) take the first places. Nothing depends on results, so every evaluation is
planned at once and any number of workers run them side by side.
"""

from __future__ import annotations

from collections.abc import Mapping

from nosplug.primitives.registry import registry as default_registry
from nosplug.search.planners.base import PlannerInputs, seeded_planned
from nosplug.search.planners.draws import Draws
from nosplug.search.planners.particle_ga import EVOLUTION
from nosplug.study.plan import Planned, PlanResult, Record, derived_seed

OPTIONS = {"evaluations": 100}


def random_key(i: int) -> str:
    return f"rand/{i:04d}"


class RandomSearch:
    name = "random"

    def __init__(self, inputs: PlannerInputs) -> None:
        self.inputs = inputs
        self.n = int(inputs.options["evaluations"])
        self.draws = Draws(inputs.space, inputs.seed, default_registry(), max_draws=inputs.ga.max_draws)

    @property
    def expected_evaluations(self) -> int:
        return self.n

    def plan(self, records: Mapping[str, Record]) -> PlanResult:
        keys = [random_key(i) for i in range(self.n)]
        seeded = dict(zip(keys, self.inputs.seeds))
        self.draws.prefetch_random([k for k in keys if k not in records and k not in seeded])
        new = []
        for i, key in enumerate(keys):
            if key in records:
                continue
            ref, genome = seeded.get(key, (None, None))
            genome = genome if genome is not None else self.draws.random(key)
            seed = derived_seed(self.inputs.seed, EVOLUTION, genome.canonical_hash(), key)
            new.append(seeded_planned(Planned(key, genome, EVOLUTION, seed, {"index": i}), ref))
        done = sum(1 for k in keys if k in records and records[k].finished)
        progress = {"phase": "random search", "evaluations_done": done, "evaluations": self.n}
        return PlanResult(new, done == self.n, progress)
