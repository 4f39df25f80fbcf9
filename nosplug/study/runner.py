"""Studies on Optuna storage: create, run workers, reclaim dead workers' trials, read results.

One search run is one Optuna study, one evaluation is one trial. The study's user attributes hold
the config, so any worker that knows the storage URL and the study name can join. A worker loop:

1. under the planning lock (:mod:`nosplug.study.locks`): read the trials, hand out again the
   work of workers that died, replay the planner on what is stored and enqueue what it asks for
   (evaluations identical to a finished one are recorded as reused, not trained again);
2. pop one waiting trial (Optuna's atomic WAITING -> RUNNING), evaluate it while a heartbeat
   thread stamps the trial, and tell the result.

Planners are deterministic in the seed and the stored results, and evaluation seeds derive from
the genome and its key, so an interrupted and resumed study ends with the same trials as an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from nosplug.errors import EvaluationCrashError, UserError
from nosplug.evaluation.presets import EvalPreset
from nosplug.ga.elimination import SEARCH, Candidate, Elimination, Stage
from nosplug.ga.particle_ga import EVOLUTION, ParticleGA
from nosplug.ga.plan import COMPLETE, CRASHED, NONFINITE, PlanResult, Record
from nosplug.genome.model import Genome
from nosplug.quiet import quiet_optuna
from nosplug.study import artifacts as _artifacts
from nosplug.study import optuna_adapter as oa
from nosplug.study import trials as T
from nosplug.study.config import (
    ConfigError,
    StudyConfig,
    elimination_stage_preset,
    stage_task,
    stage_task_ref,
    study_task,
    task_options,
)
from nosplug.study.locks import planning_lock
from nosplug.study.storage import StorageError, open_storage, shown_url, storage_url
from nosplug.tasks.base import Task, TaskData

GA, ELIMINATION, BENCHMARK = "particle-ga", "elimination", "benchmark"
Event = dict[str, Any]


class StudyNotFoundError(LookupError, UserError):
    """No study of that name in the storage."""


class StudyExistsError(ValueError, UserError):
    """``study create`` would overwrite an existing study."""


class NotASearchError(UserError):
    """A search command was given a study of another kind (an amalgamation run)."""

    @classmethod
    def of(cls, name: str, kind: str) -> NotASearchError:
        """The one wording every search command uses for a study of another kind."""
        article = "an" if kind[:1] in "aeiou" else "a"
        hint = "; use `nosplug amalgamate` commands with it" if kind == "amalgamation" else ""
        return cls(f"study {name!r} is {article} {kind} run, not a search or elimination study{hint}")


class PreflightError(UserError):
    """Something that would make every evaluation fail (missing data, a bad surrogate option);
    found once, before the first trial."""


class TrialLostError(Exception):
    """This worker no longer holds its trial (heartbeats failed for a lease, or another worker
    reclaimed it); the evaluation stops because the trial will be handed out again."""


# ----------------------------------------------------------------------------- create / load
def create_study(
    config: StudyConfig | str | Path,
    *,
    name: str | None = None,
    storage: str | None = None,
    exist_ok: bool = False,
) -> optuna.Study:
    """Create the study for ``config`` (a :class:`StudyConfig` or a TOML path); never overwrites.

    With ``exist_ok`` an existing study of that name is returned if it was created from the same
    config (so a set-up command can be repeated); a different config is still an error.
    """
    cfg = config if isinstance(config, StudyConfig) else StudyConfig.from_file(config)
    if name:
        raw = dict(cfg.raw)
        raw["study"] = {**raw["study"], "name": name}
        cfg = StudyConfig(raw, cfg.source)
    cfg.check_task()
    _check_models(cfg)
    if exist_ok and cfg.name in study_names(open_storage(storage_url(storage))):
        existing = load(cfg.name, storage)
        if existing.user_attrs.get(T.CONFIG_ATTR) != _jsonable(cfg.raw):
            raise StudyExistsError(
                f"a study named {cfg.name!r} already exists in {shown_url(storage_url(storage))} with a "
                "different config; choose another name with --name"
            )
        return existing
    return _create(cfg.name, storage, GA, cfg.raw, cfg.raw["study"]["direction"])


def _check_models(cfg: StudyConfig) -> None:
    """Before anything is written: every stage binds to the task, and classification stages'
    models build with their options from the dataset's declared shape (the data itself may live
    only on the workers' machines, and other tasks may need their data to build, so the workers'
    preflight builds those)."""
    from nosplug.evaluation.runs import for_stage
    from nosplug.tasks.classification import ClassificationTask

    stages = {f"evaluation.{name}": (cfg.task, preset) for name, preset in cfg.stages.items()}
    direction = cfg.raw["study"]["direction"]
    for section in ("elimination", "next_round"):
        for i, st in enumerate(cfg.raw[section]["stages"]):
            where = f"{section}.stages[{i}]"
            own = stage_task(st, direction, where)
            stages[where] = (own or cfg.task, elimination_stage_preset(st, where))
    for where, (base, preset) in stages.items():
        try:
            task, _p = for_stage(base, preset)
            if isinstance(task, ClassificationTask):
                task.build_model(0)
        except Exception as exc:
            raise ConfigError(f"{where}: {_first_line(exc)}") from None


def _jsonable(raw: dict[str, Any]) -> Any:
    """The config as Optuna stores it (JSON round trip: tuples become lists)."""
    import json

    return json.loads(json.dumps(raw))


def _create(
    name: str, storage: str | None, kind: str, raw: dict[str, Any], direction: str = "maximize"
) -> optuna.Study:
    url = storage_url(storage)
    store = open_storage(url)
    if name in study_names(store):
        raise StudyExistsError(
            f"a study named {name!r} already exists in {shown_url(url)}; continue it with "
            f"`nosplug study run {name}` or choose another name with --name"
        )
    with quiet_optuna():  # library code stays quiet (nosplug.quiet)
        study = optuna.create_study(study_name=name, storage=store, direction=direction)
    study.set_user_attr(T.KIND_ATTR, kind)
    study.set_user_attr(T.CONFIG_ATTR, raw)
    from nosplug import __version__

    study.set_user_attr(T.VERSION_ATTR, __version__)
    return study


def study_names(store: optuna.storages.BaseStorage) -> list[str]:
    try:
        return [s.study_name for s in store.get_all_studies()]
    except Exception as exc:  # unreachable database, unreadable journal
        raise StorageError(f"cannot read studies from the storage: {_first_line(exc)}") from exc


def find_study(
    name: str, storage: str | None = None
) -> tuple[str, optuna.storages.BaseStorage, optuna.Study]:
    """(storage URL, opened storage, study) of the existing study ``name``, nosplug's or not; a
    clear error naming the studies there when it does not exist (nothing is created)."""
    url = storage_url(storage)
    store = open_storage(url, create=False)
    names = study_names(store)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise StudyNotFoundError(f"no study named {name!r} in {shown_url(url)} (studies there: {known})")
    return url, store, optuna.load_study(study_name=name, storage=store)


def load(name: str, storage: str | None = None) -> optuna.Study:
    """The nosplug study ``name``; a clear error when it does not exist."""
    url, _store, study = find_study(name, storage)
    if T.CONFIG_ATTR not in study.user_attrs:
        raise UserError(
            f"study {name!r} in {shown_url(url)} was not created by nosplug (no {T.CONFIG_ATTR} attribute)"
        )
    return study


@lru_cache(maxsize=4)
def _load_data(task_json: str, seed: int, device: str) -> TaskData:
    """A task's splits for one data seed, on ``device``: loaded and moved once per worker."""
    import json

    from nosplug.tasks.resolve import resolve_task

    ref = json.loads(task_json)
    return resolve_task(ref["name"], ref["options"]).load(seed).to(torch.device(device))


