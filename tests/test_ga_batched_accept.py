"""The particle GA checks candidates in batches (initial genomes across keys, each round's mutants
drawn ahead) and must plan exactly what it plans checking one candidate at a time."""

from __future__ import annotations

import random

from nosplug.evaluation.integrity import integrity_check
from nosplug.ga import particle_ga
from nosplug.ga.particle_ga import GAConfig, ParticleGA
from nosplug.ga.plan import Record
from nosplug.genome.space import SearchSpace


def _fake(p) -> Record:
    r = random.Random(f"{p.genome.canonical_hash()}{p.stage}")
    if r.random() < 0.3:
        return Record(p.key, p.genome, True, "pruned", None)
    return Record(p.key, p.genome, True, "complete", round(r.random(), 6))


def _drive(ga: ParticleGA, order_seed: int | None = None) -> dict[str, Record]:
    records: dict[str, Record] = {}
    pending: list = []
    rng = random.Random(order_seed)
    for _ in range(10_000):
        res = ga.plan({**records, **{p.key: Record(p.key, p.genome, False) for p in pending}})
        pending += res.new
        if res.done and not pending:
            return records
        if order_seed is None:
            take, pending = pending, []
        else:
            rng.shuffle(pending)
            take, pending = pending[:1], pending[1:]
        for p in take:
            records[p.key] = _fake(p)
    raise AssertionError("planner did not finish")


def _signature(records: dict[str, Record]) -> dict[str, tuple]:
    return {k: (r.genome.to_json(), r.status, r.fitness) for k, r in records.items()}


def test_batched_checks_plan_what_one_at_a_time_checks_plan(monkeypatch) -> None:
    cfg = GAConfig(particles=3, timesteps=2, mutations=4, initial_population=16, tries=2, seed=9)
    space = SearchSpace.paper()
    calls: list[int] = []
    batched = ParticleGA(cfg, space)
    inner = batched._accept_batch
    assert inner is not None

    def counting(genomes):
        calls.append(len(genomes))
        return inner(genomes)

    batched._accept_batch = counting
    single = ParticleGA(cfg, space, accept=lambda g: integrity_check(g).passed)
    assert single._accept_batch is None
    fast = _drive(batched)
    assert _signature(fast) == _signature(_drive(single))
    assert _signature(_drive(ParticleGA(cfg, space), order_seed=3)) == _signature(fast)
    # the initial population took a few batched rounds, not one check per candidate
    assert calls and max(calls) >= cfg.initial_population and len(calls) < sum(calls) / 3


def test_a_slot_that_runs_out_of_speculated_mutants_draws_more(monkeypatch) -> None:
    monkeypatch.setattr(particle_ga, "SPECULATE", 1)
    cfg = GAConfig(particles=2, timesteps=1, mutations=3, initial_population=6, tries=1, seed=4)
    space = SearchSpace.paper()
    a = _drive(ParticleGA(cfg, space))
    b = _drive(ParticleGA(cfg, space, accept=lambda g: integrity_check(g).passed))
    assert _signature(a) == _signature(b)
