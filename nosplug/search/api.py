"""``nosplug.search``: run (or resume) a search in-process and take the optimizers it found.

For notebooks and scripts: the same study as ``nosplug study create`` + ``study run`` (stored in
an Optuna storage, so it survives a restart and resumes where it stood), driven from Python, with
the best genomes returned as ready ``torch.optim.Optimizer`` factories::

    result = nosplug.search("diabetes-mlp", config={"ga": {"particles": 2}}, name="mine")
    best = result.best[0]
    opt = best.optimizer(model.parameters(), total_steps=1000)   # the chosen rate, decays set
    sched = best.scheduler(opt, total_steps=1000)                # the base schedule it was found with
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

from nosplug.errors import UserError
from nosplug.genome.model import Genome
from nosplug.search.config import ConfigError, SearchConfig, elimination_stage_preset, stage_task
from nosplug.search.ranking import SEARCH
from nosplug.study.result import first_line
from nosplug.study.studies import create_study
from nosplug.tasks.base import Task
from nosplug.tomlconfig import read_toml

#: The GA budget of a search when the config names none: studies/quick.toml's (minutes on CPU).
QUICK_GA = {"initial_population": 24, "particles": 3, "timesteps": 2, "mutations": 3, "tries": 2}


@dataclass
class FoundOptimizer:
    """One genome a search found, with what its evaluation chose."""

    genome: Genome  # as evaluated: the integrity check's sign flip applied
    fitness: float
    metric: str
    lr: float
    key: str
    warmup: float  # the base schedule as fractions of the run (spec §4)
    hold: float
    cycle_momentum: bool

    def optimizer(self, params: Iterable[torch.Tensor] | Iterable[dict], total_steps: int, **kw: Any):
        """A :class:`~nosplug.GraphOptimizer` running this genome at the rate its sweep chose."""
        from nosplug.optim import GraphOptimizer

        return GraphOptimizer(params, self.genome, lr=kw.pop("lr", self.lr), total_steps=total_steps, **kw)

    def scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int):
        """The warmup-hold-cosine schedule (with cycled momentum) the genome was evaluated under."""
        from nosplug.optim.schedules import WarmupHoldCosine

        return WarmupHoldCosine.from_fractions(
            optimizer, total_steps, warmup=self.warmup, hold=self.hold, cycle_momentum=self.cycle_momentum
        )


@dataclass
class SearchResult:
    """What :func:`search` returns: where the study lives, whether it finished, and the best."""

    name: str
    storage: str
    done: bool
    best: list[FoundOptimizer] = field(default_factory=list)
    summary: Any = None
    #: the benchmark that ended the search (config ``[validate]``): a BenchmarkResult, or None
    verdict: Any = None

    def __repr__(self) -> str:
        top = ", ".join(f"{b.key} {b.metric} {b.fitness:.4g}" for b in self.best[:3])
        return f"SearchResult({self.name!r}, done={self.done}, best=[{top}])"


def create_search(
    config: SearchConfig | str | Path,
    *,
    name: str | None = None,
    storage: str | None = None,
    exist_ok: bool = False,
) -> optuna.Study:
    """Create the search study for ``config`` (a :class:`SearchConfig` or a TOML path); never
    overwrites (``nosplug study create``).

    With ``exist_ok`` an existing study of that name is returned if it was created from the same
    config (so a set-up command can be repeated); a different config is still an error.
    """
    if isinstance(config, SearchConfig):
        cfg = config
    else:
        cfg = SearchConfig(resolve_study_seeds(read_toml(config, ConfigError), storage), str(config))
    if name:
        raw = dict(cfg.raw)
        raw["study"] = {**raw["study"], "name": name}
        cfg = SearchConfig(raw, cfg.source)
    cfg.check_task()
    cfg.make_planner()  # planner options that cannot work together: an error before anything is stored
    _check_models(cfg)
    return create_study(
        cfg.name,
        SEARCH,
        cfg.raw,
        storage=storage,
        direction=cfg.raw["study"]["direction"],
        exist_ok=exist_ok,
    )


def resolve_study_seeds(raw: dict[str, Any], storage: str | None) -> dict[str, Any]:
    """``raw`` with every ``study:NAME#k`` warm start of ``ga.seed_genomes`` replaced by that
    genome as evaluated (looked up in ``storage``), so the stored config needs no other study."""
    from nosplug.refs import parse_ref
    from nosplug.study.kinds import best_genomes

    seeds = (raw.get("ga") or {}).get("seed_genomes") or []
    if not any(isinstance(s, str) and s.startswith("study:") for s in seeds):
        return raw
    out = copy.deepcopy(raw)
    resolved = []
    for i, s in enumerate(seeds):
        if isinstance(s, str) and s.startswith("study:"):
            ref = parse_ref(s)
            top = best_genomes(ref.target, storage, n=ref.rank)
            if len(top) < ref.rank:
                raise ConfigError(
                    f"ga.seed_genomes[{i}]: study {ref.target!r} has only {len(top)} finished genomes"
                )
            s = {"ref": ref.text, "genome": top[ref.rank - 1][0].to_dict()}
        resolved.append(s)
    out["ga"]["seed_genomes"] = resolved
    return out


def _check_models(cfg: SearchConfig) -> None:
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
            raise ConfigError(f"{where}: {first_line(exc)}") from None


def _task_ref(task: str | Task, options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """How the study stores the task: a registered name or ``module:callable`` plus options. A
    Task instance is stored as its class (workers rebuild it from the class and its options)."""
    if isinstance(task, str):
        return task, dict(options or {})
    if isinstance(task, Task):
        cls = type(task)
        if options:
            raise UserError("give options either to the task you built or as task_options, not both")
        return f"{cls.__module__}:{cls.__qualname__}", dict(task.options)
    raise UserError(f"task must be a task name, 'module:callable' or a nosplug.tasks.Task, got {task!r}")


def search(
    task: str | Task,
    *,
    config: Mapping[str, Any] | str | Path | None = None,
    storage: str | None = None,
    name: str | None = None,
    task_options: Mapping[str, Any] | None = None,
    device: str | None = None,
    top: int = 5,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Run, or resume, a search for optimizers on ``task``; returns the best genomes found.

    ``config`` is a study config (a dict with the TOML file's sections, or a path) whose
    ``[task]`` is replaced by ``task``; without one the search uses ``studies/quick.toml``'s GA
    budget. The study is ``name`` (default ``search-<task>``) in ``storage`` (default as the
    CLI's). Calling again with the same arguments resumes it; a different config under the same
    name is an error. ``device`` overrides ``workers.device``. A finished search ends, as on the
    command line, with its verdict (``result.verdict``): the best genomes benchmarked against the
    tuned reference (config ``[validate]``; ``top = 0`` skips it).
    """
    from nosplug.evaluation.presets import for_task
    from nosplug.search import ranking
    from nosplug.search.kind import SearchStudy
    from nosplug.search.verdict import verdict
    from nosplug.study import trials as T
    from nosplug.study.kinds import open_study
    from nosplug.study.storage import storage_url
    from nosplug.study.studies import load
    from nosplug.study.worker import Worker

    raw: dict[str, Any]
    if config is None:
        raw = {"ga": dict(QUICK_GA)}
    elif isinstance(config, (str, Path)):
        raw = read_toml(config, UserError)
    else:
        raw = copy.deepcopy(dict(config))
    ref, options = _task_ref(task, task_options)
    raw["task"] = {"name": ref, "options": options}
    study = dict(raw.get("study", {}))
    study.setdefault("name", name or f"search-{ref.replace(':', '-').replace('.', '-')}")
    if name:
        study["name"] = name
    raw["study"] = study
    url = storage_url(storage)
    cfg = SearchConfig(resolve_study_seeds(raw, url), "nosplug.search(...)")
    create_search(cfg, storage=url, exist_ok=True)
    summary = Worker(cfg.name, url, on_event=on_event, device=device).run()
    result = None
    if summary.done:
        ctx = open_study(load(cfg.name, url))
        assert isinstance(ctx, SearchStudy)
        for follow in ctx.follow_ups(url):  # the verdict
            Worker(follow, url, on_event=on_event, device=device).run()
        result = verdict(cfg.name, url)
    s = load(cfg.name, url)
    preset = for_task(open_study(s).presets["evolution"], cfg.task)
    best = []
    for t in ranking.best(s, top):
        a = t.user_attrs
        steps = preset.schedule_steps
        best.append(
            FoundOptimizer(
                genome=T.evaluated_genome(a),
                fitness=float(a[T.FITNESS]),
                metric=a.get("metric", cfg.task.metric.name),
                lr=float(a.get("chosen_lr") or a.get(T.FIXED_LR)),
                key=a[T.KEY],
                warmup=preset.warmup_steps / steps,
                hold=preset.hold_steps / steps,
                cycle_momentum=preset.cycle_momentum,
            )
        )
    return SearchResult(cfg.name, url, summary.done, best, summary, result)