@dataclass
class StudyContext:
    """Everything derived from a study's stored config: planner, stage presets, and the task
    (built on first use: reading a study's plan or results never needs the task's module)."""

    study: optuna.Study
    kind: str
    raw: dict[str, Any]
    planner: Any
    presets: dict[str, EvalPreset]
    config: StudyConfig | None = None

    #: elimination stages that train their own task: stage -> the stage's config table
    stage_tables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @cached_property
    def task(self) -> Task:
        return self.config.task if self.config is not None else study_task(self.raw)

    @cached_property
    def _stage_tasks(self) -> dict[str, Task]:
        direction = self.raw["study"].get("direction") or ""
        return {
            stage: stage_task(table, direction, f"stage {stage!r}")  # type: ignore[misc]
            for stage, table in self.stage_tables.items()
        }

    def bound(self, stage: str) -> tuple[Task, EvalPreset]:
        """(the task as ``stage`` trains it, the stage's preset)."""
        from nosplug.evaluation.runs import for_stage

        return for_stage(self._stage_tasks.get(stage) or self.task, self.presets[stage])

    @property
    def name(self) -> str:
        return self.study.study_name

    def data(self, device: torch.device | str = "cpu", stage: str | None = None) -> TaskData:
        """The splits of the task ``stage`` trains (default: the study's task) for the study seed
        (fixed for the whole study, so every genome is judged on the same validation set), on
        ``device``."""
        import json

        own = stage_task_ref(self.stage_tables[stage]) if stage in self.stage_tables else None
        name, options = own or task_options(self.raw)
        ref = json.dumps({"name": name, "options": options}, sort_keys=True)
        return _load_data(ref, int(self.raw["study"]["seed"]), str(torch.device(device)))

    @property
    def workers(self) -> dict[str, Any]:
        return self.raw["workers"]


