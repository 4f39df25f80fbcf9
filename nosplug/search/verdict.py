"""The verdict that ends a search: its best genomes benchmarked against tuned baselines.

A finished search ``NAME`` is followed by the benchmark study ``NAME.verdict`` (config
``[validate]``): its ``top`` best genomes, as evaluated, against the reference and baselines,
each tuned with the same budget, on the search's own task with the evolution stage's budget,
fresh seeds and the held-out test split (docs/benchmark.md). It is a benchmark like any other:
stored, resumable, shared by workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nosplug.search import ranking
from nosplug.search.config import task_options
from nosplug.study.studies import exists, load

if TYPE_CHECKING:
    from nosplug.benchmark.results import BenchmarkResult
    from nosplug.study.kinds import KindStudy as SearchStudy  # a search's (nosplug.search.kind)


def verdict_name(name: str) -> str:
    """The benchmark study that gives search ``name`` its verdict."""
    return f"{name}.verdict"


def verdict_config(ctx: SearchStudy, storage: str | None = None) -> dict[str, Any] | None:
    """The benchmark config of search ``ctx``'s verdict; None when ``validate.top`` is 0 or
    nothing has a fitness."""
    from nosplug.baselines import is_set_name
    from nosplug.benchmark.config import normalise as benchmark_config

    v = ctx.raw.get("validate") or {}
    top = ranking.best(ctx.study, int(v.get("top", 0))) if v.get("top", 0) else []
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
            "allow_underpowered": bool(v.get("allow_underpowered", False)),
        },
        "tuning": {
            "trials": int(v["tuning_trials"]),
            "lr": list(v["lr"]),
            "sampler": v.get("sampler", "tpe"),  # studies stored before the option: TPE
            "studies": int(v.get("studies", 0)),  # 0: the fewest for power 0.8 at d = 1
            "batch": int(v.get("batch", 4)),
        },
        "evaluation": {"seeds": int(v["seeds"])},
        "tasks": [
            {"name": name, "options": options, "preset": preset, "overrides": stage, "label": ctx.task.name}
        ],
        "workers": dict(ctx.raw["workers"]),
    }
    return benchmark_config(raw, storage)


def ensure_verdict(ctx: SearchStudy, storage: str) -> str | None:
    """The name of search ``ctx``'s verdict study, created now if it does not exist yet (its
    genomes are fixed then); None while the search is not done or when it asks for no verdict."""
    from nosplug.benchmark.study import create as create_benchmark

    if not ctx.plan_state().done:
        return None
    vname = verdict_name(ctx.name)
    if exists(vname, storage):
        return vname
    raw = verdict_config(ctx, storage)
    if raw is None:
        return None
    create_benchmark(raw, storage, exist_ok=True)
    return vname


def verdict(name: str, storage: str | None = None) -> BenchmarkResult | None:
    """The verdict of search ``name`` as stored (None when it has not been created)."""
    from nosplug.benchmark.results import collect

    vname = verdict_name(name)
    if not exists(vname, storage):
        return None
    return collect(load(vname, storage))


def next_steps(name: str, result: BenchmarkResult) -> list[str]:
    """What a user can do when no genome of search ``name`` beat the reference in its verdict:
    lines with the commands (empty when one was better). A few minutes of search on a tiny budget
    rarely find one; what did find one here, and the attempts that did not, are in
    docs/discovery.md; how the planners compare with random search, docs/search-efficiency.md."""
    searched = [c for c in result.contenders if c.startswith(f"study:{name}#")]
    if any(result.verdicts.get(c) is not None and result.verdicts[c].outcome == "better" for c in searched):
        return []
    lines = [
        f"None of the best genomes of {name} is better than tuned {result.reference} at this budget. "
        "What to try next:"
    ]
    if name != DISCOVERY:
        lines.append(
            "  - warm-start from Adam and search its learning-rate schedule (decay functions only) on "
            "charlm, where a better one is known to exist (docs/discovery.md: its attempts, none "
            f"better yet, and why): nosplug study create studies/{DISCOVERY}.toml && "
            f"nosplug study run {DISCOVERY}"
        )
    lines += [
        "  - search longer or warm-started: raise [ga] particles and timesteps in the config "
        '(studies/quick.toml for the main job), add seed_genomes = ["adam"] under [ga], then '
        "nosplug study create CONFIG --name NEW && nosplug study run NEW",
        '  - another planner: [search] planner = "regularized-evolution" (docs/search-efficiency.md '
        "compares the planners with random search)",
        f"  - check a genome on another task: nosplug benchmark study:{name}#1 --tasks "
        f"{_another_task(result)}",
    ]
    return lines


DISCOVERY = "discovery"  # the search of docs/discovery.md (studies/discovery.toml)


def _another_task(result: BenchmarkResult) -> str:
    """A built-in task the verdict did not run on (a genome's second opinion)."""
    used = {str(t.get("name", "")) for t in result.tasks}
    return next(t for t in ("diabetes-mlp", "mnist5k-convnet", "charlm") if t not in used)
