"""The particle GA and elimination planners on fake results: determinism and the spec's rules."""

from __future__ import annotations

import pytest
from study_helpers import drive

import nosplug
from nosplug.genome.space import SearchSpace
from nosplug.search.elimination import Candidate, Elimination, Stage
from nosplug.search.planners.particle_ga import GAConfig, ParticleGA
from nosplug.study.plan import Record


@pytest.fixture(scope="module")
def cfg() -> GAConfig:
    return GAConfig(particles=3, timesteps=2, mutations=3, initial_population=9, tries=3, seed=5)


def test_plan_is_independent_of_completion_order(cfg: GAConfig) -> None:
    space = SearchSpace.paper()
    a = drive(ParticleGA(cfg, space))
    b = drive(ParticleGA(cfg, space), order_seed=1)
    c = drive(ParticleGA(cfg, space), order_seed=2)
    sig = lambda rs: {k: (r.genome.canonical_hash(), r.status, r.fitness) for k, r in rs.items()}  # noqa: E731
    assert sig(a) == sig(b) == sig(c)
    other = drive(ParticleGA(GAConfig(**{**cfg.__dict__, "seed": 6}), space))
    assert sig(other) != sig(a)


def test_ga_follows_the_spec_structure(cfg: GAConfig) -> None:
    ga = ParticleGA(cfg, SearchSpace.paper())
    records = drive(ga)
    init = [k for k in records if k.startswith("init/")]
    assert len(init) == cfg.initial_population
    # the best `particles` initial genomes become the particles, in fitness order
    fit = {k: (r.fitness if r.accepted else 0.0) for k, r in records.items() if k in init}
    ranked = sorted(init, key=lambda k: (-fit[k], k))[: cfg.particles]
    for p, k in enumerate(ranked):
        assert records[f"p{p:03d}/start"].genome.canonical_hash() == records[k].genome.canonical_hash()
    for p in range(cfg.particles):
        keys = [k for k in records if k.startswith(f"p{p:03d}/k")]
        hashes = [records[k].genome.canonical_hash() for k in keys]
        assert len(hashes) == len(set(hashes)), "the tabu list keeps children of a particle distinct"
        assert records[f"p{p:03d}/start"].genome.canonical_hash() not in hashes
        for k in range(1, cfg.timesteps + 1):
            for m in range(cfg.mutations):
                tries = [
                    records[f"p{p:03d}/k{k}/r{r}/m{m}"]
                    for r in range(cfg.tries)
                    if f"p{p:03d}/k{k}/r{r}/m{m}" in records
                ]
                # a slot retries only after a rejection, and at most `tries` times
                assert all(not t.accepted for t in tries[:-1])
                assert 1 <= len(tries) <= cfg.tries
    assert len(ga.logbook) == cfg.particles * cfg.timesteps
    hof = ga.hall_of_fame(records, 3)
    assert len(hof) == 3 and hof[0].fitness.values[0] >= hof[2].fitness.values[0]


def test_best_child_moves_the_particle_even_if_worse_than_parent() -> None:
    """Aging: the position is the best child of the timestep, never the parent."""
    cfg = GAConfig(
        particles=1, timesteps=2, mutations=2, tries=1, seed=0, initial_genomes=(nosplug.zoo.load("adam"),)
    )
    ga = ParticleGA(cfg, SearchSpace.paper())
    records: dict[str, Record] = {}
    while True:
        res = ga.plan(records)
        if res.done:
            break
        for p in res.new:
            fitness = {"p000/start": 0.99, "p000/k1/r0/m0": 0.2, "p000/k1/r0/m1": 0.5}.get(p.key, 0.1)
            records[p.key] = Record(p.key, p.genome, True, "complete", fitness)
    k2 = [p for k, p in records.items() if k.startswith("p000/k2")]
    assert all(r.genome.meta.get("mutation") for r in k2)
    assert ga.logbook[0]["chosen"] == "p000/k1/r0/m1"
    # k2 children were mutated from the chosen child, not from Adam
    parent = records["p000/k1/r0/m1"].genome
    planned = ParticleGA(cfg, SearchSpace.paper()).plan(
        {k: v for k, v in records.items() if not k.startswith("p000/k2")}
    )
    assert all(p.attrs["parent"] == "p000/k1/r0/m1" for p in planned.new)
    assert parent.canonical_hash() != nosplug.zoo.load("adam").canonical_hash()


