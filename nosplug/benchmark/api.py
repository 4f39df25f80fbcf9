"""``nosplug.benchmark(...)``: a fair comparison of optimizers from Python (the CLI's engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nosplug.benchmark.results import BenchmarkResult
from nosplug.config import DEFAULT_DEVICE, REFERENCE, SEEDS_PER_STUDY, TUNING_STUDIES, TUNING_TRIALS


def build_config(
    contenders: Sequence[str],
    tasks: Iterable[str | Mapping[str, Any]],
    *,
    name: str,
    seeds: int = SEEDS_PER_STUDY,
    studies: int = TUNING_STUDIES,
    tuning_trials: int = TUNING_TRIALS,
    reference: str = REFERENCE,
    extra_tuning: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    device: str = DEFAULT_DEVICE,
    threads: int = 0,
    allow_underpowered: bool = False,
    baselines: Sequence[str] = (),
) -> dict[str, Any]:
    """A benchmark config dict (the TOML form, see :mod:`nosplug.benchmark.config`): ``seeds`` fresh
    seeds per tuning study, at most ``studies`` tuning studies per contender and task (0: the fewest
    with power 0.8 at d = 1), ``tuning_trials`` per study; ``baselines`` names baseline sets
    (``modern``) whose optimizers join the contenders."""
    return {
        "benchmark": {
            "name": name,
            "seed": seed,
            "reference": reference,
            "contenders": list(contenders),
            "allow_underpowered": allow_underpowered,
            "baselines": list(baselines),
        },
        "tuning": {
            "trials": tuning_trials,
            "studies": studies,
            "extra": {k: list(v) for k, v in (extra_tuning or {}).items()},
        },
        "evaluation": {"seeds": seeds},
        "tasks": [t if isinstance(t, Mapping) else {"name": t} for t in tasks],
        "workers": {"device": device, "threads": threads},
    }


def benchmark(
    contenders: Sequence[str] | None = None,
    tasks: Iterable[str | Mapping[str, Any]] | None = None,
    *,
    config: Mapping[str, Any] | str | None = None,
    name: str | None = None,
    storage: str | None = None,
    seeds: int = SEEDS_PER_STUDY,
    studies: int = TUNING_STUDIES,
    tuning_trials: int = TUNING_TRIALS,
    reference: str = REFERENCE,
    extra_tuning: Mapping[str, Sequence[str]] | None = None,
    allow_underpowered: bool = False,
    device: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    baselines: Sequence[str] = (),
) -> BenchmarkResult:
    """Run (or resume) a benchmark and return its results with statistics and verdicts.

    Either give ``contenders`` and ``tasks`` (plus budgets), or a full ``config`` (a dict or a
    TOML path). The benchmark is an Optuna study named ``name`` in ``storage``: calling again
    resumes it without redoing finished runs; several processes (``nosplug study run NAME``)
    can share it. A design that cannot detect d = 1 with probability 0.8 is refused (a
    :class:`~nosplug.benchmark.config.BenchmarkConfigError` naming the studies it needs) before
    anything is stored, unless ``allow_underpowered``.
    """
    from nosplug.benchmark import config as bconfig
    from nosplug.benchmark.results import collect
    from nosplug.benchmark.study import create
    from nosplug.study.storage import storage_url
    from nosplug.study.studies import load
    from nosplug.study.worker import Worker

    url = storage_url(storage)
    if config is None:
        if not (contenders or baselines) or not tasks:
            raise bconfig.BenchmarkConfigError("give contenders (or baselines) and tasks, or a config")
        raw = bconfig.normalise(
            build_config(
                contenders or (), tasks, name=name or "benchmark", seeds=seeds, studies=studies,
                tuning_trials=tuning_trials, reference=reference, extra_tuning=extra_tuning,
                allow_underpowered=allow_underpowered, baselines=baselines,
            ),
            url,
        )  # fmt: skip
    elif isinstance(config, str):
        raw = bconfig.read(config, url)
    else:
        raw = bconfig.normalise(config, url)
    study = create(raw, url, exist_ok=True)
    Worker(study.study_name, url, on_event=on_event, device=device).run()
    return collect(load(study.study_name, url))
