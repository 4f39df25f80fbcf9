"""The study-kind contract: what a kind of study tells the generic work queue.

:mod:`nosplug.study` stores studies, hands their work out to workers, keeps heartbeats, reclaims
the work of dead workers and survives kills, without knowing what the work is. A *kind* (a
search, its elimination, a benchmark, an amalgamation run, an amalgamation protocol, or a third
party's) knows that, and is registered like every other plugin record, through the hook
``nosplug_study_kinds`` (:mod:`nosplug.hookspecs`); the built-in kinds come from the built-in
plugin :mod:`nosplug.builtin.kinds`.

A :class:`StudyKind` opens a stored study into a :class:`KindStudy`, which declares:

* its config (parsed from the study's stored ``nosplug.config``, so any worker can rebuild it);
* its **planner** (:class:`~nosplug.study.plan.Planner`): what to evaluate next, a pure function
  of what is stored, so every worker, a resume or a rerun plans the same work;
* its **preflight**: what would make every evaluation fail, found before the first one;
* **evaluate**(work item, reporter, device, check) -> :class:`~nosplug.study.result.TrialResult`,
  reporting through a :class:`~nosplug.evaluation.reporter.Reporter` (with the pruner the kind
  names for the item);
* how its results **rank** (``best``), what to do once the study is **done** (attach artifacts),
  and which studies **follow** it (a search's verdict).

A kind whose work is one sequential chain that cannot be handed out (an amalgamation run:
each curriculum period continues the last one's weights) overrides :meth:`KindStudy.run`
instead of planning, and still stores one trial per step in the same storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

import optuna

from nosplug.errors import UserError
from nosplug.study import trials as T
from nosplug.study.plan import Planner, PlanResult, Record
from nosplug.study.studies import kind_name

if TYPE_CHECKING:
    import torch

    from nosplug.config import WorkersConfig
    from nosplug.evaluation.reporter import Reporter
    from nosplug.genome.model import Genome
    from nosplug.study.result import TrialResult

Event = dict[str, Any]
#: Called after every epoch of an evaluation; raises to stop a trial the worker lost.
Check = Callable[[str, dict[str, Any]], None]


class UnknownKindError(UserError):
    """A study of a kind no registered plugin provides."""


class NotRankedError(UserError):
    """A ranking was asked of a study whose kind does not rank genomes (an amalgamation run)."""

    @classmethod
    def of(cls, name: str, kind: str) -> NotRankedError:
        """The one wording every search command uses for a study of another kind."""
        article = "an" if kind[:1] in "aeiou" else "a"
        hint = "; use `nosplug amalgamate` commands with it" if kind.startswith("amalgamation") else ""
        return cls(f"study {name!r} is {article} {kind} run, not a search or elimination study{hint}")


@dataclass(frozen=True)
class WorkItem:
    """One piece of planned work, as its trial holds it: the planned user attributes."""

    number: int
    attrs: Mapping[str, Any]

    @property
    def key(self) -> str:
        return self.attrs[T.KEY]

    @property
    def stage(self) -> str:
        return self.attrs[T.STAGE]

    @property
    def seed(self) -> int:
        return int(self.attrs[T.SEED])

    @cached_property
    def genome(self) -> Genome | None:
        from nosplug.genome.model import Genome

        return Genome.from_json(self.attrs[T.GENOME]) if T.GENOME in self.attrs else None


class StudyKind(Protocol):
    """A kind of study, as registered through ``nosplug_study_kinds``."""

    #: The name stored in the study's ``nosplug.kind`` attribute.
    name: str
    #: Names older nosplug versions stored for this kind.
    aliases: tuple[str, ...]
    #: One line for ``nosplug plugins list``.
    description: str

    def open(self, study: optuna.Study) -> KindStudy:
        """The stored study as this kind reads it (its config parsed)."""


class KindStudy:
    """A stored study opened by its kind; subclasses fill in what their kind does.

    Attributes:
        study: the Optuna study.
        kind: the kind's name.
        raw: the stored config.
    """

    #: Kinds whose work is planned and handed out (False: :meth:`run` drives it).
    queued = True

    def __init__(self, study: optuna.Study, kind: str) -> None:
        self.study = study
        self.kind = kind
        self.raw: dict[str, Any] = study.user_attrs[T.CONFIG_ATTR]

    @property
    def name(self) -> str:
        return self.study.study_name

    # -- planning ---------------------------------------------------------------------------
    @cached_property
    def planner(self) -> Planner:
        raise NotImplementedError(f"study kind {self.kind!r} has no planner")

    def records(self, cache: T.GenomeCache | None = None) -> dict[str, Record]:
        cache = cache or T.GenomeCache()
        trials = self.study.get_trials(deepcopy=False)
        return {k: T.to_record(t, cache) for k, t in T.live_trials(trials).items()}

    def plan_state(self) -> PlanResult:
        """The planner replayed on what is stored (reads only; nothing is enqueued)."""
        return self.planner.plan(self.records())

    def expected_evaluations(self) -> int | None:
        """How many evaluations the plan expects, for progress bars (None: unknown)."""
        return None

    # -- working ------------------------------------------------------------------------------
    @property
    def workers(self) -> WorkersConfig:
        from nosplug.config import WorkersConfig

        return WorkersConfig.from_raw(self.raw.get("workers", {}))

    def preflight(self, device: torch.device) -> None:
        """Raise (one line) when every evaluation would fail on ``device``."""

    def pruner(self, item: WorkItem) -> optuna.pruners.BasePruner | None:
        """The pruner that decides ``item``'s gates (None: nothing is pruned)."""
        return None

    def evaluate(self, item: WorkItem, reporter: Reporter, device: torch.device, check: Check) -> TrialResult:
        raise NotImplementedError(f"study kind {self.kind!r} evaluates nothing")

    def run(self, storage: str, **options: Any) -> Any:
        """Drive a kind whose work is not handed out (``queued`` False)."""
        raise NotImplementedError(f"study kind {self.kind!r} is run by workers")

    # -- results ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Where the study stands (``nosplug study status``): trial states, outcomes, reuse,
        abandoned work, the last crashes, the plan's phase and progress, the best fitness."""
        from collections import Counter

        from nosplug.study.plan import CRASHED

        trials = self.study.get_trials(deepcopy=False)
        counted = [t for t in trials if not t.user_attrs.get(T.ABANDONED)]
        outcomes = Counter(
            t.user_attrs.get(T.STATUS, t.state.name.lower())
            for t in counted
            if t.state in T.FINISHED and t.user_attrs.get(T.REUSED_FROM) is None
        )
        crashes = [
            {"trial": t.number, "key": t.user_attrs.get(T.KEY), "error": t.user_attrs.get(T.ERROR)}
            for t in trials
            if t.user_attrs.get(T.STATUS) == CRASHED
        ]
        plan = self.plan_state()
        try:
            top = self.best(1)
        except NotRankedError:  # a benchmark ranks contenders, not genomes
            top = []
        return {
            "study": self.name,
            "done": plan.done,
            "phase": plan.progress.get("phase"),
            "states": dict(Counter(t.state.name for t in counted)),
            "outcomes": dict(outcomes),
            "reused": sum(1 for t in trials if t.user_attrs.get(T.REUSED_FROM) is not None),
            "abandoned": sum(1 for t in trials if t.user_attrs.get(T.ABANDONED)),
            "crashes": crashes[-5:],
            "particles_done": plan.progress.get("particles_done"),
            "particles": plan.progress.get("particles"),
            "note": plan.progress.get("fewer_particles"),
            "best_fitness": top[0].user_attrs.get("fitness") if top else None,
        }

    def best(self, n: int = 10) -> list[optuna.trial.FrozenTrial]:
        """The top ``n`` results; kinds that do not rank genomes raise :class:`NotRankedError`."""
        raise NotRankedError.of(self.name, self.kind)

    def best_genomes(self, n: int = 10) -> list[tuple[Genome, float]]:
        """The best ``n`` distinct genomes with their fitness, as evaluated (``study:NAME#k``)."""
        return [(T.evaluated_genome(t.user_attrs), t.user_attrs[T.FITNESS]) for t in self.best(n)]

    def on_done(self, storage: str, artifacts: str | None) -> str:
        """Called by the worker that finds the study done; returns one line for the user."""
        return ""

    def follow_ups(self, storage: str) -> list[str]:
        """Studies to run once this one is done (created here when they do not exist yet)."""
        return []


