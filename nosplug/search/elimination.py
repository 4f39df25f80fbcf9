"""The elimination protocol of spec §10 as a deterministic planner.

The best ``top`` distinct genomes of a finished search are trained on progressively larger
surrogates (or other tasks), ``repeats`` times each with different seeds; after each stage the
best ``keep`` by mean fitness go on. Stage results are evaluations like any other, so they are
stored, resumable and shared between workers.

The learning rate of a stage is either the one the search chose (``lr = "search"``) or the
stage's own learning-rate test (``lr = "sweep"``, what the paper's Appendix B does for every
model it reports): a candidate's first repeat runs the stage's whole evaluation (pre-screen,
sweep, gates, final run) and its other repeats train at the rate that test chose. A candidate
whose test rejects it is not trained again: it counts as the worst value in the stage's mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nosplug.genome.model import Genome
from nosplug.study.plan import Planned, PlanResult, Record, derived_seed


@dataclass(frozen=True)
class Candidate:
    source: str  # key of the search evaluation it comes from
    genome: Genome
    lr: float | None
    fitness: float


SEARCH, SWEEP = "search", "sweep"
LR_MODES = (SEARCH, SWEEP)


@dataclass(frozen=True)
class Stage:
    name: str
    keep: int
    lr: str = SEARCH  # SEARCH: the search's rate; SWEEP: the stage's own learning-rate test

    def __post_init__(self) -> None:
        if self.lr not in LR_MODES:
            raise ValueError(f"stage {self.name!r}: lr must be one of {', '.join(LR_MODES)}, got {self.lr!r}")


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
            keys = {c.source: self._stage_keys(stage, c, records) for c in pool}
            for c in pool:
                for r, key in enumerate(keys[c.source]):
                    if key not in records:
                        seed = derived_seed(self.seed, stage.name, c.genome.canonical_hash(), r)
                        attrs = {"source": c.source, "repeat": r, "elimination_stage": stage.name}
                        lr = (
                            c.lr
                            if stage.lr == SEARCH
                            else (None if r == 0 else records[keys[c.source][0]].chosen_lr)
                        )
                        new.append(Planned(key, c.genome, stage.name, seed, attrs, lr=lr))
            if any(k not in records or not records[k].finished for ks in keys.values() for k in ks):
                progress["current"] = stage.name
                return PlanResult(new, False, progress)
            means = {src: self.mean(records, ks, self.direction, self.repeats) for src, ks in keys.items()}
            sign = -1.0 if self.direction == "maximize" else 1.0
            order = sorted(range(len(pool)), key=lambda i: (sign * means[pool[i].source], i))
            pool = [pool[i] for i in order[: stage.keep]]
            progress["stages"].append({"stage": stage.name, "survivors": [c.source for c in pool]})
        progress["winners"] = [c.source for c in pool]
        return PlanResult(new, True, progress)

    def _stage_keys(self, stage: Stage, cand: Candidate, records: Mapping[str, Record]) -> list[str]:
        """The keys of a candidate's runs in a stage that can be planned now: with the stage's own
        learning-rate test, the repeats wait for the test's rate (none if it rejected the genome)."""
        keys = [self.key(stage, cand, r) for r in range(self.repeats)]
        if stage.lr == SEARCH:
            return keys
        first = records.get(keys[0])
        if first is None or not first.finished:
            return keys[:1]
        return keys if first.accepted and first.chosen_lr is not None else keys[:1]

    @staticmethod
    def mean(
        records: Mapping[str, Record],
        keys: Sequence[str],
        direction: str = "maximize",
        runs: int | None = None,
    ) -> float:
        """Mean fitness over ``runs`` repeats (default: the keys); a rejected or diverged run, or a
        repeat never trained because the stage's learning-rate test rejected the genome, counts as
        0 (accuracy) or as +inf for a metric to minimise, so it can never look good."""
        worst = 0.0 if direction == "maximize" else float("inf")
        vals = [records[k].fitness if records[k].accepted else worst for k in keys]
        vals += [worst] * max(0, (runs or len(keys)) - len(keys))
        return sum(vals) / len(vals)  # type: ignore[arg-type]
