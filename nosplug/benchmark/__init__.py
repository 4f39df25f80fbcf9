"""Benchmark: contenders x tasks x seeds, equal tuning budgets, fresh seeds, held-out test data, verdicts.

``nosplug.benchmark(contenders, tasks, ...)`` runs one (see :func:`nosplug.benchmark.api.benchmark`);
the package itself is callable for that, and its modules are:

* :mod:`~nosplug.benchmark.stats` -- the statistics (mean/std, IQM with stratified-bootstrap
  intervals, probability of improvement, Wilcoxon with Holm correction, performance profiles,
  computed verdicts). Pure numpy + scipy, no torch, so reports can be recomputed anywhere;
* :mod:`~nosplug.benchmark.config` (what a benchmark is), :mod:`~nosplug.benchmark.contenders`
  (what a spec builds and tunes), :mod:`~nosplug.benchmark.planner` (tuning, then fresh seeds),
  :mod:`~nosplug.benchmark.runs` (one training run), :mod:`~nosplug.benchmark.study` (the Optuna
  study it lives in), :mod:`~nosplug.benchmark.results` (tables, statistics, verdicts).

This initialiser imports nothing on purpose: ``import nosplug.benchmark.stats`` must not pay for the
harness (torch, tasks, Optuna), and the harness must not pay for scipy until it needs it.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """Lets ``nosplug.benchmark(...)`` run a benchmark while ``nosplug.benchmark.stats`` stays a module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from nosplug.benchmark.api import benchmark

        return benchmark(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
