"""Statistics of a benchmark: contenders (optimizers) x tasks x seeds, compared to one reference.

A low-level package, pure numpy + scipy: it imports neither torch, nor Optuna, nor any other
nosplug package, so :mod:`nosplug.benchmark` and :mod:`nosplug.amalgamation` both build on it and a
report can be recomputed from stored results on any machine. The conventions follow Agarwal et al.
2021 (IQM, stratified bootstrap, probability of improvement), Schmidt et al. 2021 (tuned baselines,
comparisons against a reference) and AlgoPerf (Dahl et al. 2023, performance profiles on
time-to-target). ``docs/benchmark.md`` ("Statistics") explains each quantity.

Modules, by responsibility:

* :mod:`~nosplug.stats.scores` -- the data layout (seeds, or tuning studies with their seeds, as
  paired units), directions, normalisation, mean and std;
* :mod:`~nosplug.stats.intervals` -- IQM and probability of improvement with paired, stratified
  bootstrap intervals (expanded percentile);
* :mod:`~nosplug.stats.tests` -- the paired Wilcoxon signed-rank test over units, Holm's correction;
* :mod:`~nosplug.stats.sequential` -- the stopping rule: alpha spending with Bonferroni boundaries;
* :mod:`~nosplug.stats.design` -- power, the smallest detectable effect and the studies a design
  needs, by simulating the verdict procedure itself;
* :mod:`~nosplug.stats.verdicts` -- every contender against the reference, per task and pooled,
  fixed or sequential, and the decision rule;
* :mod:`~nosplug.stats.profiles` -- AlgoPerf-style performance profiles on time-to-target.

The public names are also available from this package itself (``from nosplug import stats``).
"""

from __future__ import annotations

from nosplug.stats.design import (
    EFFECT,
    POWER,
    Design,
    DesignCheck,
    Simulation,
    check,
    minimum_detectable_effect,
    power,
    simulate,
    studies_needed,
)
from nosplug.stats.intervals import (
    aggregate_iqm,
    expanded_tail,
    iqm,
    iqm_ci,
    iqm_weights,
    probability_of_improvement,
    probability_of_improvement_ci,
)
from nosplug.stats.profiles import PerformanceProfiles, Times, median_time, performance_profiles
from nosplug.stats.scores import (
    DIRECTIONS,
    NORMALISATIONS,
    Direction,
    Interval,
    MeanStd,
    Normalisation,
    Scores,
    as_units,
    describe_normalisation,
    mean_std,
    normalise,
)
from nosplug.stats.sequential import SPENDING, Looks, plan_looks, sequential_p, spent
from nosplug.stats.tests import (
    MIN_PAIRS,
    PairedTest,
    holm_bonferroni,
    signed_rank_pvalues,
    unit_differences,
    wilcoxon_paired,
)
from nosplug.stats.verdicts import DECIDED, OUTCOMES, Comparison, Outcome, Verdict, compare, verdict

__all__ = [
    "DECIDED",
    "DIRECTIONS",
    "EFFECT",
    "MIN_PAIRS",
    "NORMALISATIONS",
    "OUTCOMES",
    "POWER",
    "SPENDING",
    "Comparison",
    "Design",
    "DesignCheck",
    "Direction",
    "Interval",
    "Looks",
    "MeanStd",
    "Normalisation",
    "Outcome",
    "PairedTest",
    "PerformanceProfiles",
    "Scores",
    "Simulation",
    "Times",
    "Verdict",
    "aggregate_iqm",
    "as_units",
    "check",
    "compare",
    "describe_normalisation",
    "expanded_tail",
    "holm_bonferroni",
    "iqm",
    "iqm_ci",
    "iqm_weights",
    "mean_std",
    "median_time",
    "minimum_detectable_effect",
    "normalise",
    "performance_profiles",
    "plan_looks",
    "power",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "sequential_p",
    "signed_rank_pvalues",
    "simulate",
    "spent",
    "studies_needed",
    "unit_differences",
    "verdict",
    "wilcoxon_paired",
]
