"""Verdicts: every contender compared with one reference, per task and pooled, fixed or sequential.

:func:`compare` computes, for every contender, the paired comparison with the reference (IQM
intervals, paired P(improvement), the signed-rank test over paired units with Holm's correction)
and turns it into an outcome and a sentence (:func:`verdict`). With a sequential design
(:class:`~nosplug.stats.sequential.Looks`) it replays the looks in order on the data given: at each
look every contender still running is tested on the first units of every task, its sequential
p-values are updated, Holm's correction runs over the whole family, and a contender whose verdict is
decided stops there (its verdict is frozen; later looks use the contenders still running). The same
replay decides, in a benchmark, which contenders get more units, so what is printed is what decided.

Per task first: each task gets its own verdict (its own signed-rank test over that task's units,
sequential over the same looks, Holm over the contenders on that task). The pooled verdict is
"better" only when no task is significantly worse, and "worse" only when none is significantly
better; otherwise it is "mixed" and its sentence names the split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from nosplug.stats.intervals import iqm_ci, probability_of_improvement_ci
from nosplug.stats.scores import (
    Direction,
    Interval,
    Normalisation,
    Scores,
    _tasks,
    as_units,
    describe_normalisation,
    normalise,
)
from nosplug.stats.sequential import Looks, sequential_p
from nosplug.stats.tests import MIN_PAIRS, PairedTest, holm_bonferroni, wilcoxon_paired

Outcome = Literal["better", "worse", "no detectable difference", "mixed"]
OUTCOMES: tuple[str, ...] = ("better", "worse", "no detectable difference", "mixed")
DECIDED: tuple[str, ...] = ("better", "worse", "mixed")


@dataclass(frozen=True)
class Comparison:
    """Everything a verdict is computed from: one contender against the reference.

    ``units_per_task`` counts the paired units of each task (seeds, or tuning studies with their
    seeds), ``seeds_per_unit`` their seeds, ``seeds_per_task`` the paired runs per task (the two
    multiplied). ``looks`` is the number of looks of a sequential design this contender took part
    in (1 for a fixed design); the test's ``p_value`` is then the sequential p-value.
    """

    contender: str
    reference: str
    normalisation: str
    iqm: Interval
    reference_iqm: Interval
    probability_of_improvement: Interval
    test: PairedTest
    n_tasks: int
    seeds_per_task: tuple[int, ...]
    units_per_task: tuple[int, ...] = ()
    seeds_per_unit: tuple[int, ...] = ()
    looks: int = 1
    sequential: bool = False
    task: str | None = None  # set for a per-task comparison


@dataclass(frozen=True)
class Verdict:
    """A computed verdict: ``outcome`` is ``better``, ``worse``, ``no detectable difference`` or
    ``mixed`` (pooled better but a task significantly worse, or the other way round).

    ``per_task`` holds the per-task verdicts (empty for a single task: the pooled verdict is that
    task's). ``stopped`` says, in a sequential design, why this contender got no more units:
    ``"decided"`` (at look ``comparison.looks``), ``"cap"`` (the last look came), or ``"running"``
    (a look is not complete yet; the verdict is provisional).
    """

    outcome: Outcome
    sentence: str
    comparison: Comparison
    alpha: float
    per_task: Mapping[str, Verdict] = field(default_factory=dict)
    stopped: str = "cap"


# -------------------------------------------------------------------------------------------- verdicts


def _decide(comparison: Comparison, alpha: float) -> Outcome:
    t = comparison.test
    poi = comparison.probability_of_improvement.point
    significant = t.testable and t.p_corrected < alpha
    if significant and t.direction > 0 and poi > 0.5:
        return "better"
    if significant and t.direction < 0 and poi < 0.5:
        return "worse"
    return "no detectable difference"


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n} {word[:-1] + 'ies' if word.endswith('y') else word + 's'}"


def _size(c: Comparison, unit: str, inner: str = "seed") -> str:
    """'3 tasks × 5 seeds', '1 task × 7 tuning studies × 2 seeds', '7 tuning studies × 2 seeds on T'
    (``unit`` names a unit, ``inner`` what a unit holds several of)."""
    per_task = c.units_per_task or c.seeds_per_task  # given per seed only: one seed per unit
    units, seeds = sorted(set(per_task)), sorted(set(c.seeds_per_unit or [1]))
    even = len(units) == 1 and len(seeds) == 1
    if even:
        k, s = units[0], seeds[0]
        runs = _plural(k, inner) if s == 1 else f"{_plural(k, unit)} × {_plural(s, inner)}"
    elif seeds == [1]:
        runs = f"{sum(per_task)} paired {inner}s"
    else:
        runs = f"{sum(per_task)} paired units ({unit} with its {inner}s)"
    if c.task is not None:
        return f"{runs} on {c.task}"
    return f"{_plural(c.n_tasks, 'task')}{' ×' if even else ','} {runs}"


def verdict(
    comparison: Comparison,
    *,
    alpha: float = 0.05,
    reference_label: str | None = None,
    unit: str = "tuning study",
    inner: str = "seed",
    normalisation_text: str | None = None,
    note: str = "",
) -> Verdict:
    """The verdict on one contender, computed from its comparison with the reference.

    Decision rule:

    * ``better`` iff the Holm-corrected signed-rank p-value (sequential in a sequential design) is
      < ``alpha``, the contender is the side ahead, and the paired P(improvement) is > 0.5;
    * ``worse`` iff the corrected p-value is < ``alpha``, the reference is the side ahead, and the
      paired P(improvement) is < 0.5;
    * otherwise ``no detectable difference`` (including when the test is not testable).

    The test decides; P(improvement) must merely agree on the side (a contender ahead on the ranks
    but winning fewer than half of the paired runs is not called better). The intervals are reported
    but do not decide: they describe each quantity on its own, and two overlapping IQM intervals do
    not mean "no difference". The sentence states every number used and the scale, e.g. "better
    than tuned adam: IQM 1.052 [1.031, 1.070] vs 0.998 [0.985, 1.012], P(improvement) 0.82 [0.71,
    0.93], Wilcoxon p = 0.004 (Holm-corrected), 3 tasks × 5 seeds; scores normalised per task by
    tuned adam's mean". ``note`` is appended (e.g. that the design is underpowered).
    """
    c = comparison
    t = c.test
    outcome = _decide(c, alpha)
    lead = {"better": "better than", "worse": "worse than"}.get(outcome, "no detectable difference from")
    label = reference_label or c.reference
    if t.testable:
        p_text = "p < 0.001" if t.p_corrected < 0.001 else f"p = {t.p_corrected:.3f}"
        how = (
            f"sequential over {_plural(c.looks, 'look')}, Holm-corrected"
            if c.sequential
            else "Holm-corrected"
        )
        test_text = f"Wilcoxon {p_text} ({how})"
    else:
        test_text = f"Wilcoxon not testable ({t.reason})"
    scale = normalisation_text or describe_normalisation(c.normalisation, label)
    sentence = (
        f"{lead} {label}: IQM {c.iqm.format(3)} vs {c.reference_iqm.format(3)}, "
        f"P(improvement) {c.probability_of_improvement.format(2)}, {test_text}, "
        f"{_size(c, unit, inner)}; {scale}"
    )
    if note:
        sentence += f"; {note}"
    return Verdict(outcome, sentence, c, alpha)


# ---------------------------------------------------------------------------------- the comparison


@dataclass
class _Track:
    """One contender's sequential state (pooled and per task) while the looks are replayed."""

    q_better: list[float | None] = field(default_factory=list)
    q_worse: list[float | None] = field(default_factory=list)
    tasks: dict[str, tuple[list[float | None], list[float | None]]] = field(default_factory=dict)
    frozen: Verdict | None = None
    last: Verdict | None = None


def _side_p(test: PairedTest) -> tuple[float | None, float | None]:
    """A look's two one-sided p-values, each doubled (both sides share alpha); None if untestable."""
    if not test.testable:
        return None, None
    return min(1.0, 2.0 * test.p_better), min(1.0, 2.0 * test.p_worse)


def _sequential(
    test: PairedTest, q_b: Sequence[float | None], q_w: Sequence[float | None], shares
) -> PairedTest:
    """``test`` (the latest look's) with the sequential two-sided p-value and the side ahead."""
    if not any(p is not None for p in q_b):
        return test
    pb, pw = sequential_p(q_b, shares), sequential_p(q_w, shares)
    direction = 1 if pb < pw else -1 if pw < pb else test.direction
    return replace(test, p_value=min(pb, pw), p_corrected=min(pb, pw), direction=direction, testable=True)


def _truncate(values, k: int | None) -> np.ndarray:
    u = as_units(values)
    return u if k is None else u[:k]


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
    looks: Looks | None = None,
    unit: str = "tuning study",
    inner: str = "seed",
    normalisation_text: str | None = None,
    note: str = "",
) -> dict[str, Verdict]:
    """Compare every contender with ``reference``: per task and pooled, with verdicts.

    Without ``looks`` (a fixed design) every contender is compared on all the units it shares with
    the reference. With ``looks``, the looks are replayed as the module docstring says; a look is
    made only once the reference and every contender still running have its units on every task,
    and contenders still running when the data end get a provisional verdict (``stopped =
    "running"``). The Holm correction runs over all contenders compared to this reference (the
    reference itself is not compared); contenders whose test is not testable stay in the family with
    p = 1.0, which keeps the correction conservative. All bootstrap intervals use ``seed`` (see
    :func:`~nosplug.stats.intervals.iqm_ci`), so a report recomputed from the same results is
    identical. Returns one :class:`Verdict` per contender, in the order of ``scores``.
    """
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the contenders {list(scores)}")
    tasks = _tasks(scores)
    contenders = [c for c in scores if c != reference]
    plan = looks or Looks((0,), (1.0,))
    sizes = {c: {t: as_units(scores[c][t]).shape[0] for t in tasks} for c in scores}
    tracks = {c: _Track() for c in contenders}
    label = reference_label or reference

    def make(c: str, k: int | None, norm, n_looks: int, task: str | None, test: PairedTest) -> Comparison:
        on = [task] if task else list(tasks)
        x = [_truncate(norm[c][t], k) for t in on]
        r = [_truncate(norm[reference][t], k) for t in on]
        common = [min(a.shape[0], b.shape[0]) for a, b in zip(x, r)]
        x, r = [a[:n] for a, n in zip(x, common)], [b[:n] for b, n in zip(r, common)]
        kw = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
        return Comparison(
            contender=c, reference=reference, normalisation=normalisation,
            iqm=iqm_ci(x, **kw), reference_iqm=iqm_ci(r, **kw),
            probability_of_improvement=probability_of_improvement_ci(x, r, paired=True, **kw),
            test=test, n_tasks=len(tasks), seeds_per_task=tuple(a.size for a in x),
            units_per_task=tuple(common), seeds_per_unit=tuple(a.shape[1] for a in x),
            looks=n_looks, sequential=looks is not None, task=task,
        )  # fmt: skip

    def say(comparison: Comparison) -> Verdict:
        return verdict(
            comparison, alpha=alpha, reference_label=label, unit=unit, inner=inner,
            normalisation_text=normalisation_text, note=note,
        )  # fmt: skip

    for j, k in enumerate(plan.units):
        cut = None if looks is None else k
        active = [c for c in contenders if tracks[c].frozen is None]
        if not active:
            break
        if cut is not None and any(sizes[c][t] < cut for c in (reference, *active) for t in tasks):
            break  # this look is not complete yet
        shares = plan.shares[: j + 1]
        present = {c: {t: _truncate(scores[c][t], cut) for t in tasks} for c in (reference, *active)}
        norm = normalise(present, direction, normalisation, reference)
        tests: dict[str, PairedTest] = {}
        task_tests: dict[str, dict[str, PairedTest]] = {}
        for c in active:
            track = tracks[c]
            test = wilcoxon_paired([norm[c][t] for t in tasks], [norm[reference][t] for t in tasks],
                                   min_pairs=min_pairs)  # fmt: skip
            b, w = _side_p(test)
            track.q_better.append(b)
            track.q_worse.append(w)
            tests[c] = _sequential(test, track.q_better, track.q_worse, shares)
            task_tests[c] = {}
            for t in tasks:
                tt = wilcoxon_paired([norm[c][t]], [norm[reference][t]], min_pairs=min_pairs)
                qb, qw = track.tasks.setdefault(t, ([], []))
                b, w = _side_p(tt)
                qb.append(b)
                qw.append(w)
                task_tests[c][t] = _sequential(tt, qb, qw, shares)
        # Holm over the whole family: frozen contenders keep the p-values they stopped with
        family = {c: tests[c] if c in tests else _frozen_test(tracks[c]) for c in contenders}
        corrected = holm_bonferroni([family[c].p_value if family[c].testable else 1.0 for c in contenders])
        per_task_corrected: dict[str, dict[str, float]] = {}
        for t in tasks if len(tasks) > 1 else ():
            fam = {
                c: task_tests[c][t] if c in task_tests else _frozen_task_test(tracks[c], t)
                for c in contenders
            }
            ps = holm_bonferroni([fam[c].p_value if fam[c].testable else 1.0 for c in contenders])
            per_task_corrected[t] = dict(zip(contenders, ps))
        last_look = j == len(plan.units) - 1
        for c, p_corr in zip(contenders, corrected):
            if c not in tests:
                continue
            test = replace(tests[c], p_corrected=p_corr if tests[c].testable else 1.0)
            pooled = say(make(c, cut, norm, j + 1, None, test))
            per_task: dict[str, Verdict] = {}
            if len(tasks) > 1:
                for t in tasks:
                    tt = task_tests[c][t]
                    tt = replace(tt, p_corrected=per_task_corrected[t][c] if tt.testable else 1.0)
                    per_task[t] = say(make(c, cut, norm, j + 1, t, tt))
            v = _pooled(pooled, per_task, label)
            tracks[c].last = v
            if v.outcome in DECIDED or last_look:
                tracks[c].frozen = replace(v, stopped="decided" if v.outcome in DECIDED else "cap")
    out: dict[str, Verdict] = {}
    for c in contenders:
        track = tracks[c]
        if track.frozen is not None:
            out[c] = track.frozen
        elif track.last is not None:
            out[c] = replace(track.last, stopped="running")
        else:  # not even the first look is complete: the comparison so far, provisional
            out[c] = _provisional(scores, reference, c, tasks, direction, normalisation, say, make)
    return out


