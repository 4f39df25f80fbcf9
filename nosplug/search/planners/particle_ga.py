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
   those instead and skips this phase.
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

from nosplug.evaluation.integrity import one_thread
from nosplug.genome.graph import GenomeError
from nosplug.genome.model import Genome
from nosplug.genome.mutation import mutate
from nosplug.genome.random import MAX_DRAWS as RANDOM_MAX_DRAWS
from nosplug.genome.random import draw_genome, random_genome
from nosplug.genome.space import SearchSpace
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry
from nosplug.search.planners.deap_types import as_individual, same_genome
from nosplug.study.plan import Planned, PlanResult, Record, derived_seed, key_rng

INIT, EVOLUTION = "init", "evolution"
#: Mutants drawn ahead per slot before their batched check (most slots need one or two).
SPECULATE = 4


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
        #: many candidates' verdicts at once (the default check's batched form); None with a
        #: caller's ``accept``, which then sees exactly the calls of the one-at-a-time planner
        self._accept_batch: Callable[[list[Genome]], list[bool]] | None = None
        self._verdicts: dict[str, bool] = {}  # canonical hash -> accepted (deterministic)
        if accept is None:
            from nosplug.evaluation.integrity import integrity_check, integrity_check_batch

            def accept(g: Genome) -> bool:
                return integrity_check(g, reg=self.reg).passed

            def accept_batch(genomes: list[Genome]) -> list[bool]:
                return [r.passed for r in integrity_check_batch(genomes, reg=self.reg)]

            self._accept_batch = accept_batch

        self.toolbox = base.Toolbox()
        self.toolbox.register(
            "individual", lambda rng: as_individual(random_genome(space, rng, accept=accept))
        )
        self.toolbox.register("mutate", lambda g, rng: as_individual(mutate(g, space, rng, self.reg)))
        self.toolbox.register("accept", accept)
        self.stats = tools.Statistics(key=lambda ind: ind.fitness.values[0])
        for name, fn in (("max", np.max), ("avg", np.mean), ("min", np.min)):
            self.stats.register(name, fn)
        self.logbook = tools.Logbook()
        self._genomes: dict[str, Genome] = {}  # key -> generated genome (plans are pure; this is a cache)

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
            self._prefetch_initial([k for k in keys if k not in records])
            for i, key in enumerate(keys):
                if key not in records:
                    genome = self._generated(key, lambda rng: self.toolbox.individual(rng))
                    new.append(self._planned(key, genome, INIT, {"index": i}))
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
                self._prefetch_children([child_key(p, k, r, m) for m in slots], records, tabu, position)
                for m in open_slots:
                    if r > 0 and latest.get(m) is None:
                        continue  # generation exhausted on an earlier try
                    key = child_key(p, k, r, m)
                    if key in records:
                        genome = records[key].genome
                    else:
                        genome = self._generated(key, lambda rng, pos=position: self._child(pos, tabu, rng))
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

    def _child(self, position: Genome, tabu: set[str], rng) -> Genome | None:
        for _ in range(self.config.max_draws):
            child = self.toolbox.mutate(position, rng)
            if child.canonical_hash() in tabu:
                continue
            if self.toolbox.accept(child):
                return child
        return None

    # ------------------------------------------------------------------------------ batches
    def _verdict(self, genomes: list[Genome]) -> None:
        """Check the candidates without a cached verdict, all in one batched integrity check."""
        assert self._accept_batch is not None
        todo: dict[str, Genome] = {}
        for g in genomes:
            h = g.canonical_hash()
            if h not in self._verdicts:
                todo.setdefault(h, g)
        if todo:
            for h, ok in zip(todo, self._accept_batch(list(todo.values()))):
                self._verdicts[h] = ok

    def _prefetch_initial(self, keys: list[str]) -> None:
        """Draw the missing initial genomes together: each key's stream is drawn exactly as
        :func:`~nosplug.genome.random.random_genome` draws it (valid genomes, the first accepted
        one wins), but the candidates of all keys are checked in one batch per round; once few
        keys are left, each draws ``SPECULATE`` candidates per round (fewer, fuller batches)."""
        keys = [k for k in keys if k not in self._genomes]
        if not keys or self._accept_batch is None:
            return
        rngs = {k: key_rng(self.config.seed, k) for k in keys}
        draws = dict.fromkeys(keys, 0)
        pending = keys
        with one_thread():
            while pending:
                per_key = 1 if len(pending) > 4 * SPECULATE else SPECULATE
                streams: dict[str, list[Genome]] = {}
                for key in pending:
                    drawn = [self._next_valid(rngs[key], draws, key) for _ in range(per_key)]
                    streams[key] = [g for g in drawn if g is not None]
                self._verdict([g for gs in streams.values() for g in gs])
                pending = []
                for key, gs in streams.items():
                    hit = next((g for g in gs if self._verdicts[g.canonical_hash()]), None)
                    if hit is not None:
                        self._genomes[key] = as_individual(hit)
                    elif draws[key] < RANDOM_MAX_DRAWS:
                        pending.append(key)
        for key in keys:  # out of draws: let the one-at-a-time path raise its error
            if key not in self._genomes:
                self._generated(key, lambda rng: self.toolbox.individual(rng))

    def _next_valid(self, rng, draws: dict[str, int], key: str) -> Genome | None:
        while draws[key] < RANDOM_MAX_DRAWS:
            draws[key] += 1
            g = draw_genome(self.space, rng)
            try:
                g.validate()
            except GenomeError:
                continue
            return g
        return None

    def _prefetch_children(
        self, keys: list[str], records: Mapping[str, Record], tabu: set[str], position: Genome
    ) -> None:
        """Generate one round's missing children together, identical to :meth:`_child` slot after
        slot: every slot's candidate stream is drawn ahead (``SPECULATE`` at a time) and all
        candidates are checked in one batch; then the slots are resolved in order against the
        tabu list as it grows, exactly as one at a time (candidates it skips cost a check)."""
        todo = [k for k in keys if k not in records and k not in self._genomes]
        if not todo or self._accept_batch is None:
            return
        streams = {k: ([], key_rng(self.config.seed, k)) for k in todo}

        def extend(ks: list[str]) -> None:
            fresh = []
            for key in ks:
                drawn, rng = streams[key]
                for _ in range(min(SPECULATE, self.config.max_draws - len(drawn))):
                    drawn.append(self.toolbox.mutate(position, rng))
                    fresh.append(drawn[-1])
            self._verdict(fresh)

        with one_thread():
            extend(todo)
            tabu = set(tabu)
            for key in keys:
                if key in records:
                    genome = records[key].genome
                elif key in self._genomes:
                    genome = self._genomes[key]
                else:
                    genome = self._resolve(streams[key][0], tabu, lambda key=key: extend([key]))
                    self._genomes[key] = genome
                if genome is not None:
                    tabu.add(genome.canonical_hash())

    def _resolve(self, drawn: list[Genome], tabu: set[str], more: Callable[[], None]) -> Genome | None:
        """:meth:`_child` over a pre-drawn stream (``more()`` draws and checks the next ones)."""
        i = 0
        while i < self.config.max_draws:
            if i == len(drawn):
                more()
                if i == len(drawn):
                    return None
            child = drawn[i]
            i += 1
            h = child.canonical_hash()
            if h in tabu:
                continue
            if self._verdicts[h]:
                return child
        return None

    def _generated(self, key: str, make: Callable) -> Genome | None:
        if key not in self._genomes:
            self._genomes[key] = make(key_rng(self.config.seed, key))
        return self._genomes[key]

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
