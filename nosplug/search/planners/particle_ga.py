"""The particle GA of spec §9.1 as a deterministic planner on a DEAP toolbox.

Phases (keys in brackets name the evaluations):

1. *Initial population* (``init/0000`` ..): ``initial_population`` random genomes that pass the
   integrity check, evaluated with the ``init`` stage. The best ``particles`` become particles.
   The paper enlarges the population tenfold so that enough genomes pass the gates (101 of its
   500 did, for 50 particles). When fewer than ``particles`` pass, a particle would start from a
   rejected genome and, in practice, every child it tries is rejected too; so more random
   genomes are drawn (``init/0024`` ...), in rounds sized by the pass rate seen so far, until
   every particle has a passing genome or ``max_initial_population`` genomes were drawn. Past
   that bound the search runs with fewer particles (the progress says so).
   A study that lists ``initial_genomes`` (e.g. Adam for the Adam-variant runs) starts from
   those instead and skips this phase; ``seed_genomes`` (warm starts) take the first places of
   the random initial population instead, and compete with the random genomes for a particle.
2. *Particles* are independent (no crossover, no competition), so workers advance them in
   parallel. Particle p is re-evaluated with the ``evolution`` stage (``p003/start``); then for
   each timestep k it fills ``mutations`` slots. A slot draws a mutant of the current position
   that passes the integrity check and is new to the particle's tabu list; a mutant rejected
   by early stopping is replaced, up to ``tries`` evaluations (``p003/k1/r0/m2`` is the
   first try of slot 2). The best child becomes the position; the parent is not kept (aging).

Where the reference runs slots sequentially, retries here run in *rounds* (every slot's first
try, then every rejected slot's second try, ...), which makes the plan independent of which
worker finishes first; the tabu list grows in that fixed order. Everything random comes from
:func:`~nosplug.study.plan.key_rng`, so a plan depends only on the seed and the results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from deap import base, tools

from nosplug.genome.model import Genome
from nosplug.genome.space import SearchSpace
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry
from nosplug.search.planners.base import seeded_planned
from nosplug.search.planners.deap_types import as_individual, same_genome
from nosplug.search.planners.draws import Draws
from nosplug.study.plan import Planned, PlanResult, Record, derived_seed

INIT, EVOLUTION = "init", "evolution"


@dataclass(frozen=True)
class GAConfig:
    """Spec §9.1's knobs; the published run is P=50, T=5, M=7 from 500 random genomes."""

    particles: int = 50
    timesteps: int = 5
    mutations: int = 7
    initial_population: int = 500
    tries: int = 4
    seed: int = 0
    initial_genomes: tuple[Genome, ...] = field(default=())
    #: Warm starts placed first in the random initial population: (reference, genome).
    seed_genomes: tuple[tuple[str, Genome], ...] = field(default=())
    #: Draws of a mutant (integrity check + tabu) before a slot is given up as exhausted.
    max_draws: int = 500
    #: Bound on random initial genomes when too few pass the gates (0: 4 x initial_population).
    max_initial_population: int = 0
    #: The task metric's direction: fitness values are compared this way.
    direction: str = "maximize"
    rejected_fitness: float = -1.0  # in score units (higher is better), as the reference

    @property
    def expected_evaluations(self) -> int:
        """Evaluations when every first try is accepted: P·(1 + T·M) plus the initial population."""
        init = 0 if self.initial_genomes else self.initial_population
        return init + self.n_particles * (1 + self.timesteps * self.mutations)

    @property
    def n_particles(self) -> int:
        return len(self.initial_genomes) if self.initial_genomes else self.particles

    def score(self, fitness: float) -> float:
        """Fitness as a score where higher is better, whatever the task's direction."""
        return float(fitness) if self.direction == "maximize" else -float(fitness)

    @property
    def init_bound(self) -> int:
        return max(self.initial_population, self.max_initial_population or 4 * self.initial_population)


def init_key(i: int) -> str:
    return f"init/{i:04d}"


def start_key(p: int) -> str:
    return f"p{p:03d}/start"


def child_key(p: int, k: int, r: int, m: int) -> str:
    return f"p{p:03d}/k{k}/r{r}/m{m}"


