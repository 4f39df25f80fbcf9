"""The study kinds of a search: ``search`` (a planner's evaluations) and ``elimination``.

Both evaluate genomes on a task, stage by stage (a stage names its evaluation settings, and an
elimination stage may name a task of its own): the integrity check, the learning-rate sweep with
its gates, and the final run, or only the final run at a fixed rate. Their results rank by
fitness (:mod:`nosplug.search.ranking`); a finished one attaches its best genomes to their
trials as Optuna artifacts, and a finished search is followed by its verdict
(:mod:`nosplug.search.verdict`).
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

import optuna
import torch

from nosplug.evaluation.presets import EvalPreset
from nosplug.evaluation.reporter import Reporter
from nosplug.genome.model import Genome
from nosplug.search import ranking
from nosplug.search.config import (
    SearchConfig,
    elimination_stage_preset,
    stage_task,
    stage_task_ref,
    task_options,
)
from nosplug.search.elimination import SEARCH, Candidate, Elimination, Stage
from nosplug.study import trials as T
from nosplug.study.artifacts import Attached, publish_genomes
from nosplug.study.kinds import Check, KindStudy, WorkItem
from nosplug.study.plan import COMPLETE, NONFINITE, Planner
from nosplug.study.result import TrialResult, first_line
from nosplug.tasks.base import Task, TaskData

#: How many best genomes a finished search attaches (the default of ``nosplug report -n``).
BEST_COUNT = 5


class GenomeStudy(KindStudy):
    """What the two kinds share: genome evaluations on a task, stage by stage."""

    presets: dict[str, EvalPreset]
    #: elimination stages that train their own task: stage -> the stage's config table
    stage_tables: dict[str, dict[str, Any]]

    @cached_property
    def task(self) -> Task:
        from nosplug.search.config import study_task

        return study_task(self.raw)

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

    def data(self, device: torch.device | str = "cpu", stage: str | None = None) -> TaskData:
        """The splits of the task ``stage`` trains (default: the study's task) for the study seed
        (fixed for the whole study, so every genome is judged on the same validation set)."""
        from nosplug.tasks.resolve import load_task_data

        own = stage_task_ref(self.stage_tables[stage]) if stage in self.stage_tables else None
        name, options = own or task_options(self.raw)
        return load_task_data(name, options, int(self.raw["study"]["seed"]), device)

    # -- working ------------------------------------------------------------------------------
    def preflight(self, device: torch.device) -> None:
        """Load each stage's data and build its model on ``device``: missing data, an unknown
        surrogate or option, or a task that cannot build fails here, named by stage."""
        try:
            self.data(device)
        except Exception as exc:
            raise RuntimeError(f"data: {first_line(exc)}") from exc
        for stage in self.presets:
            where = self.stage_label(stage)
            try:
                data = self.data(device, stage)
            except Exception as exc:
                raise RuntimeError(f"{where}: data: {first_line(exc)}") from exc
            try:
                task, _preset = self.bound(stage)
                task.model(0, data.train.x.device)
            except Exception as exc:
                raise RuntimeError(f"{where}: {first_line(exc)}") from exc

    def stage_label(self, stage: str) -> str:
        return f"stage {stage!r}"

    @cached_property
    def _pruners(self) -> dict[str, optuna.pruners.BasePruner]:
        from nosplug.evaluation.pruners import pruner_for

        return {stage: pruner_for(*self.bound(stage)) for stage in self.presets}

    def pruner(self, item: WorkItem) -> optuna.pruners.BasePruner:
        return self._pruners[item.stage]

    def evaluate(self, item: WorkItem, reporter: Reporter, device: torch.device, check: Check) -> TrialResult:
        from nosplug.evaluation.evaluate import evaluate_genome
        from nosplug.evaluation.runs import final_run

        task, preset = self.bound(item.stage)
        genome, seed = item.genome, item.seed
        assert genome is not None
        data = self.data(device, item.stage)
        fixed = item.attrs.get(T.FIXED_LR)
        if fixed is not None:
            started = time.perf_counter()
            run = final_run(genome, float(fixed), task, data, preset, reporter, seed, check)
            attrs = {
                "eval_stage": "final",
                "chosen_lr": float(fixed),
                "final_steps_run": run.steps,
                T.TRAIN_CURVE: run.train_curve,
                "metric": task.metric.name,
                "duration": time.perf_counter() - started,
            }  # the validation curve was reported as it ran
            return TrialResult(COMPLETE if run.best is not None else NONFINITE, run.best, run.why, attrs)
        res = evaluate_genome(genome, task, data, preset, reporter=reporter, seed=seed, progress=check)
        attrs = res.to_dict()
        for k in ("status", "fitness", "reason", "val_curve", "val_steps"):
            attrs.pop(k)
        attrs["eval_stage"] = attrs.pop("stage")
        return TrialResult(res.status, res.fitness, res.reason, attrs)

    # -- results ------------------------------------------------------------------------------
    def best(self, n: int = 10) -> list[optuna.trial.FrozenTrial]:
        return ranking.best(self.study, n)

    def on_done(self, storage: str, artifacts: str | None) -> str:
        return publish_best(self.study, storage, artifacts).line()


def publish_best(
    study: optuna.Study, storage: str | None = None, artifacts: str | None = None, n: int = BEST_COUNT
) -> Attached:
    """Attach the ``n`` best distinct genomes of a finished search or elimination to the trials
    that evaluated them: ``NAME_bestK.json`` (the genome as evaluated) and ``NAME_bestK.py`` (the
    exported optimizer); see :func:`nosplug.study.artifacts.publish_genomes`. Idempotent."""
    return publish_genomes(study, ranking.best(study, n), storage, artifacts)


# ----------------------------------------------------------------------------- search
class SearchStudy(GenomeStudy):
    """A search: a planner over the search space, its two stages ``init`` and ``evolution``."""

    def __init__(self, study: optuna.Study, kind: str) -> None:
        super().__init__(study, kind)
        self.config = SearchConfig(self.raw, f"study {self.name!r}")
        self.raw = self.config.raw  # normalised: keys added since the study was stored get defaults
        self.presets = self.config.stages
        self.stage_tables = {}  # a search's stages train its own task

    @cached_property
    def task(self) -> Task:
        return self.config.task

    @cached_property
    def planner(self) -> Planner:
        return self.config.make_planner()

    def stage_label(self, stage: str) -> str:
        return f"evaluation.{stage}"

    def expected_evaluations(self) -> int | None:
        return self.planner.expected_evaluations

    def follow_ups(self, storage: str) -> list[str]:
        """The verdict (config ``[validate]``) of a finished search, created on first call."""
        from nosplug.search.verdict import ensure_verdict

        name = ensure_verdict(self, storage)
        return [name] if name else []


class SearchKind:
    name = "search"
    aliases = ("particle-ga",)  # how nosplug <= 0.1 stored searches
    description = "a search for optimizers: a planner's genome evaluations (nosplug study create)"

    def open(self, study: optuna.Study) -> SearchStudy:
        return SearchStudy(study, self.name)


# ----------------------------------------------------------------------------- elimination
class EliminationStudy(GenomeStudy):
    """The elimination protocol of spec §10: a search's best genomes through harder stages."""

    def __init__(self, study: optuna.Study, kind: str) -> None:
        super().__init__(study, kind)
        raw = self.raw
        self.presets = {s["name"]: elimination_stage_preset(s, s["name"]) for s in raw["stages"]}
        self.stage_tables = {s["name"]: s for s in raw["stages"] if stage_task_ref(s)}

    @cached_property
    def planner(self) -> Planner:
        raw = self.raw
        # studies created before stages ran their own learning-rate test used the search's rate
        stages = [Stage(s["name"], s["keep"], s.get("lr", SEARCH)) for s in raw["stages"]]
        cands = [
            Candidate(c["source"], Genome.from_dict(c["genome"]), c["lr"], c["fitness"])
            for c in raw["candidates"]
        ]
        direction = raw["study"].get("direction") or "maximize"
        return Elimination(cands, stages, raw["repeats"], raw["study"]["seed"], direction)

    def expected_evaluations(self) -> int | None:
        raw = self.raw
        return sum(min(len(raw["candidates"]), s["keep"]) for s in raw["stages"]) * raw["repeats"]


class EliminationKind:
    name = "elimination"
    aliases: tuple[str, ...] = ()
    description = "a search's best genomes through progressively harder stages (nosplug study eliminate)"

    def open(self, study: optuna.Study) -> EliminationStudy:
        return EliminationStudy(study, self.name)
