"""A benchmark as a study kind: one trial per (contender, task, seed, phase) on the work queue.

It runs on the same workers as a search (:class:`nosplug.study.worker.Worker`: Optuna's queue,
heartbeats, dead workers' trials handed out again, crashes retried and then reported, never
ranked), so it resumes after a kill without redoing finished runs and several workers share it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import optuna
import torch

from nosplug.evaluation.reporter import Reporter
from nosplug.study.kinds import Check, KindStudy, WorkItem
from nosplug.study.plan import Planner
from nosplug.study.result import TrialResult, first_line
from nosplug.study.studies import create_study

KIND = "benchmark"


def create(raw: Mapping[str, Any], storage: str | None = None, *, exist_ok: bool = False) -> optuna.Study:
    """The benchmark's study (``raw`` normalised by :func:`nosplug.benchmark.config.normalise`)."""
    directions = {t["direction"] for t in raw["tasks"]}
    return create_study(
        raw["benchmark"]["name"],
        KIND,
        raw,
        storage=storage,
        direction=directions.pop() if len(directions) == 1 else "maximize",
        exist_ok=exist_ok,
        what="benchmark",
    )


def stage(entry: Mapping[str, Any]):
    """(task, preset) a benchmark task entry trains with."""
    from nosplug.evaluation.presets import get_preset
    from nosplug.evaluation.runs import for_stage
    from nosplug.tasks.resolve import resolve_task

    preset = get_preset(entry["preset"]).with_overrides(dict(entry["overrides"]), where="tasks.overrides")
    return for_stage(resolve_task(entry["name"], dict(entry["options"])), preset)


def task_data(raw: Mapping[str, Any], entry: Mapping[str, Any], device: torch.device):
    """A task's splits for the benchmark seed (the same split for every run), on ``device``."""
    from nosplug.tasks.resolve import load_task_data

    return load_task_data(entry["name"], dict(entry["options"]), int(raw["benchmark"]["seed"]), device)


class BenchmarkStudy(KindStudy):
    """A stored benchmark, opened."""

    noun = "benchmark"

    @cached_property
    def planner(self) -> Planner:
        from nosplug.benchmark.planner import BenchmarkPlanner

        return BenchmarkPlanner(self.raw)

    def expected_evaluations(self) -> int | None:
        return self.plan_state().progress.get("runs")

    def _contender(self, spec: str):
        from nosplug.benchmark.contenders import resolve

        return resolve(spec, self.raw["tuning"]["extra"].get(spec, ()), genomes=self.raw.get("genomes", {}))

    def preflight(self, device: torch.device) -> None:
        """Every task loads and builds on ``device`` and every contender resolves, before any run."""
        for entry in self.raw["tasks"]:
            try:
                task, _preset = stage(entry)
                task_data(self.raw, entry, device)
                task.model(0, device)
            except Exception as exc:
                raise RuntimeError(f"task {entry['label']!r}: {first_line(exc)}") from exc
        for spec in self.raw["benchmark"]["contenders"]:
            self._contender(spec)

    def evaluate(self, item: WorkItem, reporter: Reporter, device: torch.device, check: Check) -> TrialResult:
        """Run one planned benchmark trial (the curves are stored as attributes, not reported)."""
        from nosplug.benchmark.planner import EVAL
        from nosplug.benchmark.runs import run

        attrs = item.attrs
        entry = self.raw["tasks"][int(attrs["task_index"])]
        task, preset = stage(entry)
        contender = self._contender(attrs["contender"])
        started = time.perf_counter()
        out = run(contender, task, preset, task_data(self.raw, entry, device), attrs["params"],
                  int(attrs["seed"]), test=attrs["phase"] == EVAL, check=check)  # fmt: skip
        value = out.pop("value")
        reason = out.pop("reason")
        status = "complete" if value is not None else "nonfinite"
        return TrialResult(status, value, reason, {"duration": time.perf_counter() - started, **out})


class BenchmarkKind:
    name = KIND
    aliases: tuple[str, ...] = ()
    description = "contenders x tasks x seeds at equal tuning budgets (nosplug benchmark)"

    def open(self, study: optuna.Study) -> BenchmarkStudy:
        return BenchmarkStudy(study, self.name)