def context(study: optuna.Study) -> StudyContext:
    kind = study.user_attrs.get(T.KIND_ATTR, GA)
    raw = study.user_attrs[T.CONFIG_ATTR]
    if kind == GA:
        cfg = StudyConfig(raw, f"study {study.study_name!r}")
        return StudyContext(study, kind, cfg.raw, ParticleGA(cfg.ga, cfg.space), cfg.stages, cfg)
    if kind == ELIMINATION:
        # studies created before stages ran their own learning-rate test used the search's rate
        stages = [Stage(s["name"], s["keep"], s.get("lr", SEARCH)) for s in raw["stages"]]
        presets = {s["name"]: elimination_stage_preset(s, s["name"]) for s in raw["stages"]}
        tables = {s["name"]: s for s in raw["stages"] if stage_task_ref(s)}
        cands = [
            Candidate(c["source"], Genome.from_dict(c["genome"]), c["lr"], c["fitness"])
            for c in raw["candidates"]
        ]
        direction = raw["study"].get("direction") or "maximize"
        planner = Elimination(cands, stages, raw["repeats"], raw["study"]["seed"], direction)
        return StudyContext(study, kind, raw, planner, presets, stage_tables=tables)
    if kind == BENCHMARK:
        from nosplug.benchmark.planner import BenchmarkPlanner

        return StudyContext(study, kind, raw, BenchmarkPlanner(raw), {})
    raise NotASearchError.of(study.study_name, kind)


# ----------------------------------------------------------------------------- preflight
def check_stage_models(ctx: StudyContext, device: torch.device) -> None:
    """Load each stage's data and build its model on ``device``: missing data, an unknown
    surrogate or option, or a task that cannot build fails here, named by stage."""
    for stage in ctx.presets:
        where = f"evaluation.{stage}" if ctx.kind == GA else f"stage {stage!r}"
        try:
            data = ctx.data(device, stage)
        except Exception as exc:
            raise PreflightError(f"{where}: data: {_first_line(exc)}") from exc
        try:
            task, _preset = ctx.bound(stage)
            task.model(0, data.train.x.device)
        except Exception as exc:
            raise PreflightError(f"{where}: {_first_line(exc)}") from exc


def preflight(ctx: StudyContext, device: torch.device | str | None = None) -> torch.device:
    """Find, before the first trial, what would make every evaluation of the study fail; returns
    the device the worker trains on."""
    from nosplug.tasks.devices import resolve_device

    try:
        dev = resolve_device(device or ctx.workers.get("device", "auto"))
    except UserError as exc:
        raise PreflightError(f"study {ctx.name!r} cannot run: {exc}") from exc
    if ctx.kind == BENCHMARK:
        from nosplug.benchmark.study import preflight as benchmark_preflight

        try:
            benchmark_preflight(ctx.raw, dev)
        except Exception as exc:
            raise PreflightError(f"benchmark {ctx.name!r} cannot run: {_first_line(exc)}") from exc
        return dev
    try:
        ctx.data(dev)
    except Exception as exc:
        raise PreflightError(f"study {ctx.name!r} cannot run: data: {_first_line(exc)}") from exc
    try:
        check_stage_models(ctx, dev)
    except PreflightError as exc:
        raise PreflightError(f"study {ctx.name!r} cannot run: {exc}") from exc
    return dev


# ----------------------------------------------------------------------------- reading
def records(study: optuna.Study, cache: T.GenomeCache | None = None) -> dict[str, Record]:
    cache = cache or T.GenomeCache()
    return {k: T.to_record(t, cache) for k, t in T.live_trials(study.get_trials(deepcopy=False)).items()}


def plan_state(study: optuna.Study) -> PlanResult:
    """Replay the planner on the stored results (reads only; nothing is enqueued)."""
    return context(study).planner.plan(records(study))


#: How ``study best``, ``nosplug report`` and every other ranking of a search's genomes rank:
#: the words their headers print.
RANKING_RULE = (
    "ranked by fitness (the best validation value of the final run, averaged over every seed the "
    "genome was trained on) within one stage: the evolution stage once it has results, else the "
    "initial population (the stages train on different budgets, so their values are not mixed)"
)