# ----------------------------------------------------------------------------- the registry
def registered_kinds() -> dict[str, StudyKind]:
    """Every registered kind by name and by alias."""
    from nosplug.primitives.registry import registry

    out: dict[str, StudyKind] = {}
    for kind in registry().items["study_kinds"].values():
        out[kind.name] = kind
        for alias in getattr(kind, "aliases", ()):
            out.setdefault(alias, kind)
    return out


def kind_named(name: str) -> StudyKind:
    kinds = registered_kinds()
    if name not in kinds:
        known = ", ".join(sorted({k.name for k in kinds.values()}))
        raise UnknownKindError(f"no plugin provides study kind {name!r} (known: {known})")
    return kinds[name]


def open_study(study: optuna.Study) -> KindStudy:
    """The stored ``study`` opened by its kind."""
    return kind_named(kind_name(study)).open(study)


def best_genomes(name: str, storage: str | None = None, n: int = 10) -> list[tuple[Genome, float]]:
    """The best ``n`` distinct genomes of study ``name`` with their fitness, as evaluated (what
    ``study:NAME#k`` names, for contenders, teachers and exports)."""
    from nosplug.study.studies import load

    return open_study(load(name, storage)).best_genomes(n)


def plan_state(study: optuna.Study) -> PlanResult:
    """The planner of ``study``'s kind replayed on what is stored (reads only)."""
    return open_study(study).plan_state()
