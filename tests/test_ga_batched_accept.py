"""The particle GA checks candidates in batches (initial genomes across keys, each round's mutants
drawn ahead) and must plan exactly what it plans checking one candidate at a time."""

from __future__ import annotations

from study_helpers import drive

from nosplug.evaluation.integrity import integrity_check
from nosplug.genome.space import SearchSpace
from nosplug.search.planners import draws
from nosplug.search.planners.particle_ga import GAConfig, ParticleGA
from nosplug.study.plan import Record


def _signature(records: dict[str, Record]) -> dict[str, tuple]:
    return {k: (r.genome.to_json(), r.status, r.fitness) for k, r in records.items()}


def test_batched_checks_plan_what_one_at_a_time_checks_plan(monkeypatch) -> None:
    cfg = GAConfig(particles=3, timesteps=2, mutations=4, initial_population=16, tries=2, seed=9)
    space = SearchSpace.paper()
    calls: list[int] = []
    batched = ParticleGA(cfg, space)
    inner = batched.draws._accept_batch
    assert inner is not None

    def counting(genomes):
        calls.append(len(genomes))
        return inner(genomes)

    batched.draws._accept_batch = counting
    single = ParticleGA(cfg, space, accept=lambda g: integrity_check(g).passed)
    assert single.draws._accept_batch is None
    fast = drive(batched)
    assert _signature(fast) == _signature(drive(single))
    assert _signature(drive(ParticleGA(cfg, space), order_seed=3)) == _signature(fast)
    # the initial population took a few batched rounds, not one check per candidate
    assert calls and max(calls) >= cfg.initial_population and len(calls) < sum(calls) / 3


def test_a_slot_that_runs_out_of_speculated_mutants_draws_more(monkeypatch) -> None:
    monkeypatch.setattr(draws, "SPECULATE", 1)
    cfg = GAConfig(particles=2, timesteps=1, mutations=3, initial_population=6, tries=1, seed=4)
    space = SearchSpace.paper()
    a = drive(ParticleGA(cfg, space))
    b = drive(ParticleGA(cfg, space, accept=lambda g: integrity_check(g).passed))
    assert _signature(a) == _signature(b)