def ranking_stage(study: optuna.Study) -> str | None:
    """The stage whose evaluations are ranked (see :data:`RANKING_RULE`); None for studies that
    are not searches (their stages are elimination rounds, all of which count)."""
    from nosplug.ga.particle_ga import INIT

    if study.user_attrs.get(T.KIND_ATTR, GA) != GA:
        return None
    scored = [t for t in _scored(study) if t.user_attrs.get(T.STAGE) == EVOLUTION]
    return EVOLUTION if scored else INIT


def _scored(study: optuna.Study) -> list[FrozenTrial]:
    live = T.live_trials(study.get_trials(deepcopy=False)).values()
    return [t for t in live if t.state == TrialState.COMPLETE and t.user_attrs.get(T.FITNESS) is not None]


def best(study: optuna.Study, n: int = 10, stage: str | None = None) -> list[FrozenTrial]:
    """The top ``n`` distinct genomes by fitness among finished evaluations of ``stage`` (default:
    :func:`ranking_stage`); reused copies and repeated genomes are skipped."""
    kind = study.user_attrs.get(T.KIND_ATTR, GA)
    if kind not in (GA, ELIMINATION):
        raise NotASearchError.of(study.study_name, kind)
    stage = stage or ranking_stage(study)
    done = _scored(study)
    if stage is not None:
        done = [t for t in done if t.user_attrs.get(T.STAGE) == stage]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    groups: dict[str, list[FrozenTrial]] = {}
    for t in done:
        if t.user_attrs.get(T.REUSED_FROM) is None:  # a reused copy is not new evidence
            groups.setdefault(f"{t.user_attrs.get(T.HASH)}|{bool(t.user_attrs.get('flip'))}", []).append(t)
    pooled = [_pooled(ts, sign) for ts in groups.values()]
    pooled.sort(key=lambda t: (sign * t.user_attrs[T.FITNESS], t.number))
    return pooled[:n]


def _pooled(trials: list[FrozenTrial], sign: float) -> FrozenTrial:
    """One genome's evaluations as one ranked entry: its best trial (for the rate it chose), with
    ``fitness`` the mean of its evaluations' fitness weighted by their seeds (a genome met again
    was trained on fresh seeds), ``fitness_seeds`` the seeds in all and ``trial_fitness`` the
    best trial's own value."""
    import copy

    rep = min(trials, key=lambda t: (sign * t.user_attrs[T.FITNESS], t.number))
    weights = [len(t.user_attrs.get("seed_fitness") or [None]) for t in trials]
    total = sum(w * float(t.user_attrs[T.FITNESS]) for w, t in zip(weights, trials))
    out = copy.deepcopy(rep)
    out.set_user_attr("trial_fitness", rep.user_attrs[T.FITNESS])
    out.set_user_attr(T.FITNESS, total / sum(weights))
    out.set_user_attr("fitness_seeds", sum(weights))
    return out


def best_genomes(name: str, storage: str | None = None, n: int = 10) -> list[tuple[Genome, float]]:
    """The best ``n`` distinct genomes of a study with their fitness, as evaluated (sign flip applied)."""
    return [(T.evaluated_genome(t.user_attrs), t.user_attrs[T.FITNESS]) for t in best(load(name, storage), n)]


# ----------------------------------------------------------------------------- the worker
@dataclass
class WorkerSummary:
    evaluated: int = 0
    reused: int = 0
    reclaimed: int = 0
    crashed: int = 0  # evaluations that raised and were retried
    lost: int = 0  # trials given up because the worker no longer held them
    done: bool = False
    seconds: float = 0.0
    artifacts: str = ""  # one line: the best genomes attached to their trials, or why not


