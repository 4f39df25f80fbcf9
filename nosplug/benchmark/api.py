"""``nosplug.benchmark(...)``: a fair comparison of optimizers from Python (the CLI's engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nosplug.benchmark.results import BenchmarkResult


def build_config(
    contenders: Sequence[str],
    tasks: Iterable[str | Mapping[str, Any]],
    *,
    name: str,
    seeds: int = 5,
    tuning_trials: int = 8,
    reference: str = "torch:Adam",
    extra_tuning: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    baselines: Sequence[str] = (),
) -> dict[str, Any]:
    """A benchmark config dict (the TOML form, see :mod:`nosplug.benchmark.config`); ``baselines``
    names baseline sets (``modern``) whose optimizers join the contenders."""
    return {
        "benchmark": {
            "name": name,
            "seed": seed,
            "reference": reference,
            "contenders": list(contenders),
            "baselines": list(baselines),
        },
        "tuning": {"trials": tuning_trials, "extra": {k: list(v) for k, v in (extra_tuning or {}).items()}},
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
    seeds: int = 5,
    tuning_trials: int = 8,
    reference: str = "torch:Adam",
    extra_tuning: Mapping[str, Sequence[str]] | None = None,
    device: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    baselines: Sequence[str] = (),
) -> BenchmarkResult:
    """Run (or resume) a benchmark and return its results with statistics and verdicts.

    Either give ``contenders`` and ``tasks`` (plus budgets), or a full ``config`` (a dict or a
    TOML path). The benchmark is an Optuna study named ``name`` in ``storage``: calling again
    resumes it without redoing finished runs; several processes (``nosplug study run NAME``)
    can share it.
    """
    from nosplug.benchmark import config as bconfig
    from nosplug.benchmark.results import collect
    from nosplug.benchmark.study import create
    from nosplug.study.runner import Worker, load
    from nosplug.study.storage import storage_url

    url = storage_url(storage)
    if config is None:
        if not (contenders or baselines) or not tasks:
            raise bconfig.BenchmarkConfigError("give contenders (or baselines) and tasks, or a config")
        raw = bconfig.normalise(
            build_config(
                contenders or (), tasks, name=name or "benchmark", seeds=seeds, tuning_trials=tuning_trials,
                reference=reference, extra_tuning=extra_tuning, baselines=baselines,
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