class ParticleGA:
    """Plans the evaluations of one GA run; see the module docstring."""

    name = "particle-ga"

    @property
    def expected_evaluations(self) -> int:
        return self.config.expected_evaluations

    def __init__(
        self,
        config: GAConfig,
        space: SearchSpace,
        accept: Callable[[Genome], bool] | None = None,
        reg: Registry | None = None,
    ) -> None:
        self.config = config
        self.space = space
        self.reg = reg or default_registry()
        self.draws = Draws(space, config.seed, self.reg, accept, config.max_draws)
        # DEAP's toolbox names the operators; the draws own the streams and the batched checks
        self.toolbox = base.Toolbox()
        self.toolbox.register("individual", self.draws.individual)
        self.toolbox.register("mutate", self.draws.mutate)
        self.toolbox.register("accept", self.draws.accept)
        self.stats = tools.Statistics(key=lambda ind: ind.fitness.values[0])
        for name, fn in (("max", np.max), ("avg", np.mean), ("min", np.min)):
            self.stats.register(name, fn)
        self.logbook = tools.Logbook()

    # ------------------------------------------------------------------------------ planning
    def plan(self, records: Mapping[str, Record]) -> PlanResult:
        cfg = self.config
        new: list[Planned] = []
        self.logbook = tools.Logbook()
        self.logbook.header = ["particle", "timestep", "evals", "max", "avg", "min", "chosen"]
        progress: dict = {"phase": "particles", "particles_done": 0, "particles": cfg.n_particles}

        starts: list[tuple[Genome, str | None]]
        if cfg.initial_genomes:
            starts = [(g, None) for g in cfg.initial_genomes]
        else:
            keys = self._initial_keys(records)
            seeded = dict(zip(keys, cfg.seed_genomes))  # warm starts take the first places
            self.draws.prefetch_random([k for k in keys if k not in records and k not in seeded])
            for i, key in enumerate(keys):
                if key not in records:
                    ref, genome = seeded.get(key, (None, None))
                    genome = genome if genome is not None else self.draws.random(key)
                    new.append(seeded_planned(self._planned(key, genome, INIT, {"index": i}), ref))
            finished = [records[k] for k in keys if k in records and records[k].finished]
            progress.update(init_done=len(finished), init_total=len(keys))
            if len(finished) < len(keys):
                progress["phase"] = "initial population"
                return PlanResult(new, False, progress)
            passing = [k for k in keys if records[k].accepted]
            ranked = sorted(passing, key=lambda k: (-cfg.score(records[k].fitness), k))  # type: ignore[arg-type]
            starts = [(records[k].genome, k) for k in ranked[: cfg.particles]]
            if len(starts) < cfg.particles:
                progress["fewer_particles"] = (
                    f"only {len(starts)} of {len(keys)} initial genomes passed the gates (the bound, "
                    f"ga.max_initial_population = {cfg.init_bound}); running {len(starts)} of "
                    f"{cfg.particles} particles"
                )
                progress["particles"] = len(starts)

        done = 0
        positions: dict[int, dict] = {}
        for p, (start, origin) in enumerate(starts):
            finished, info = self._particle(p, start, origin, records, new)
            positions[p] = info
            done += finished
        progress.update(particles_done=done, positions=positions)
        return PlanResult(new, done == len(starts), progress)

    def _initial_keys(self, records: Mapping[str, Record]) -> list[str]:
        """The initial population's keys: the configured size, then further rounds while fewer
        than ``particles`` genomes passed (each round sized by the pass rate so far, within the
        bound). Depends only on the stored results, so every worker plans the same rounds."""
        cfg = self.config
        n = cfg.initial_population
        while n < cfg.init_bound:
            keys = [init_key(i) for i in range(n)]
            if not all(k in records and records[k].finished for k in keys):
                break
            passed = sum(records[k].accepted for k in keys)
            need = cfg.particles - passed
            if need <= 0:
                break
            per_pass = n / passed if passed else n  # draws per passing genome seen so far
            n = min(cfg.init_bound, n + max(need, math.ceil(need * per_pass)))
        return [init_key(i) for i in range(n)]

    def _particle(
        self, p: int, start: Genome, origin: str | None, records: Mapping[str, Record], new: list[Planned]
    ) -> tuple[bool, dict]:
        cfg = self.config
        skey = start_key(p)
        info: dict = {"timestep": 0, "key": skey}
        if skey not in records:
            new.append(
                self._planned(skey, start, EVOLUTION, {"particle": p, "timestep": 0, "parent": origin})
            )
            return False, info
        tabu = {start.canonical_hash()}
        position, position_key = start, skey
        for k in range(1, cfg.timesteps + 1):
            # slot -> (key, genome) of its latest try; resolved slots are accepted or out of tries
            latest: dict[int, tuple[str, Genome] | None] = {}
            accepted: dict[int, float] = {}
            evals = 0
            for r in range(cfg.tries):
                open_slots = [m for m in range(cfg.mutations) if m not in accepted]
                if not open_slots:
                    break
                round_keys: list[str] = []
                slots = [m for m in open_slots if not (r > 0 and latest.get(m) is None)]
                self.draws.prefetch_children([child_key(p, k, r, m) for m in slots], records, tabu, position)
                for m in open_slots:
                    if r > 0 and latest.get(m) is None:
                        continue  # generation exhausted on an earlier try
                    key = child_key(p, k, r, m)
                    if key in records:
                        genome = records[key].genome
                    else:
                        genome = self.draws.generated(
                            key, lambda rng, pos=position: self.draws.child(pos, tabu, rng)
                        )
                        if genome is not None:
                            attrs = {
                                "particle": p,
                                "timestep": k,
                                "slot": m,
                                "round": r,
                                "parent": position_key,
                            }
                            new.append(self._planned(key, genome, EVOLUTION, attrs))
                    latest[m] = None if genome is None else (key, genome)
                    if genome is not None:
                        tabu.add(genome.canonical_hash())
                        round_keys.append(key)
                if any(key not in records or not records[key].finished for key in round_keys):
                    info.update(timestep=k, key=position_key)
                    return False, info
                for key in round_keys:
                    evals += 1
                    rec = records[key]
                    if rec.accepted:
                        accepted[int(key.rsplit("m", 1)[1])] = cfg.score(rec.fitness)  # type: ignore[arg-type]
            # move: the best child (first on ties); if every slot failed, the first failed child
            fitness = [accepted.get(m, cfg.rejected_fitness) for m in range(cfg.mutations)]
            candidates = [(m, latest.get(m)) for m in range(cfg.mutations) if latest.get(m) is not None]
            if accepted:
                best = max(accepted, key=lambda m: (accepted[m], -m))
                position_key, position = latest[best]  # type: ignore[misc]
            elif candidates:
                position_key, position = candidates[0][1]  # type: ignore[misc]
            pop = [as_individual(position, f) for f in fitness]
            self.logbook.record(
                particle=p, timestep=k, evals=evals, chosen=position_key, **self.stats.compile(pop)
            )
        info.update(timestep=cfg.timesteps, key=position_key, done=True)
        return True, info

    def _planned(self, key: str, genome: Genome, stage: str, attrs: dict) -> Planned:
        # the key is part of the seed: a genome met again (another particle, a later timestep)
        # is trained on fresh seeds and adds evidence, instead of replaying the same draw
        seed = derived_seed(self.config.seed, stage, genome.canonical_hash(), key)
        return Planned(key, genome, stage, seed, {k: v for k, v in attrs.items() if v is not None})

    # ------------------------------------------------------------------------------ results
    def hall_of_fame(
        self, records: Mapping[str, Record], size: int = 10, stage: str = EVOLUTION
    ) -> tools.HallOfFame:
        """The best distinct genomes evaluated in ``stage`` (DEAP's HallOfFame, unique by hash)."""
        hof = tools.HallOfFame(size, similar=same_genome)
        pop = [
            as_individual(r.genome, self.config.score(r.fitness))  # type: ignore[arg-type]
            for key, r in sorted(records.items())
            if r.accepted and (key.startswith("p") if stage == EVOLUTION else key.startswith("init/"))
        ]
        if pop:
            hof.update(pop)
        return hof
