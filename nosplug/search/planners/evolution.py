"""Regularized (aging) evolution (Real et al. 2019): the strong evolutionary baseline of NAS.

A population of ``population`` genomes (random ones through the integrity check, then the warm
starts from ``ga.seed_genomes`` in the youngest places: the oldest member leaves first, so a warm
start placed first would age out at the first child and parent at most ``parallel`` children)
evolves one child at a time: ``sample`` members are drawn at
random, the best of them is the parent, its child is one of the six mutations of spec §9.2
(drawn until it passes the integrity check and differs from every genome evaluated so far), and
the child joins the population while the *oldest* member leaves, whatever its fitness. A child
rejected by a gate joins too, with the worst score, and ages out like any other.

Workers evaluate in parallel, so child ``i`` is planned from the population as it stood after
evaluation ``i - parallel`` (``parallel`` = 1 is the sequential algorithm): the plan depends only
on the seed and the stored results, never on which worker finished first. ``evaluations`` counts
everything, the initial population included. Every evaluation uses the ``evolution`` stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from nosplug.primitives.registry import registry as default_registry
from nosplug.search.planners.base import PlannerInputs, PlannerOptionsError, seeded_planned
from nosplug.search.planners.draws import Draws
from nosplug.search.planners.particle_ga import EVOLUTION
from nosplug.study.plan import Planned, PlanResult, Record, derived_seed, key_rng

OPTIONS = {"evaluations": 100, "population": 20, "sample": 5, "parallel": 2}


def evolution_key(i: int) -> str:
    return f"re/{i:04d}"


class RegularizedEvolution:
    name = "regularized-evolution"

    def __init__(self, inputs: PlannerInputs) -> None:
        o = inputs.options
        self.inputs = inputs
        self.n, self.p = int(o["evaluations"]), int(o["population"])
        self.s, self.lag = int(o["sample"]), int(o["parallel"])
        if not 1 <= self.s <= self.p <= self.n or self.lag < 1:
            raise PlannerOptionsError(
                "search.options: need 1 <= sample <= population <= evaluations and parallel >= 1, got "
                f"sample {self.s}, population {self.p}, evaluations {self.n}, parallel {self.lag}"
            )
        if len(inputs.seeds) > self.p:
            raise PlannerOptionsError(
                f"ga.seed_genomes: {len(inputs.seeds)} warm starts do not fit a population of {self.p} "
                "(search.options.population)"
            )
        self.draws = Draws(inputs.space, inputs.seed, default_registry(), max_draws=inputs.ga.max_draws)

    @property
    def expected_evaluations(self) -> int:
        return self.n

    def _score(self, r: Record | None) -> float:
        return self.inputs.score(r.fitness) if r is not None and r.accepted else -math.inf  # type: ignore[arg-type]

    def plan(self, records: Mapping[str, Record]) -> PlanResult:
        keys = [evolution_key(i) for i in range(self.n)]
        new: list[Planned] = []
        seeds = self.inputs.seeds
        seeded = dict(zip(keys[self.p - len(seeds) : self.p], seeds))  # the youngest places
        self.draws.prefetch_random([k for k in keys[: self.p] if k not in records and k not in seeded])
        for i, key in enumerate(keys[: self.p]):
            if key not in records:
                ref, genome = seeded.get(key, (None, None))
                genome = genome if genome is not None else self.draws.random(key)
                new.append(seeded_planned(self._planned(key, genome, {"index": i}), ref))
        exhausted = None
        for i in range(self.p, self.n):
            key = keys[i]
            if key in records:
                continue
            known = i - self.lag  # the results child i may read: evaluations 0 .. i - parallel
            if not all(k in records and records[k].finished for k in keys[: known + 1]):
                break
            pool = keys[max(0, known + 1 - self.p) : known + 1]  # the population: the newest P
            sample = key_rng(self.inputs.seed, f"{key}/sample").sample(pool, self.s)
            parent = max(sample, key=lambda k: (self._score(records[k]), -keys.index(k)))
            seen = {records[k].genome.canonical_hash() for k in keys[: known + 1]}  # type: ignore[union-attr]
            mutant = records[parent].genome
            child = self.draws.generated(key, lambda rng, g=mutant, t=seen: self.draws.child(g, t, rng))
            if child is None:  # no new passing mutant of this parent within ga.max_draws
                exhausted = key
                break
            new.append(self._planned(key, child, {"index": i, "parent": parent}))
        done = sum(1 for k in keys if k in records and records[k].finished)
        progress = {"phase": "regularized evolution", "evaluations_done": done, "evaluations": self.n}
        if exhausted is not None:
            progress["exhausted"] = f"{exhausted}: no new mutant of its parent passed the integrity check"
        planned = [k for k in keys if k in records]
        finished = all(records[k].finished for k in planned)
        return PlanResult(new, done == self.n or (exhausted is not None and finished and not new), progress)

    def _planned(self, key: str, genome, attrs: dict) -> Planned:
        seed = derived_seed(self.inputs.seed, EVOLUTION, genome.canonical_hash(), key)
        return Planned(key, genome, EVOLUTION, seed, attrs)
