"""Verdicts: every contender compared with one reference, and the decision rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from nosplug.stats.intervals import iqm_ci, probability_of_improvement_ci
from nosplug.stats.scores import Direction, Interval, Normalisation, Scores, _tasks, normalise
from nosplug.stats.tests import MIN_PAIRS, PairedTest, holm_bonferroni, wilcoxon_paired

Outcome = Literal["better", "worse", "no detectable difference"]


@dataclass(frozen=True)
class Comparison:
    """Everything a verdict is computed from: one contender against the reference."""

    contender: str
    reference: str
    normalisation: str
    iqm: Interval
    reference_iqm: Interval
    probability_of_improvement: Interval
    test: PairedTest
    n_tasks: int
    seeds_per_task: tuple[int, ...]


@dataclass(frozen=True)
class Verdict:
    """A computed verdict: ``outcome`` is ``better``, ``worse`` or ``no detectable difference``."""

    outcome: Outcome
    sentence: str
    comparison: Comparison
    alpha: float


# -------------------------------------------------------------------------------------------- verdicts


def verdict(comparison: Comparison, *, alpha: float = 0.05, reference_label: str | None = None) -> Verdict:
    """The verdict on one contender, computed from its comparison with the reference.

    Decision rule (both conditions, so neither a tiny consistent edge nor a noisy large one suffices):

    * ``better`` iff the Holm-corrected Wilcoxon p-value is < ``alpha``, the signed ranks favour the
      contender, and the lower end of the P(improvement) interval is > 0.5;
    * ``worse`` iff the corrected p-value is < ``alpha``, the signed ranks favour the reference, and
      the upper end of the P(improvement) interval is < 0.5;
    * otherwise ``no detectable difference`` (including when the test is not testable).

    The IQM intervals are reported but do not decide: they are per-contender intervals, and two
    overlapping intervals do not mean "no difference". The sentence states every number used, e.g.
    "better than tuned adam: IQM 0.912 [0.905, 0.918] vs 0.897 [0.889, 0.904], P(improvement)
    0.81 [0.70, 0.90], Wilcoxon p = 0.004 (Holm-corrected), 3 tasks × 5 seeds".
    """
    c = comparison
    t = c.test
    poi = c.probability_of_improvement
    significant = t.testable and t.p_corrected < alpha
    if significant and t.direction > 0 and poi.low > 0.5:
        outcome: Outcome = "better"
        lead = "better than"
    elif significant and t.direction < 0 and poi.high < 0.5:
        outcome = "worse"
        lead = "worse than"
    else:
        outcome = "no detectable difference"
        lead = "no detectable difference from"
    label = reference_label or c.reference
    if t.testable:
        p_text = "p < 0.001" if t.p_corrected < 0.001 else f"p = {t.p_corrected:.3f}"
        test_text = f"Wilcoxon {p_text} (Holm-corrected)"
    else:
        test_text = f"Wilcoxon not testable ({t.reason})"
    seeds = set(c.seeds_per_task)
    tasks = f"{c.n_tasks} task{'s' if c.n_tasks != 1 else ''}"
    if len(seeds) == 1:
        n = seeds.pop()
        size = f"{tasks} × {n} seed{'s' if n != 1 else ''}"
    else:
        size = f"{tasks}, {t.n_pairs} paired runs"
    sentence = (
        f"{lead} {label}: IQM {c.iqm.format(3)} vs {c.reference_iqm.format(3)}, "
        f"P(improvement) {poi.format(2)}, {test_text}, {size}"
    )
    return Verdict(outcome, sentence, c, alpha)


def compare(
    scores: Scores,
    reference: str,
    direction: Direction | Mapping[str, Direction],
    *,
    normalisation: Normalisation = "reference",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    seed: int = 0,
    min_pairs: int = MIN_PAIRS,
    reference_label: str | None = None,
) -> dict[str, Verdict]:
    """Compare every contender with ``reference``: IQM intervals, P(improvement), Wilcoxon, verdicts.

    The Holm correction runs over all contenders compared to this reference (the reference itself is
    not compared); contenders whose test is not testable stay in the family with p = 1.0, which keeps
    the correction conservative rather than letting the data decide the family's size. All bootstrap
    intervals use ``seed`` (see :func:`iqm_ci` and :func:`probability_of_improvement_ci`), so a report
    recomputed from the same results is identical. Returns one :class:`Verdict` per contender, in the
    order of ``scores``.
    """
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the contenders {list(scores)}")
    tasks = _tasks(scores)
    norm = normalise(scores, direction, normalisation, reference)
    intervals = {
        c: iqm_ci([norm[c][t] for t in tasks], n_resamples=n_resamples, confidence=confidence, seed=seed)
        for c in scores
    }
    ref_tasks = [norm[reference][t] for t in tasks]
    contenders = [c for c in scores if c != reference]
    tests = {
        c: wilcoxon_paired([norm[c][t] for t in tasks], ref_tasks, min_pairs=min_pairs) for c in contenders
    }
    corrected = holm_bonferroni([tests[c].p_value for c in contenders])
    out: dict[str, Verdict] = {}
    for c, p_corr in zip(contenders, corrected):
        test = replace(tests[c], p_corrected=p_corr if tests[c].testable else 1.0)
        x_tasks = [norm[c][t] for t in tasks]
        comparison = Comparison(
            contender=c,
            reference=reference,
            normalisation=normalisation,
            iqm=intervals[c],
            reference_iqm=intervals[reference],
            probability_of_improvement=probability_of_improvement_ci(
                x_tasks, ref_tasks, n_resamples=n_resamples, confidence=confidence, seed=seed
            ),
            test=test,
            n_tasks=len(tasks),
            seeds_per_task=tuple(min(norm[c][t].size, norm[reference][t].size) for t in tasks),
        )
        out[c] = verdict(comparison, alpha=alpha, reference_label=reference_label)
    return out
