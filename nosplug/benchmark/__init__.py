"""Benchmark: contenders x tasks x seeds, equal tuning budgets, fresh seeds, held-out test data, verdicts.

``nosplug.benchmark(contenders, tasks, ...)`` runs one (see :func:`nosplug.benchmark.api.benchmark`);
the package itself is callable for that, and its modules are :mod:`~nosplug.benchmark.config` (what
a benchmark is), :mod:`~nosplug.benchmark.design` (tuning studies as units, looks, the design
check, the replay that decides who gets more studies), :mod:`~nosplug.benchmark.contenders` (what a
spec builds and tunes), :mod:`~nosplug.benchmark.planner` (tuning studies, then fresh seeds),
:mod:`~nosplug.benchmark.runs` (one training run), :mod:`~nosplug.benchmark.study` (the Optuna study
it lives in), :mod:`~nosplug.benchmark.results` (tables, statistics, verdicts). The statistics
themselves live below, in the pure numpy + scipy package :mod:`nosplug.stats`.

This initialiser imports nothing on purpose: importing one module of the harness must not pay for
the others (torch, tasks, Optuna), nor for scipy until the statistics are needed.
"""

from __future__ import annotations

from nosplug.callable_package import make_callable

make_callable(__name__, "nosplug.benchmark.api:benchmark")
