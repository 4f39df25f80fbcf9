"""Search configuration files (TOML), validated with errors that name the offending key path.

A config holds everything a worker needs to rebuild the search: the task (``[task]``; without
it, image classification on ``[data]``), search space, GA settings, one evaluation preset per
stage, elimination stages and worker settings (the shared :class:`~nosplug.config.WorkersConfig`).
``nosplug study create`` stores the validated config (with initial genomes resolved to JSON) in
the study's user attributes, so workers on other machines need only the storage URL and the
study name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from nosplug.config import (
    REFERENCE,
    SEEDS_PER_STUDY,
    TUNING_BATCH,
    TUNING_LR_RANGE,
    TUNING_STUDIES,
    TUNING_TRIALS,
    WorkersConfig,
    section_schema,
)
from nosplug.errors import UserError
from nosplug.evaluation.presets import EvalPreset, get_preset
from nosplug.genome.model import Genome
from nosplug.genome.space import SearchSpace
from nosplug.search.planners.particle_ga import EVOLUTION, INIT, GAConfig
from nosplug.tasks.base import Task
from nosplug.tomlconfig import check_sections, read_toml

CONFIG_VERSION = 1


class ConfigError(ValueError, UserError):
    """A study config is malformed; the message starts with the key path."""


#: section -> key -> (type(s), default). ``None`` default means required.
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "study": {
        "name": ((str,), None),
        "seed": ((int,), 0),
        "description": ((str,), ""),
        "direction": ((str,), ""),
    },
    "task": {
        "name": ((str,), "classification"),
        "options": ((dict,), {}),
    },
    "data": {
        "dataset": ((str,), "mnist5k"),
        "limit": ((int,), 0),
        "val_fraction": ((float, int), 0.1),
        "test_fraction": ((float, int), 0.1),
        "root": ((str,), ""),
    },
    "ga": {
        "initial_population": ((int,), 500),
        "particles": ((int,), 50),
        "timesteps": ((int,), 5),
        "mutations": ((int,), 7),
        "tries": ((int,), 4),
        "initial_genomes": ((list,), []),
        # warm starts: zoo names, genome files or study:NAME#k, first in the initial population
        "seed_genomes": ((list,), []),
        "max_draws": ((int,), 500),
        "max_initial_population": ((int,), 0),
    },
    # which planner chooses what to evaluate next (hook nosplug_planners) and its own options
    "search": {
        "planner": ((str,), "particle-ga"),
        "options": ((dict,), {}),
    },
    "workers": section_schema(WorkersConfig),
    "elimination": {
        "top": ((int,), 50),
        "repeats": ((int,), 3),
        "stages": ((list,), []),
    },
    # spec §10 step 7: a second GA round whose particles are the elimination's winners
    "next_round": {
        "top": ((int,), 0),  # winners that seed it (0: no second round)
        "seeds": ((int,), 3),  # runs per child; fitness: the best value of their mean curve
        "timesteps": ((int,), 0),  # 0: the search's
        "mutations": ((int,), 0),  # 0: the search's
        "elimination_top": ((int,), 24),  # the round's best genomes taken into its elimination
        "stages": ((list,), []),  # its elimination stages (default: the last of elimination.stages)
    },
    # the verdict that ends every search: its best genomes benchmarked against tuned baselines
    "validate": {
        "top": ((int,), 3),
        "reference": ((str,), REFERENCE),
        "baselines": ((list,), []),
        "tuning_trials": ((int,), TUNING_TRIALS),  # per tuning study
        # quasi-random search: evenly spread rates, and the trials run side by side (TPE would
        # draw at random for its first 10 trials anyway, and one trial at a time)
        "sampler": ((str,), "qmc"),
        "seeds": ((int,), SEEDS_PER_STUDY),  # fresh seeds per tuning study
        "studies": ((int,), TUNING_STUDIES),  # most per contender (0: the fewest for power 0.8 at d = 1)
        "batch": ((int,), TUNING_BATCH),  # tuning studies per look of the sequential design
        "allow_underpowered": ((bool,), False),
        "lr": ((list,), list(TUNING_LR_RANGE)),
    },
}
_STAGES = (INIT, EVOLUTION)


@dataclass
class SearchConfig:
    """A validated search config; ``raw`` is the normalised dict stored in the study."""

    raw: dict[str, Any]
    source: str = "<dict>"
    space: SearchSpace = field(init=False)
    ga: GAConfig = field(init=False)
    stages: dict[str, EvalPreset] = field(init=False)

    def __post_init__(self) -> None:
        self.raw = normalise(self.raw, self.source)
        r = self.raw
        if not r["study"]["direction"]:
            # a new config: the task's metric decides (the study stores it, so reading a stored
            # study never needs the task's module, which may live only on the workers)
            r["study"]["direction"] = self.task.metric.direction
        self.space = _wrap(lambda: SearchSpace.from_dict(r["space"]), "space")
        g = r["ga"]
        genomes = tuple(Genome.from_dict(d) for d in g["initial_genomes"])
        self.seeds = tuple((s["ref"], Genome.from_dict(s["genome"])) for s in g["seed_genomes"])
        self.ga = GAConfig(
            particles=g["particles"],
            timesteps=g["timesteps"],
            mutations=g["mutations"],
            initial_population=g["initial_population"],
            tries=g["tries"],
            seed=r["study"]["seed"],
            initial_genomes=genomes,
            seed_genomes=self.seeds,
            max_draws=g["max_draws"],
            max_initial_population=g["max_initial_population"],
            direction=r["study"]["direction"],
        )
        self.stages = {name: stage_preset(r["evaluation"][name], f"evaluation.{name}") for name in _STAGES}
        self.planner_spec, self.planner_options = _planner(r["search"])

    def make_planner(self):
        """The search's planner, built from this config (what every worker replays)."""
        from nosplug.search.planners.base import PlannerInputs

        inputs = PlannerInputs(
            self.seed, self.space, self.raw["study"]["direction"], self.seeds, self.ga, self.planner_options
        )
        return _wrap(lambda: self.planner_spec.make(inputs), "search.options")

    @cached_property
    def task(self) -> Task:
        """The study's task, built on first use (workers, preflight and reports need it)."""
        task = study_task(self.raw)
        wanted = self.raw["study"]["direction"]
        if wanted and wanted != task.metric.direction:
            raise ConfigError(
                f"study.direction: {wanted!r}, but task {task.name!r} has metric "
                f"{task.metric.name!r} to {task.metric.direction}"
            )
        return task

    def check_task(self) -> Task:
        """Build the task now (``study create``: a bad task name or option is an error before
        anything is stored)."""
        return self.task

    @property
    def name(self) -> str:
        return self.raw["study"]["name"]

    @property
    def seed(self) -> int:
        return self.raw["study"]["seed"]

    @classmethod
    def from_file(cls, path: str | Path) -> SearchConfig:
        return cls(read_toml(path, ConfigError), str(path))


