"""The elimination protocol of spec §10 as a deterministic planner.

The best ``top`` distinct genomes of a finished search are trained on progressively larger
surrogates, ``repeats`` times each with different seeds, at the learning rate their search
evaluation chose; after each stage the best ``keep`` by mean fitness go on. Stage results are
evaluations like any other, so they are stored, resumable and shared between workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nosplug.ga.plan import Planned, PlanResult, Record, derived_seed
from nosplug.genome.model import Genome


@dataclass(frozen=True)
class Candidate:
    source: str  # key of the search evaluation it comes from
    genome: Genome
    lr: float | None
    fitness: float


@dataclass(frozen=True)
class Stage:
    name: str
    keep: int


class Elimination:
    name = "elimination"

    def __init__(
        self,
        candidates: Sequence[Candidate],
        stages: Sequence[Stage],
        repeats: int,
        seed: int,
        direction: str = "maximize",
    ) -> None:
        if not stages:
            raise ValueError("elimination needs at least one stage")
        self.candidates = list(candidates)
        self.stages = list(stages)
        self.repeats = repeats
        self.seed = seed
        self.direction = direction

    def key(self, stage: Stage, cand: Candidate, repeat: int) -> str:
        return f"{stage.name}/{cand.source}/rep{repeat}"

    def plan(self, records: Mapping[str, Record]) -> PlanResult:
        pool = list(self.candidates)
        new: list[Planned] = []
        progress: dict = {"phase": "elimination", "stages": []}
        for stage in self.stages:
            keys = {c.source: [self.key(stage, c, r) for r in range(self.repeats)] for c in pool}
            for c in pool:
                for r, key in enumerate(keys[c.source]):
                    if key not in records:
                        seed = derived_seed(self.seed, stage.name, c.genome.canonical_hash(), r)
                        attrs = {"source": c.source, "repeat": r, "elimination_stage": stage.name}
                        new.append(Planned(key, c.genome, stage.name, seed, attrs, lr=c.lr))
            if any(k not in records or not records[k].finished for ks in keys.values() for k in ks):
                progress["current"] = stage.name
                return PlanResult(new, False, progress)
            means = {src: self.mean(records, ks, self.direction) for src, ks in keys.items()}
            sign = -1.0 if self.direction == "maximize" else 1.0
            order = sorted(range(len(pool)), key=lambda i: (sign * means[pool[i].source], i))
            pool = [pool[i] for i in order[: stage.keep]]
            progress["stages"].append({"stage": stage.name, "survivors": [c.source for c in pool]})
        progress["winners"] = [c.source for c in pool]
        return PlanResult(new, True, progress)

    @staticmethod
    def mean(records: Mapping[str, Record], keys: Sequence[str], direction: str = "maximize") -> float:
        """Mean fitness over repeats; a rejected or diverged run counts as 0 (accuracy) or as
        +inf for a metric to minimise, so it can never look good."""
        worst = 0.0 if direction == "maximize" else float("inf")
        vals = [records[k].fitness if records[k].accepted else worst for k in keys]
        return sum(vals) / len(vals)  # type: ignore[arg-type]