class Worker:
    """One evaluation loop on one study; run any number of these on any machines."""

    def __init__(
        self,
        name: str,
        storage: str | None = None,
        *,
        max_trials: int | None = None,
        on_event: Callable[[Event], None] | None = None,
        threads: int | None = None,
        artifacts: str | None = None,
        device: str | None = None,
    ) -> None:
        self.url = storage_url(storage)
        self.device_name = device  # None: the study's workers.device
        self.artifacts = artifacts  # artifact store URL (None: $NOSPLUG_ARTIFACTS or beside the journal)
        _artifacts.check(self.url, artifacts)  # a bad store fails now, not after the search
        self.study = load(name, self.url)
        self.ctx = context(self.study)
        self.name = name
        self.max_trials = max_trials
        self.on_event = on_event or (lambda e: None)
        w = self.ctx.workers
        self.threads = (
            threads
            or w["threads"]
            or max(1, (os.cpu_count() or 1) // int(os.environ.get("NOSPLUG_WORKERS", "1")))
        )
        self.heartbeat = float(w["heartbeat_seconds"])
        self.lease = float(w["lease_seconds"])
        self.poll = float(w["poll_seconds"])
        self.retries = int(w.get("retries", 1))  # configs stored by nosplug 0.1 lack it
        self.worker = T.worker_id()
        self.cache = T.GenomeCache()
        self._stage_studies: dict[str, optuna.Study] = {}
        self._crashes: dict[str, int] = {}  # key -> crashes seen by this worker

    # -- loop ---------------------------------------------------------------------------
    def run(self) -> WorkerSummary:
        """Work until the plan is done or ``max_trials`` evaluations were made.

        Raises :class:`PreflightError` before the first trial when every evaluation would fail,
        and :class:`~nosplug.errors.EvaluationCrashError` when an evaluation keeps raising after
        ``workers.retries`` retries (the study is then not done; running it again retries).
        A finished search attaches its best genomes to their trials as Optuna artifacts
        (:func:`nosplug.study.artifacts.publish_best`); if that fails for another reason than a
        missing artifact store it raises :class:`~nosplug.study.artifacts.ArtifactError`.
        """
        torch.set_num_threads(self.threads)
        pin_to_cores(self.threads)
        self.device = preflight(self.ctx, self.device_name)
        summary = WorkerSummary()
        start = time.perf_counter()
        while self.max_trials is None or summary.evaluated < self.max_trials:
            with planning_lock(self.url, self.name):
                summary.reclaimed += self._reclaim()
                trials = self.study.get_trials(deepcopy=False)
                plan = self.ctx.planner.plan(self._records(trials))
                summary.reused += self._enqueue(plan, trials)
                # judged on the same snapshot as the plan: another worker may finish a trial
                # right after the lock is released, which makes the plan stale, not the study stuck
                busy = any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)
            picked = self._pop()
            if picked is None:
                active = self.study.get_trials(
                    deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING)
                )
                if plan.done and not active:
                    summary.done = True
                    break
                if not active and not plan.new and not busy:
                    raise RuntimeError(
                        f"study {self.name!r} stalled: nothing to run and the plan is not done"
                    )
                self.on_event({"event": "idle", "running": len(active)})
                time.sleep(self.poll)
                continue
            outcome = self._run_trial(picked)
            if outcome == "reused":
                summary.reused += 1
            elif outcome == "lost":
                summary.lost += 1
            elif outcome == "crashed":
                summary.crashed += 1
                self._after_crash(picked)
            else:
                summary.evaluated += 1
        summary.seconds = time.perf_counter() - start
        if summary.done and self.ctx.kind in (GA, ELIMINATION):  # best genomes beside their trials, for
            # optuna-dashboard; idempotent, see study/artifacts.py
            summary.artifacts = _artifacts.publish_best(self.study, self.url, self.artifacts).line()
        self.on_event({"event": "stopped", "done": summary.done, "evaluated": summary.evaluated})
        return summary

    def _after_crash(self, t: FrozenTrial) -> None:
        """Retry a crashed key (it is planned again) or stop once it used up its retries."""
        key = t.user_attrs[T.KEY]
        n = self._crashes[key] = self._crashes.get(key, 0) + 1
        stored = oa.reload(self.study, t).user_attrs
        if n <= self.retries:
            self.on_event({"event": "retry", "key": key, "attempt": n + 1, "error": stored.get(T.ERROR)})
            return
        raise EvaluationCrashError(
            f"study {self.name!r}: trial {t.number} ({key}, genome {t.user_attrs.get(T.HASH)}) crashed "
            f"{n} time{'s' if n > 1 else ''}: {stored.get(T.ERROR)} -- the study is not done; fix the "
            f"cause and run it again (traceback: user attribute 'traceback' of trial {t.number})"
        )

    def _records(self, trials: list[FrozenTrial]) -> dict[str, Record]:
        return {k: T.to_record(t, self.cache) for k, t in T.live_trials(trials).items()}

    def _enqueue(self, plan: PlanResult, trials: list[FrozenTrial]) -> int:
        if not plan.new:
            return 0
        finished = {}
        for t in T.live_trials(trials).values():
            if t.state in T.FINISHED and t.user_attrs.get(T.REUSED_FROM) is None:
                finished.setdefault(T.reuse_signature(t.user_attrs), t)
        reused = 0
        for p in plan.new:
            attrs = T.planned_attrs(p)
            src = finished.get(T.reuse_signature(attrs))
            if src is not None:
                self.study.add_trial(T.copy_as_reused(src, attrs))
                reused += 1
                self.on_event({"event": "reused", "key": p.key, "from": src.number})
            else:
                self.study.enqueue_trial({}, user_attrs=attrs)
        self.on_event({"event": "planned", "count": len(plan.new), "progress": plan.progress})
        return reused

    def _pop(self) -> FrozenTrial | None:
        for t in oa.waiting(self.study):
            if T.KEY not in t.user_attrs:
                continue  # enqueued by another tool: not ours to run
            if oa.claim(self.study, t):
                oa.set_attr(self.study, t, T.WORKER, self.worker)
                oa.set_attr(self.study, t, T.HEARTBEAT, time.time())
                return oa.reload(self.study, t)
        return None

    # -- dead workers ------------------------------------------------------------------
    def _reclaim(self) -> int:
        """Mark RUNNING trials of dead workers as abandoned (FAIL); the planner re-issues their keys."""
        n = 0
        now = time.time()
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if T.KEY not in t.user_attrs:
                continue
            last = t.user_attrs.get(T.HEARTBEAT) or (
                t.datetime_start.timestamp() if t.datetime_start else now
            )
            who = t.user_attrs.get(T.WORKER, "")
            gone = _process_gone(who)
            if gone or now - last > self.lease:
                why = f"worker {who or '?'} " + (
                    "exited" if gone else f"sent no heartbeat for {now - last:.0f} s"
                )
                oa.set_attr(self.study, t, T.ABANDONED, True)
                oa.set_attr(self.study, t, T.REASON, why + "; its evaluation was handed out again")
                oa.fail(self.study, t)
                self.on_event({"event": "reclaimed", "key": t.user_attrs[T.KEY], "reason": why})
                n += 1
        return n

    # -- one evaluation ------------------------------------------------------------------
    def _run_trial(self, t: FrozenTrial) -> str:
        """Evaluate ``t`` and tell the result.

        Returns "evaluated", "reused", "crashed" (the evaluation raised: recorded on the trial,
        which then stands for nothing, so its key is planned again) or "lost" (the trial was
        taken away while it ran).
        """
        attrs = t.user_attrs
        key, stage = attrs[T.KEY], attrs[T.STAGE]
        if self._finish_as_reused(t):
            return "reused"
        self.on_event({"event": "started", "key": key, "stage": stage, "formula": attrs.get(T.FORMULA)})
        stop, lost = threading.Event(), threading.Event()
        beat = threading.Thread(target=self._beat, args=(t, stop, lost), daemon=True)
        beat.start()
        outcome = "evaluated"
        try:
            result = self._evaluate(t, lost)
        except KeyboardInterrupt:
            oa.set_attr(self.study, t, T.ABANDONED, True)
            oa.set_attr(self.study, t, T.REASON, "interrupted; its evaluation was handed out again")
            oa.fail(self.study, t)
            raise
        except TrialLostError as exc:
            # best effort: say so at once, rather than leaving others to wait out the lease
            with contextlib.suppress(Exception):
                oa.set_attr(self.study, t, T.ABANDONED, True)
                oa.set_attr(self.study, t, T.REASON, f"given up by its worker: {exc}")
                oa.fail(self.study, t)
            self.on_event({"event": "lost", "key": key, "reason": str(exc)})
            return "lost"
        except Exception as exc:  # not a verdict on the candidate: recorded, retried, never ranked
            import traceback

            outcome = "crashed"
            error = f"{type(exc).__name__}: {_first_line(exc)}"
            result = {
                "status": CRASHED,
                "fitness": None,
                "reason": f"crashed: {error}",
                T.ERROR: error,
                T.TRACEBACK: traceback.format_exc()[-4000:],
            }
            self.on_event({"event": "crashed", "key": key, "error": error})
        finally:
            stop.set()
            beat.join()
        try:
            for k, v in result.items():
                oa.set_attr(self.study, t, k, v)
            state = T.state_for(result["status"])
            value = result["fitness"] if state == TrialState.COMPLETE else None
            self.study.tell(t.number, value, state=state, skip_if_finished=False)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.on_event({"event": "lost", "key": key, "reason": "the trial was reclaimed while it ran"})
            return "lost"
        self.on_event(
            {
                "event": "finished",
                "key": key,
                "stage": stage,
                "status": result["status"],
                "fitness": result.get("fitness"),
                "reason": result.get("reason"),
                "duration": result.get("duration"),
                "formula": attrs.get(T.FORMULA),
            }
        )
        return outcome

    def _finish_as_reused(self, t: FrozenTrial) -> bool:
        """Finish ``t`` with the result of an identical evaluation that finished meanwhile."""
        sig = T.reuse_signature(t.user_attrs)
        for other in T.live_trials(self.study.get_trials(deepcopy=False, states=T.FINISHED)).values():
            if other.number == t.number or other.user_attrs.get(T.REUSED_FROM) is not None:
                continue
            if T.reuse_signature(other.user_attrs) != sig or T.STATUS not in other.user_attrs:
                continue
            for k in T.RESULT_ATTRS:
                if k in other.user_attrs:
                    oa.set_attr(self.study, t, k, other.user_attrs[k])
            oa.set_attr(self.study, t, "duration", 0.0)
            oa.set_attr(self.study, t, T.REUSED_FROM, other.number)
            for step, value in other.intermediate_values.items():
                oa.set_intermediate(self.study, t, step, value)
            value = other.value if other.state == TrialState.COMPLETE else None
            self.study.tell(t.number, value, state=other.state, skip_if_finished=False)
            self.on_event({"event": "reused", "key": t.user_attrs[T.KEY], "from": other.number})
            return True
        return False

    def _beat(self, t: FrozenTrial, stop: threading.Event, lost: threading.Event) -> None:
        """Stamp the trial every ``heartbeat`` seconds; set ``lost`` when it is no longer ours.

        A heartbeat that cannot be written for ``lease - heartbeat`` seconds means other workers
        are about to judge this one dead and hand the trial out again, so it is given up before
        that (as it is at once when the trial was already reclaimed).
        """
        last_ok = time.time()
        while not stop.wait(self.heartbeat):
            try:
                oa.set_attr(self.study, t, T.HEARTBEAT, time.time())
                now = oa.reload(self.study, t)
            except Exception as exc:  # a storage hiccup: tolerated for less than a lease
                if time.time() - last_ok > self.lease - self.heartbeat:
                    self._lose(lost, f"no heartbeat could be written for {time.time() - last_ok:.0f} s: "
                               f"{_first_line(exc)}")  # fmt: skip
                    return
                continue
            if now.state != TrialState.RUNNING or now.user_attrs.get(T.ABANDONED):
                self._lose(lost, "another worker reclaimed it")
                return
            last_ok = time.time()

    def _lost_check(self, lost: threading.Event) -> Callable[[str, dict[str, Any]], None]:
        """A progress callback (called after every epoch) that stops a trial this worker lost."""

        def check(_what: str, _info: dict[str, Any]) -> None:
            if lost.is_set():
                raise TrialLostError(getattr(self, "_lost_reason", "lost"))

        return check

    def _lose(self, lost: threading.Event, reason: str) -> None:
        self._lost_reason = reason
        lost.set()

    def _evaluate(self, t: FrozenTrial, lost: threading.Event) -> dict[str, Any]:
        from nosplug.evaluation.evaluate import evaluate_genome
        from nosplug.evaluation.pruners import TrialReporter, pruner_for
        from nosplug.evaluation.runs import final_run

        attrs = t.user_attrs
        if self.ctx.kind == BENCHMARK:
            from nosplug.benchmark.study import evaluate as benchmark_run

            return benchmark_run(self.ctx.raw, attrs, self.device, self._lost_check(lost))
        stage = attrs[T.STAGE]
        task, preset = self.ctx.bound(stage)
        genome = Genome.from_json(attrs[T.GENOME])
        seed = int(attrs[T.SEED])
        study = self._stage_studies.get(stage)
        if study is None:
            study = self._stage_studies[stage] = optuna.load_study(
                study_name=self.name, storage=oa.storage_of(self.study), pruner=pruner_for(task, preset)
            )
        reporter = TrialReporter(oa.live_trial(study, t))
        data = self.ctx.data(self.device, stage)
        check = self._lost_check(lost)

        if attrs.get(T.FIXED_LR) is not None:
            started = time.perf_counter()
            run = final_run(genome, float(attrs[T.FIXED_LR]), task, data, preset, reporter, seed, check)
            return {
                "status": COMPLETE if run.best is not None else NONFINITE,
                "fitness": run.best,
                "reason": run.why,
                "eval_stage": "final",
                "chosen_lr": float(attrs[T.FIXED_LR]),
                "final_steps_run": run.steps,
                T.TRAIN_CURVE: run.train_curve,
                "metric": task.metric.name,
                "duration": time.perf_counter() - started,
            }  # the validation curve was reported to the trial as it ran
        res = evaluate_genome(genome, task, data, preset, reporter=reporter, seed=seed, progress=check)
        out = res.to_dict()
        for k in ("val_curve", "val_steps"):
            out.pop(k)
        out["eval_stage"] = out.pop("stage")
        return out