def task_options(raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(task name, options) of a normalised config. Classification tasks also read ``[data]``
    (the only way configs named their data before tasks existed); other tasks take ``task.options``."""
    name = raw["task"]["name"]
    options = dict(raw["task"]["options"])
    data = raw["data"]
    defaults = {k: v for k, (_t, v) in _SCHEMA["data"].items()}
    given = {k: v for k, v in data.items() if v != defaults[k]}
    spec = _task_spec(name)
    accepted = set(spec.options) if spec is not None else set()
    for key, value in data.items() if name == "classification" else given.items():
        if key not in accepted:
            raise ConfigError(
                f"data.{key}: task {name!r} does not read [data]; give its settings as task.options"
            )
        options.setdefault(key, value)
    return name, options


def _task_spec(name: str):
    from nosplug.tasks.resolve import task_specs

    return task_specs().get(name) if ":" not in name else None


def study_task(raw: Mapping[str, Any]) -> Task:
    """The study's task, built (cheap: data is loaded by workers, not here)."""
    from nosplug.tasks.resolve import resolve_task

    name, options = task_options(raw)
    return _wrap(lambda: resolve_task(name, options), "task")


def stage_preset(stage: Mapping[str, Any], where: str) -> EvalPreset:
    """An evaluation stage: ``preset = NAME`` (default ``task``: the task's own budget) plus any
    preset setting as an override."""
    settings = dict(stage)
    name = settings.pop("preset", "task")
    if not isinstance(name, str):
        raise ConfigError(f"{where}.preset: expected a preset name, got {name!r}")
    base = _wrap(lambda: get_preset(name), f"{where}.preset")
    return _wrap(lambda: base.with_overrides(settings, where=where), where)


def normalise(data: Mapping[str, Any], source: str = "<dict>") -> dict[str, Any]:
    """Check sections, keys, types and ranges; fill defaults; resolve initial genomes to JSON."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a config must be a table")
    version = data.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        raise ConfigError(f"version: this nosplug reads config version {CONFIG_VERSION}, got {version!r}")
    out: dict[str, Any] = {"version": CONFIG_VERSION}
    out.update(check_sections(data, _SCHEMA, ConfigError, free_sections=("space", "evaluation")))
    _check_ranges(out)
    space = data.get("space", {})
    if not isinstance(space, Mapping):
        raise ConfigError("space: expected a table")
    out["space"] = dict(space)
    evaluation = data.get("evaluation", {})
    if not isinstance(evaluation, Mapping):
        raise ConfigError("evaluation: expected a table")
    for key in evaluation:
        if key not in _STAGES:
            raise ConfigError(f"evaluation.{key}: unknown stage (known: {', '.join(_STAGES)})")
    out["evaluation"] = {}
    for stage in _STAGES:
        value = evaluation.get(stage, {"preset": "task"})
        if not isinstance(value, Mapping):
            raise ConfigError(f"evaluation.{stage}: expected a table")
        out["evaluation"][stage] = dict(value)
    out["ga"]["initial_genomes"] = [
        _resolve_genome(g, f"ga.initial_genomes[{i}]") for i, g in enumerate(out["ga"]["initial_genomes"])
    ]
    out["ga"]["seed_genomes"] = [
        _seed_genome(g, f"ga.seed_genomes[{i}]") for i, g in enumerate(out["ga"]["seed_genomes"])
    ]
    if out["ga"]["seed_genomes"] and out["ga"]["initial_genomes"]:
        raise ConfigError(
            "ga.seed_genomes: with ga.initial_genomes every particle starts from those; warm starts "
            "join a random initial population (give one or the other)"
        )
    for section in ("elimination", "next_round"):
        out[section]["stages"] = [
            _elimination_stage(s, f"{section}.stages[{i}]") for i, s in enumerate(out[section]["stages"])
        ]
    return out


def _check_ranges(c: dict[str, Any]) -> None:
    name = c["study"]["name"]
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise ConfigError(f"study.name: use letters, digits, '-', '_' or '.', got {name!r}")
    if c["study"]["direction"] not in ("", "maximize", "minimize"):
        raise ConfigError("study.direction: the task's metric sets it; leave it out (or maximize / minimize)")
    for key in ("initial_population", "particles", "timesteps", "mutations", "tries", "max_draws"):
        if c["ga"][key] < 1:
            raise ConfigError(f"ga.{key}: must be at least 1, got {c['ga'][key]}")
    if not c["ga"]["initial_genomes"] and c["ga"]["particles"] > c["ga"]["initial_population"]:
        raise ConfigError(
            f"ga.particles: {c['ga']['particles']} particles cannot be kept from an initial population "
            f"of {c['ga']['initial_population']}"
        )
    if not 0 < c["data"]["val_fraction"] < 1:
        raise ConfigError(f"data.val_fraction: must lie in (0, 1), got {c['data']['val_fraction']}")
    if not 0 <= c["data"]["test_fraction"] < 1 - c["data"]["val_fraction"]:
        raise ConfigError("data.test_fraction: must lie in [0, 1 - val_fraction)")
    if c["data"]["limit"] < 0:
        raise ConfigError("data.limit: must be 0 (all) or positive")
    WorkersConfig.from_raw(c["workers"]).check(ConfigError)
    for key in ("top", "repeats"):
        if c["elimination"][key] < 1:
            raise ConfigError(f"elimination.{key}: must be at least 1")
    n = c["next_round"]
    if n["top"] < 0 or n["seeds"] < 1 or n["elimination_top"] < 1:
        raise ConfigError("next_round: top >= 0 (0: no second round), seeds >= 1, elimination_top >= 1")
    if n["timesteps"] < 0 or n["mutations"] < 0:
        raise ConfigError("next_round: timesteps and mutations are >= 0 (0: the search's)")
    v = c["validate"]
    if v["top"] < 0 or v["tuning_trials"] < 1 or v["seeds"] < 1 or v["studies"] < 0 or v["batch"] < 0:
        raise ConfigError(
            "validate: top >= 0 (0: no verdict), tuning_trials >= 1, seeds >= 1, studies >= 0, batch >= 0"
        )
    if v["sampler"] not in ("qmc", "tpe", "random"):
        raise ConfigError(f"validate.sampler: qmc, tpe or random, got {v['sampler']!r}")
    _check_baseline_sets(v["baselines"])
    if v["top"] and v["studies"] and not v["allow_underpowered"]:  # checked before the search runs
        from nosplug import stats

        family = v["top"] + len([b for b in _verdict_baselines(v["baselines"]) if b != v["reference"]])
        shortfall = stats.check(stats.Design(family, v["studies"], 1, v["seeds"], v["batch"])).shortfall()
        if shortfall:
            raise ConfigError(f"validate: {shortfall} (validate.studies = 0 picks it; or allow_underpowered)")


def _seed_genome(ref: Any, where: str) -> dict[str, Any]:
    """A warm start as stored: ``{"ref": what the user wrote, "genome": its genome}``. A
    ``study:NAME#k`` reference is resolved by :func:`nosplug.search.api.create_search`, which
    knows the storage, before the config gets here."""
    if isinstance(ref, Mapping) and set(ref) == {"ref", "genome"}:
        return {"ref": str(ref["ref"]), "genome": _resolve_genome(ref["genome"], where)}
    if isinstance(ref, str) and ref.startswith("study:"):
        raise ConfigError(f"{where}: {ref!r} names a study; create the search with its storage")
    label = ref if isinstance(ref, str) else "inline genome"
    return {"ref": label, "genome": _resolve_genome(ref, where)}


def _planner(section: Mapping[str, Any]):
    """(the planner's registered record, its options with defaults), checked key by key."""
    from nosplug.primitives.registry import UnknownPrimitiveError, registry

    try:
        spec = registry().get("planners", section["planner"])
    except UnknownPrimitiveError as exc:
        raise ConfigError(f"search.planner: {exc}") from None
    options = dict(spec.options)
    for key, value in section["options"].items():
        if key not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise ConfigError(
                f"search.options.{key}: not an option of planner {spec.name!r} (known: {known})"
            )
        default = spec.options[key]
        ok = isinstance(value, type(default)) and not (
            isinstance(value, bool) and not isinstance(default, bool)
        )
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise ConfigError(f"search.options.{key}: expected {type(default).__name__}, got {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ConfigError(f"search.options.{key}: must be at least 1, got {value}")
        options[key] = value
    return spec, options


def _check_baseline_sets(baselines: list[Any]) -> None:
    """``validate.baselines`` naming a baseline set whose optimizers are not installed fails at
    creation, not when the search ends hours later."""
    from nosplug.baselines import BaselineSetError, expand, is_set_name

    try:
        expand([b for b in baselines if isinstance(b, str) and is_set_name(b)])
    except BaselineSetError as exc:
        raise ConfigError(f"validate.baselines: {exc}") from None


def _verdict_baselines(baselines: list[Any]) -> list[str]:
    """``validate.baselines`` with every named set (``modern``) replaced by its optimizers."""
    from nosplug.baselines import expand, is_set_name

    out: list[str] = []
    for b in baselines:
        names = [m.ref for m in expand([b])] if isinstance(b, str) and is_set_name(b) else [b]
        out += [n for n in names if n not in out]
    return out


def _resolve_genome(ref: Any, where: str) -> dict[str, Any]:
    """A zoo name, a JSON file path, or an inline genome table -> genome JSON dict."""
    from nosplug import zoo

    if isinstance(ref, Mapping):
        return _wrap(lambda: Genome.from_dict(dict(ref)).validate(), where).to_dict()
    if not isinstance(ref, str):
        raise ConfigError(f"{where}: expected a zoo name, a file, or a genome table, got {ref!r}")
    return _wrap(lambda: zoo.load(ref), where).to_dict()


#: Keys of an elimination stage that are not evaluation settings: its name, how many survive it,
#: the task it trains (default: the study's; ``task_options`` are then that task's options) and
#: where its learning rate comes from (``sweep``: the stage's own test; ``search``: the search's).
STAGE_KEYS = ("name", "keep", "task", "lr")


def _elimination_stage(s: Any, where: str) -> dict[str, Any]:
    from nosplug.search.elimination import LR_MODES

    if not isinstance(s, Mapping):
        raise ConfigError(f"{where}: expected a table with name, keep and evaluation settings")
    s = dict(s)
    name, keep = s.get("name"), s.get("keep")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name: required (a stage name such as 'base64')")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"{where}.keep: required, a positive integer")
    if s.get("lr", LR_MODES[1]) not in LR_MODES:
        raise ConfigError(f"{where}.lr: one of {', '.join(LR_MODES)}, got {s['lr']!r}")
    task = s.get("task")
    if task is not None and (not isinstance(task, str) or not task):
        raise ConfigError(f"{where}.task: a task name or 'module:callable', got {task!r}")
    elimination_stage_preset(s, where)
    return s


def elimination_stage_preset(stage: Mapping[str, Any], where: str) -> EvalPreset:
    """The evaluation settings of an elimination stage; a stage that names its own task passes
    ``task_options`` to that task (see :func:`stage_task_ref`), not as per-stage overrides."""
    from dataclasses import replace

    preset = stage_preset({k: v for k, v in stage.items() if k not in STAGE_KEYS}, where)
    return replace(preset, task_options={}) if stage.get("task") else preset


def stage_task_ref(stage: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(task name, options) of an elimination stage that names its own task (e.g. the paper's
    CIFAR-10 EfficientNetV2-S after a search on MNIST); None: the stage trains the study's task."""
    task = stage.get("task")
    return None if not task else (task, dict(stage.get("task_options") or {}))


def stage_task(stage: Mapping[str, Any], direction: str, where: str) -> Task | None:
    """The task an elimination stage names, checked to rank in the study's ``direction``; None
    when the stage trains the study's task."""
    from nosplug.tasks.resolve import resolve_task

    ref = stage_task_ref(stage)
    if ref is None:
        return None
    task = _wrap(lambda: resolve_task(*ref), f"{where}.task")
    if direction and task.metric.direction != direction:
        raise ConfigError(
            f"{where}.task: {task.name!r} ranks by {task.metric.name} to {task.metric.direction}, the "
            f"study's fitness is to {direction}; survivors of one cannot be ranked by the other"
        )
    return task


def _wrap(fn, where: str):
    try:
        return fn()
    except ConfigError:
        raise
    except UserError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where.split(".")[0]) else f"{where}: {msg}") from None
