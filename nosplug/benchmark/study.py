"""A benchmark as an Optuna study: one trial per (contender, task, seed, phase).

It runs on the same workers as a search (``nosplug.study.runner.Worker``: Optuna's queue,
heartbeats, dead workers' trials handed out again, crashes retried and then reported, never
ranked), so it resumes after a kill without redoing finished runs and several workers share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from nosplug.errors import UserError

KIND = "benchmark"


def create(raw: Mapping[str, Any], storage: str | None = None, *, exist_ok: bool = False):
    """The benchmark's study (``raw`` normalised by :func:`nosplug.benchmark.config.normalise`)."""
    from nosplug.study.runner import StudyExistsError, _create, _jsonable, load, study_names
    from nosplug.study.storage import open_storage, shown_url, storage_url
    from nosplug.study.trials import CONFIG_ATTR

    name = raw["benchmark"]["name"]
    url = storage_url(storage)
    if exist_ok and name in study_names(open_storage(url)):
        existing = load(name, url)
        if existing.user_attrs.get(CONFIG_ATTR) != _jsonable(dict(raw)):
            raise StudyExistsError(
                f"a study named {name!r} already exists in {shown_url(url)} with a different config; "
                "choose another name"
            )
        return existing
    directions = {t["direction"] for t in raw["tasks"]}
    return _create(name, url, KIND, dict(raw), directions.pop() if len(directions) == 1 else "maximize")


def stage(entry: Mapping[str, Any]):
    """(task, preset) a benchmark task entry trains with."""
    from nosplug.evaluation.presets import get_preset
    from nosplug.evaluation.runs import for_stage
    from nosplug.tasks.resolve import resolve_task

    preset = get_preset(entry["preset"]).with_overrides(dict(entry["overrides"]), where="tasks.overrides")
    return for_stage(resolve_task(entry["name"], dict(entry["options"])), preset)


def task_data(raw: Mapping[str, Any], entry: Mapping[str, Any], device: torch.device):
    """A task's splits for the benchmark seed (the same split for every run), on ``device``."""
    from nosplug.study.runner import _load_data

    ref = json.dumps({"name": entry["name"], "options": dict(entry["options"])}, sort_keys=True)
    return _load_data(ref, int(raw["benchmark"]["seed"]), str(device))


def preflight(raw: Mapping[str, Any], device: torch.device) -> None:
    """Every task loads and builds on ``device`` and every contender resolves, before any run."""
    from nosplug.benchmark.contenders import resolve

    for entry in raw["tasks"]:
        try:
            task, _preset = stage(entry)
            task_data(raw, entry, device)
            task.model(0, device)
        except Exception as exc:
            from nosplug.study.runner import _first_line

            raise UserError(f"task {entry['label']!r}: {_first_line(exc)}") from exc
    for spec in raw["benchmark"]["contenders"]:
        resolve(spec, raw["tuning"]["extra"].get(spec, ()), genomes=raw.get("genomes", {}))


def evaluate(raw: Mapping[str, Any], attrs: Mapping[str, Any], device: torch.device,
             check: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:  # fmt: skip
    """Run one planned benchmark trial; returns its result attributes."""
    from nosplug.benchmark.contenders import resolve
    from nosplug.benchmark.planner import EVAL
    from nosplug.benchmark.runs import run

    entry = raw["tasks"][int(attrs["task_index"])]
    task, preset = stage(entry)
    spec = attrs["contender"]
    contender = resolve(spec, raw["tuning"]["extra"].get(spec, ()), genomes=raw.get("genomes", {}))
    started = time.perf_counter()
    out = run(contender, task, preset, task_data(raw, entry, device), attrs["params"], int(attrs["seed"]),
              test=attrs["phase"] == EVAL, check=check)  # fmt: skip
    value = out.pop("value")
    return {
        "status": "complete" if value is not None else "nonfinite",
        "fitness": value,
        "duration": time.perf_counter() - started,
        **out,
    }
