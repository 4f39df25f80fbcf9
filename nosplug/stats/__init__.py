"""Statistics of a benchmark: contenders (optimizers) x tasks x seeds, compared to one reference.

A low-level package, pure numpy + scipy: it imports neither torch, nor Optuna, nor any other
nosplug package, so :mod:`nosplug.benchmark` and :mod:`nosplug.amalgamation` both build on it and a
report can be recomputed from stored results on any machine. The conventions follow Agarwal et al.
2021 (IQM, stratified bootstrap, probability of improvement), Schmidt et al. 2021 (tuned baselines,
comparisons against a reference) and AlgoPerf (Dahl et al. 2023, performance profiles on
time-to-target). ``docs/benchmark.md`` ("Statistics") explains each quantity.

Modules, by responsibility:

* :mod:`~nosplug.stats.scores` -- the data layout, directions, normalisation, mean and std;
* :mod:`~nosplug.stats.intervals` -- IQM and probability of improvement with bootstrap intervals;
* :mod:`~nosplug.stats.tests` -- the paired Wilcoxon signed-rank test and Holm's correction;
* :mod:`~nosplug.stats.verdicts` -- every contender against the reference, and the decision rule;
* :mod:`~nosplug.stats.profiles` -- AlgoPerf-style performance profiles on time-to-target.

The public names are also available from this package itself (``from nosplug import stats``).
"""

from __future__ import annotations

from nosplug.stats.intervals import (
    aggregate_iqm,
    iqm,
    iqm_ci,
    iqm_weights,
    probability_of_improvement,
    probability_of_improvement_ci,
)
from nosplug.stats.profiles import PerformanceProfiles, Times, performance_profiles
from nosplug.stats.scores import (
    DIRECTIONS,
    NORMALISATIONS,
    Direction,
    Interval,
    MeanStd,
    Normalisation,
    Scores,
    mean_std,
    normalise,
)
from nosplug.stats.tests import MIN_PAIRS, PairedTest, holm_bonferroni, wilcoxon_paired
from nosplug.stats.verdicts import Comparison, Outcome, Verdict, compare, verdict

__all__ = [
    "DIRECTIONS",
    "MIN_PAIRS",
    "NORMALISATIONS",
    "Comparison",
    "Direction",
    "Interval",
    "MeanStd",
    "Normalisation",
    "Outcome",
    "PairedTest",
    "PerformanceProfiles",
    "Scores",
    "Times",
    "Verdict",
    "aggregate_iqm",
    "compare",
    "holm_bonferroni",
    "iqm",
    "iqm_ci",
    "iqm_weights",
    "mean_std",
    "normalise",
    "performance_profiles",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "verdict",
    "wilcoxon_paired",
]
