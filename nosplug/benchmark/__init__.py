"""Benchmark: contenders x tasks x seeds, equal tuning budgets, fresh seeds, held-out test data, verdicts.

Modules:

* :mod:`nosplug.benchmark.stats` -- the statistics (mean/std, IQM with stratified-bootstrap intervals,
  probability of improvement, Wilcoxon with Holm correction, performance profiles, computed verdicts).
  Pure numpy + scipy, no torch, so reports can be recomputed from stored results anywhere.

This package initialiser imports nothing on purpose: ``import nosplug.benchmark.stats`` must not pay
for the harness (torch, tasks, Optuna), and the harness must not pay for scipy until it needs it.
"""

from __future__ import annotations
