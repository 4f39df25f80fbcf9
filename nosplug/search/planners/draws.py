"""Genomes a search planner proposes: random or mutated, each passing the integrity check.

Every key has its own random stream (:func:`~nosplug.study.plan.key_rng`), so what a key draws
depends only on the study seed and the key, never on which worker plans or in what order. A
draw is a valid genome (no active cycle) that the integrity check accepts; candidates of many
keys are checked together in one batched pass (:func:`~nosplug.evaluation.integrity.integrity_check_batch`),
which decides exactly as one check at a time, and verdicts are cached by canonical hash. The
planners (:mod:`~nosplug.search.planners.particle_ga`, :mod:`~nosplug.search.planners.random_search`,
:mod:`~nosplug.search.planners.evolution`) share it, so they propose genomes from the same gates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from nosplug.evaluation.integrity import one_thread
from nosplug.genome.graph import GenomeError
from nosplug.genome.model import Genome
from nosplug.genome.mutation import mutate
from nosplug.genome.random import MAX_DRAWS as RANDOM_MAX_DRAWS
from nosplug.genome.random import draw_genome, random_genome
from nosplug.genome.space import SearchSpace
from nosplug.primitives.registry import Registry
from nosplug.search.planners.deap_types import as_individual
from nosplug.study.plan import Record, key_rng

#: Mutants drawn ahead per slot before their batched check (most slots need one or two).
SPECULATE = 4


class Draws:
    """Integrity-checked genomes by key (see the module docstring).

    ``accept`` replaces the integrity check (tests); the planner then sees exactly the calls of a
    one-at-a-time planner. ``max_draws`` bounds the mutants drawn for one key.
    """

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        reg: Registry,
        accept: Callable[[Genome], bool] | None = None,
        max_draws: int = 500,
    ) -> None:
        self.space, self.seed, self.reg, self.max_draws = space, seed, reg, max_draws
        #: many candidates' verdicts at once (the default check's batched form); None with a
        #: caller's ``accept``
        self._accept_batch: Callable[[list[Genome]], list[bool]] | None = None
        self._verdicts: dict[str, bool] = {}  # canonical hash -> accepted (deterministic)
        if accept is None:
            from nosplug.evaluation.integrity import integrity_check, integrity_check_batch

            def accept(g: Genome) -> bool:
                return integrity_check(g, reg=self.reg).passed

            def accept_batch(genomes: list[Genome]) -> list[bool]:
                return [r.passed for r in integrity_check_batch(genomes, reg=self.reg)]

            self._accept_batch = accept_batch
        self.accept = accept
        self._genomes: dict[str, Genome | None] = {}  # key -> generated genome (a cache: plans are pure)

    def individual(self, rng) -> Genome:
        """A random genome of the space that passes the check (spec §5), drawn from ``rng``."""
        return as_individual(random_genome(self.space, rng, accept=self.accept))

    def mutate(self, g: Genome, rng) -> Genome:
        """One of the six mutations of spec §9.2 applied to ``g``."""
        return as_individual(mutate(g, self.space, rng, self.reg))

    def random(self, key: str) -> Genome:
        """Key ``key``'s random genome (after :meth:`prefetch_random`, from its batch)."""
        return self.generated(key, self.individual)  # type: ignore[return-value]

    def child(self, position: Genome, tabu: set[str], rng) -> Genome | None:
        for _ in range(self.max_draws):
            child = self.mutate(position, rng)
            if child.canonical_hash() in tabu:
                continue
            if self.accept(child):
                return child
        return None

    def verdict(self, genomes: list[Genome]) -> None:
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

    def prefetch_random(self, keys: list[str]) -> None:
        """Draw the missing initial genomes together: each key's stream is drawn exactly as
        :func:`~nosplug.genome.random.random_genome` draws it (valid genomes, the first accepted
        one wins), but the candidates of all keys are checked in one batch per round; once few
        keys are left, each draws ``SPECULATE`` candidates per round (fewer, fuller batches)."""
        keys = [k for k in keys if k not in self._genomes]
        if not keys or self._accept_batch is None:
            return
        rngs = {k: key_rng(self.seed, k) for k in keys}
        draws = dict.fromkeys(keys, 0)
        pending = keys
        with one_thread():
            while pending:
                per_key = 1 if len(pending) > 4 * SPECULATE else SPECULATE
                streams: dict[str, list[Genome]] = {}
                for key in pending:
                    drawn = [self._next_valid(rngs[key], draws, key) for _ in range(per_key)]
                    streams[key] = [g for g in drawn if g is not None]
                self.verdict([g for gs in streams.values() for g in gs])
                pending = []
                for key, gs in streams.items():
                    hit = next((g for g in gs if self._verdicts[g.canonical_hash()]), None)
                    if hit is not None:
                        self._genomes[key] = as_individual(hit)
                    elif draws[key] < RANDOM_MAX_DRAWS:
                        pending.append(key)
        for key in keys:  # out of draws: let the one-at-a-time path raise its error
            if key not in self._genomes:
                self.generated(key, lambda rng: self.individual(rng))

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

    def prefetch_children(
        self, keys: list[str], records: Mapping[str, Record], tabu: set[str], position: Genome
    ) -> None:
        """Generate one round's missing children together, identical to :meth:`child` slot after
        slot: every slot's candidate stream is drawn ahead (``SPECULATE`` at a time) and all
        candidates are checked in one batch; then the slots are resolved in order against the
        tabu list as it grows, exactly as one at a time (candidates it skips cost a check)."""
        todo = [k for k in keys if k not in records and k not in self._genomes]
        if not todo or self._accept_batch is None:
            return
        streams = {k: ([], key_rng(self.seed, k)) for k in todo}

        def extend(ks: list[str]) -> None:
            fresh = []
            for key in ks:
                drawn, rng = streams[key]
                for _ in range(min(SPECULATE, self.max_draws - len(drawn))):
                    drawn.append(self.mutate(position, rng))
                    fresh.append(drawn[-1])
            self.verdict(fresh)

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
        """:meth:`child` over a pre-drawn stream (``more()`` draws and checks the next ones)."""
        i = 0
        while i < self.max_draws:
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

    def generated(self, key: str, make: Callable) -> Genome | None:
        if key not in self._genomes:
            self._genomes[key] = make(key_rng(self.seed, key))
        return self._genomes[key]