def _frozen_test(track: _Track) -> PairedTest:
    assert track.frozen is not None
    return track.frozen.comparison.test


def _frozen_task_test(track: _Track, task: str) -> PairedTest:
    assert track.frozen is not None
    return track.frozen.per_task[task].comparison.test


def _pooled(pooled: Verdict, per_task: Mapping[str, Verdict], label: str) -> Verdict:
    """Apply the per-task rule to the pooled verdict: better (worse) only if no task is
    significantly worse (better); otherwise "mixed", naming the split."""
    if not per_task:
        return pooled
    against = {"better": "worse", "worse": "better"}.get(pooled.outcome)
    split = [t for t, v in per_task.items() if against and v.outcome == against]
    if not split:
        return replace(pooled, per_task=dict(per_task))
    wins = [t for t, v in per_task.items() if v.outcome == pooled.outcome]
    head = pooled.sentence.split(": ", 1)[1]
    ahead = f"{pooled.outcome} pooled over tasks" + (f" and on {', '.join(wins)}" if wins else "")
    sentence = f"mixed against {label}: {ahead}, but {against} on {', '.join(split)}; pooled: {head}"
    return replace(pooled, outcome="mixed", sentence=sentence, per_task=dict(per_task))


def _provisional(scores, reference, c, tasks, direction, normalisation, say, make) -> Verdict:
    """A contender before its first look is complete: compared on what there is (never decided)."""
    present = {x: {t: as_units(scores[x][t]) for t in tasks} for x in (reference, c)}
    norm = normalise(present, direction, normalisation, reference)
    test = wilcoxon_paired([norm[c][t] for t in tasks], [norm[reference][t] for t in tasks])
    v = say(make(c, None, norm, 0, None, replace(test, p_corrected=1.0, p_value=1.0, testable=False,
                                                reason="the first look is not complete")))  # fmt: skip
    return replace(v, stopped="running")
