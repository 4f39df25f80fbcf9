"""What the report shows, extracted from a study's trial rows (:func:`nosplug.study.export.trial_rows`).

Everything here is plain data and pure functions of the rows, so the figures can be tested
against the trials without drawing anything. Positions follow the planner's own record: the
position a particle held at timestep k is the ``parent`` its children at k + 1 name, and the
position after its last finished timestep is the one the replayed planner reports. Nothing
re-implements the GA's selection rule, so the figure cannot drift from the search.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Trial states whose evaluation is over (the rest are waiting or running).
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation key of the study, as the trial that stands for it reports it."""

    key: str
    trial: int
    state: str
    stage: str | None
    particle: int | None = None
    timestep: int | None = None
    slot: int | None = None
    round: int | None = None
    parent: str | None = None
    fitness: float | None = None
    chosen_lr: float | None = None
    hash: str | None = None
    formula: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def scored(self) -> bool:
        """Finished with a fitness (the GA counts everything else as rejected)."""
        return self.state == "COMPLETE" and self.fitness is not None

    @property
    def rejected(self) -> bool:
        """Finished without a fitness: pruned by a gate, failed the integrity check, or crashed."""
        return self.finished and not self.scored


def live_evaluations(rows: Iterable[Mapping[str, Any]]) -> dict[str, Evaluation]:
    """key -> the evaluation that stands for it.

    Mirrors :func:`nosplug.study.trials.live_trials` on export rows: trials of dead workers
    (``abandoned``) are skipped and a key re-issued after one keeps its earliest live trial.
    """
    out: dict[str, Evaluation] = {}
    for r in rows:
        key = r.get("key")
        if key is None or r.get("abandoned"):
            continue
        if key in out and out[key].trial < r["trial_number"]:
            continue
        fitness = r.get("fitness")
        out[key] = Evaluation(
            key=key,
            trial=int(r["trial_number"]),
            state=str(r["state"]),
            stage=r.get("stage"),
            particle=r.get("particle"),
            timestep=r.get("timestep"),
            slot=r.get("slot"),
            round=r.get("round"),
            parent=r.get("parent"),
            fitness=None if fitness is None else float(fitness),
            chosen_lr=r.get("chosen_lr"),
            hash=r.get("canonical_hash"),
            formula=r.get("formula"),
        )
    return out


@dataclass
class Trajectory:
    """One particle: the position it held after each timestep, and every child it evaluated.

    ``positions[k]`` is the evaluation of the position at timestep k (0 is the particle's start,
    the re-evaluation of its initial-population genome); it is shorter than the study's
    ``timesteps`` while the particle is still running.
    """

    particle: int
    positions: list[Evaluation] = field(default_factory=list)
    children: list[Evaluation] = field(default_factory=list)

    @property
    def timesteps(self) -> list[int]:
        return list(range(len(self.positions)))

    @property
    def fitness(self) -> list[float | None]:
        return [p.fitness if p.scored else None for p in self.positions]


def particle_trajectories(
    rows: Iterable[Mapping[str, Any]], current: Mapping[int, str] | None = None
) -> list[Trajectory]:
    """Every particle's path through the search, sorted by particle.

    Args:
        rows: trial rows (:func:`nosplug.study.export.trial_rows`).
        current: particle -> key of its current position as the replayed planner reports it
            (``plan_state(study).progress["positions"][p]["key"]``). It adds the position after
            the last timestep, which no child names as its parent yet; without it trajectories
            end at the last position that has children.
    """
    live = live_evaluations(rows)
    particles: dict[int, Trajectory] = {}
    chosen: dict[int, set[str]] = {}
    for e in live.values():
        if e.particle is None:
            continue
        traj = particles.setdefault(e.particle, Trajectory(e.particle))
        keys = chosen.setdefault(e.particle, set())
        if e.slot is None:  # the particle's start
            keys.add(e.key)
        else:
            traj.children.append(e)
            if e.parent is not None:
                keys.add(e.parent)
    for p, key in (current or {}).items():
        if p in particles:
            chosen[p].add(key)
    for p, traj in particles.items():
        by_step: dict[int, Evaluation] = {}
        for key in chosen[p]:
            e = live.get(key)
            if e is not None and e.timestep is not None:
                by_step[e.timestep] = e
        # contiguous from the start: a gap would mean a position the planner did not choose
        k = 0
        while k in by_step:
            traj.positions.append(by_step[k])
            k += 1
        traj.children.sort(key=lambda e: (e.timestep or 0, e.slot or 0, e.round or 0))
    return [particles[p] for p in sorted(particles)]


def initial_population(rows: Iterable[Mapping[str, Any]]) -> list[Evaluation]:
    """The evaluations of the random initial population (stage ``init``), by key."""
    live = live_evaluations(rows)
    return sorted((e for e in live.values() if e.key.startswith("init/")), key=lambda e: e.key)


def state_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many live evaluations are in each trial state (abandoned trials are not counted)."""
    counts: dict[str, int] = {}
    for e in live_evaluations(rows).values():
        counts[e.state] = counts.get(e.state, 0) + 1
    return dict(sorted(counts.items()))