def test_elimination_keeps_the_best_by_mean() -> None:
    cands = [
        Candidate(f"c{i}", nosplug.zoo.load(n), 0.01, 0.5)
        for i, n in enumerate(["adam", "sgd", "rmsprop", "opt1"])
    ]
    el = Elimination(cands, [Stage("s1", 2), Stage("s2", 1)], repeats=2, seed=0)
    records: dict[str, Record] = {}
    score = {"c0": 0.6, "c1": 0.9, "c2": 0.8, "c3": 0.1}
    while True:
        res = el.plan(records)
        if res.done:
            break
        assert res.new
        for p in res.new:
            assert p.lr == 0.01 and p.key.endswith(f"rep{p.attrs['repeat']}")
            records[p.key] = Record(
                p.key, p.genome, True, "complete", score[p.attrs["source"]] + 0.01 * p.attrs["repeat"]
            )
    assert res.progress["stages"][0]["survivors"] == ["c1", "c2"]
    assert res.progress["winners"] == ["c1"]
    assert len(records) == 4 * 2 + 2 * 2


def _drive_with(ga: ParticleGA, passes) -> dict[str, Record]:
    """Drive ``ga`` with results where an initial genome passes iff ``passes(index)``."""
    records: dict[str, Record] = {}
    for _ in range(1000):
        res = ga.plan(records)
        if res.done:
            return records
        for p in res.new:
            if p.key.startswith("init/"):
                ok = passes(int(p.key[5:]))
                records[p.key] = Record(
                    p.key, p.genome, True, "complete" if ok else "pruned", 0.5 if ok else None
                )
            else:
                records[p.key] = Record(p.key, p.genome, True, "complete", 0.6)
    raise AssertionError("planner did not finish")


def test_too_few_passing_initial_genomes_draw_more_until_every_particle_has_one() -> None:
    cfg = GAConfig(particles=3, timesteps=1, mutations=1, initial_population=6, tries=1, seed=2)
    ga = ParticleGA(cfg, SearchSpace.paper())
    records = _drive_with(ga, lambda i: i % 5 == 4)  # one in five passes: 4 and 9, 14, ...
    init = sorted(k for k in records if k.startswith("init/"))
    assert len(init) > cfg.initial_population, "more genomes were drawn"
    starts = [records[f"p{p:03d}/start"] for p in range(cfg.particles)]
    passing = {records[k].genome.canonical_hash() for k in init if records[k].accepted}
    assert len(passing) >= 3 and all(s.genome.canonical_hash() in passing for s in starts)
    assert len(init) <= cfg.init_bound
    # one extra round, sized by the pass rate seen (1 in 6): 2 more passing genomes -> 12 draws
    assert len(init) == 6 + 12 and sum(records[k].accepted for k in init) == 3


def test_past_the_bound_the_search_runs_with_fewer_particles_and_says_so() -> None:
    cfg = GAConfig(
        particles=3,
        timesteps=1,
        mutations=1,
        initial_population=4,
        tries=1,
        seed=2,
        max_initial_population=10,
    )
    ga = ParticleGA(cfg, SearchSpace.paper())
    records = _drive_with(ga, lambda i: i == 1)  # a single genome ever passes
    assert len([k for k in records if k.startswith("init/")]) == 10
    assert [k for k in records if k.endswith("/start")] == ["p000/start"]
    progress = ga.plan(records).progress
    assert progress["particles"] == 1 and "running 1 of 3 particles" in progress["fewer_particles"]