def pin_to_cores(threads: int) -> list[int] | None:
    """Pin worker i of K local workers (``NOSPLUG_WORKER_INDEX`` / ``NOSPLUG_WORKERS``, set by
    ``study run --workers K``) to its own ``threads`` cores when the machine has K x threads
    cores to give: the workers then neither migrate between cores nor share one. Returns the cores,
    or None when not pinned (a single worker, too few cores, or no affinity API on this system)."""
    index, k = os.environ.get("NOSPLUG_WORKER_INDEX"), int(os.environ.get("NOSPLUG_WORKERS", "1"))
    if index is None or k < 2 or not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    i = int(index)
    if len(cpus) < k * threads or not 0 <= i < k:
        return None
    mine = cpus[i * threads : (i + 1) * threads]
    os.sched_setaffinity(0, mine)
    return mine


def _process_gone(worker: str) -> bool:
    """True when ``worker`` (host:pid) ran on this machine and that process no longer runs."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child its parent has not waited for yet is a zombie: gone as well
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------- the verdict
def verdict_name(name: str) -> str:
    """The benchmark study that gives search ``name`` its verdict."""
    return f"{name}.verdict"


def verdict_config(ctx: StudyContext, storage: str | None = None) -> dict[str, Any] | None:
    """The benchmark that ends a search (config ``[validate]``): its ``top`` best genomes, as
    evaluated, against the tuned reference and baselines on the search's own task with the
    evolution stage's budget; None when ``validate.top`` is 0 or nothing has a fitness."""
    from nosplug.baselines import is_set_name
    from nosplug.benchmark.config import normalise as benchmark_config

    v = ctx.raw.get("validate") or {}
    top = best(ctx.study, int(v.get("top", 0))) if v.get("top", 0) else []
    if not top:
        return None
    name, options = task_options(ctx.raw)
    stage = dict(ctx.raw["evaluation"]["evolution"])
    preset = stage.pop("preset", "task")
    specs = [f"study:{ctx.name}#{i + 1}" for i in range(len(top))]
    raw = {
        "benchmark": {
            "name": verdict_name(ctx.name),
            "seed": int(ctx.raw["study"]["seed"]),
            "reference": v["reference"],
            "contenders": [
                *specs,
                *[b for b in v["baselines"] if b != v["reference"] and not is_set_name(b)],
            ],
            "baselines": [b for b in v["baselines"] if is_set_name(b)],  # named sets: modern, ...
            "description": f"the verdict of search {ctx.name}",
        },
        "tuning": {
            "trials": int(v["tuning_trials"]),
            "lr": list(v["lr"]),
            "sampler": v.get("sampler", "tpe"),  # studies stored before the option: TPE
        },
        "evaluation": {"seeds": int(v["seeds"])},
        "tasks": [
            {"name": name, "options": options, "preset": preset, "overrides": stage, "label": ctx.task.name}
        ],
        "workers": dict(ctx.raw["workers"]),
    }
    return benchmark_config(raw, storage)


def run_verdict(
    name: str,
    storage: str | None = None,
    *,
    device: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    threads: int | None = None,
):
    """Create (or resume) and run the verdict benchmark of a finished search; returns its
    :class:`~nosplug.benchmark.results.BenchmarkResult`, or None when the config asks for none."""
    from nosplug.benchmark.results import collect
    from nosplug.benchmark.study import create as create_benchmark

    url = storage_url(storage)
    ctx = context(load(name, url))
    if ctx.kind != GA or not plan_state(ctx.study).done:
        return None
    vname = verdict_name(name)
    if vname in study_names(open_storage(url)):
        study = load(vname, url)  # its genomes were fixed when it was created
    else:
        raw = verdict_config(ctx, url)
        if raw is None:
            return None
        study = create_benchmark(raw, url, exist_ok=True)
    Worker(study.study_name, url, on_event=on_event, device=device, threads=threads).run()
    return collect(load(study.study_name, url))


def verdict(name: str, storage: str | None = None):
    """The verdict of search ``name`` as stored (None when it has not run)."""
    from nosplug.benchmark.results import collect

    url = storage_url(storage)
    vname = verdict_name(name)
    if vname not in study_names(open_storage(url, create=False)):
        return None
    return collect(load(vname, url))
