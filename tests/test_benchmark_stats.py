"""Benchmark statistics, each checked against an independent computation or a planted truth."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from nosplug import stats as S

ROOT = Path(__file__).resolve().parents[1]


def test_the_statistics_package_needs_neither_torch_nor_the_rest_of_nosplug() -> None:
    """Every module of nosplug.stats imports only numpy, scipy and its own package: reports can be
    recomputed where torch is not installed, and benchmark and amalgamation both build on it."""
    code = (  # a bare 'nosplug' package: its __init__ (and plugins, torch) never runs
        "import sys, types\n"
        f"pkg = types.ModuleType('nosplug'); pkg.__path__ = [{str(ROOT / 'nosplug')!r}]\n"
        "sys.modules['nosplug'] = pkg\n"
        "import nosplug.stats\n"
        "others = sorted(k for k in sys.modules if k.startswith('nosplug.') and 'stats' not in k)\n"
        "print('torch' in sys.modules, 'optuna' in sys.modules, others)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "[]"]
    for path in (ROOT / "nosplug/stats").glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) (nosplug[.\w]*)", path.read_text(), re.M)
        assert all(m == "nosplug.stats" or m.startswith("nosplug.stats.") for m in imports), (path, imports)
    assert not (ROOT / "nosplug/benchmark/stats.py").exists(), "no copy left at the old path"


# ------------------------------------------------------------------------------- descriptive, scores


def test_mean_std_is_per_contender_and_task_in_raw_units() -> None:
    scores = {"a": {"t1": [1.0, 2.0, 4.0], "t2": [3.0]}, "b": {"t1": [0.0, 0.0], "t2": [5.0, 7.0]}}
    table = S.mean_std(scores)
    assert table["a"]["t1"].mean == pytest.approx(7 / 3)
    # sample std by hand: deviations -4/3, -1/3, 5/3 -> (16 + 1 + 25) / 9 / 2 = 7/3
    assert table["a"]["t1"].std == pytest.approx(math.sqrt(7 / 3))
    assert table["a"]["t1"].n == 3
    assert math.isnan(table["a"]["t2"].std) and table["a"]["t2"].n == 1
    assert table["b"]["t2"].mean == 6.0 and table["b"]["t2"].std == pytest.approx(math.sqrt(2))


def test_normalisations_by_hand_for_both_directions() -> None:
    scores = {"ref": {"acc": [0.8, 0.6], "loss": [2.0, 4.0]}, "x": {"acc": [0.7, 0.9], "loss": [1.0, 6.0]}}
    dirs = {"acc": "maximize", "loss": "minimize"}
    ref = S.normalise(scores, dirs, "reference", reference="ref")
    # acc: divide by the reference mean 0.7; loss: reference mean 3.0 divided by the value
    np.testing.assert_allclose(ref["x"]["acc"], [1.0, 0.9 / 0.7])
    np.testing.assert_allclose(ref["x"]["loss"], [3.0, 0.5])
    np.testing.assert_allclose(ref["ref"]["loss"], [1.5, 0.75])
    mm = S.normalise(scores, dirs, "minmax")
    # acc over all runs: worst 0.6, best 0.9; loss: best 1.0, worst 6.0
    np.testing.assert_allclose(mm["ref"]["acc"], [2 / 3, 0.0])
    np.testing.assert_allclose(mm["x"]["acc"], [1 / 3, 1.0])
    np.testing.assert_allclose(mm["ref"]["loss"], [0.8, 0.4])
    np.testing.assert_allclose(mm["x"]["loss"], [1.0, 0.0])
    none = S.normalise(scores, dirs, "none")
    np.testing.assert_allclose(none["x"]["loss"], [-1.0, -6.0])
    np.testing.assert_allclose(none["x"]["acc"], [0.7, 0.9])
    flat = S.normalise({"a": {"t": [1.0, 1.0]}, "b": {"t": [1.0]}}, "maximize", "minmax")
    assert flat["a"]["t"].tolist() == [0.5, 0.5]


def test_bad_inputs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="same tasks"):
        S.mean_std({"a": {"t1": [1.0]}, "b": {"t2": [1.0]}})
    with pytest.raises(ValueError, match="non-finite"):
        S.normalise({"a": {"t": [1.0, math.nan]}}, "maximize", "none")
    with pytest.raises(ValueError, match="minmax"):
        S.normalise({"r": {"t": [1.0]}, "a": {"t": [0.0]}}, "minimize", "reference", reference="r")
    with pytest.raises(ValueError, match="direction"):
        S.normalise({"a": {"t": [1.0]}}, "up", "none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reference"):
        S.normalise({"a": {"t": [1.0]}}, "maximize", "reference")


# ------------------------------------------------------------------------------------------------ IQM


@pytest.mark.parametrize("n", [4, 8, 12, 20])
def test_iqm_is_the_25_percent_trimmed_mean_when_n_is_divisible_by_4(n: int) -> None:
    x = np.random.default_rng(n).normal(size=n)
    assert S.iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25))


def test_iqm_trims_fractionally_on_other_sizes() -> None:
    """The mean of the quantile function over [0.25, 0.75], written out by hand."""
    assert S.iqm([7.0]) == 7.0
    assert S.iqm([1.0, 3.0]) == pytest.approx(2.0)
    # n = 3: value i owns [i/3, (i+1)/3]; overlaps with [1/4, 3/4] are 1/12, 1/3, 1/12 -> x2 weights
    assert S.iqm([9.0, 1.0, 4.0]) == pytest.approx(1 / 6 * 1 + 2 / 3 * 4 + 1 / 6 * 9)
    # n = 5: overlaps 0, 0.15, 0.2, 0.15, 0 -> weights 0.3, 0.4, 0.3 on the middle three
    assert S.iqm([100.0, 1.0, 2.0, 3.0, -100.0]) == pytest.approx(0.3 * 1 + 0.4 * 2 + 0.3 * 3)
    assert S.iqm_weights(7).sum() == pytest.approx(1.0)


def _iqm_of_six(v: list[float]) -> float:
    """Hand IQM of 6 sorted values: slices of 1/6 overlap [1/4, 3/4] by 0, 1/12, 1/6, 1/6, 1/12, 0."""
    s = sorted(v)
    return (s[1] + 2 * s[2] + 2 * s[3] + s[4]) / 6


def test_stratified_bootstrap_of_the_iqm_matches_a_hand_loop() -> None:
    tasks = [[0.1, 0.5, 0.9], [2.0, 3.0, 7.0]]  # 2 tasks x 3 seeds
    n_resamples, seed = 300, 11
    got = S.iqm_ci(tasks, n_resamples=n_resamples, confidence=0.9, seed=seed)

    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, 3, size=(n_resamples, 3)) for _ in tasks]  # documented draw order
    boot = []
    for b in range(n_resamples):
        pooled = []
        for task, idx in zip(tasks, draws):
            pooled += [task[i] for i in idx[b]]  # seeds resampled within their own task only
        boot.append(_iqm_of_six(pooled))
    # the expanded percentile tail, by hand: 3 units per task, df = 2 + 2, confidence 0.9
    tail = scipy.stats.norm.sf(math.sqrt(3 / 2) * scipy.stats.t.ppf(0.95, 4))
    low, high = np.quantile(boot, [tail, 1 - tail])
    assert got.point == pytest.approx(_iqm_of_six([v for t in tasks for v in t]))
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.confidence == 0.9

    via_scores = S.aggregate_iqm(
        {"a": {"t1": tasks[0], "t2": tasks[1]}},
        "maximize",
        normalisation="none",
        n_resamples=n_resamples,
        confidence=0.9,
        seed=seed,
    )["a"]
    assert via_scores == got


def test_bootstrap_interval_narrows_with_more_seeds_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    few = [rng.normal(size=4) for _ in range(3)]
    many = [rng.normal(size=64) for _ in range(3)]
    a, b = S.iqm_ci(few, seed=3), S.iqm_ci(many, seed=3)
    assert b.high - b.low < a.high - a.low
    assert S.iqm_ci(few, seed=3) == a


# ------------------------------------------------------------------------- probability of improvement


def test_probability_of_improvement_by_hand_with_ties() -> None:
    x = [[1.0, 2.0, 3.0], [5.0, 6.0]]
    y = [[2.0, 2.0], [1.0, 5.0, 7.0]]
    # task 1: 1 loses twice, 2 ties twice (1/2 each), 3 wins twice -> 3/6
    # task 2: 5 beats 1, ties 5, loses to 7 -> 1.5; 6 beats 1 and 5, loses to 7 -> 2; total 3.5/6
    expected = (3 / 6 + 3.5 / 6) / 2
    assert S.probability_of_improvement(x, y) == pytest.approx(expected)
    assert S.probability_of_improvement(y, x) == pytest.approx(1 - expected)


def test_probability_of_improvement_bootstrap_matches_a_hand_loop() -> None:
    x = [[1.0, 2.0, 3.0], [5.0, 6.0]]
    y = [[2.0, 2.0], [1.0, 5.0, 7.0]]
    n_resamples, seed = 200, 5
    got = S.probability_of_improvement_ci(x, y, n_resamples=n_resamples, seed=seed)

    rng = np.random.default_rng(seed)
    draws = []
    for xt, yt in zip(x, y):  # documented order: per task, X's draw then Y's draw
        ix = rng.integers(0, len(xt), size=(n_resamples, len(xt)))
        iy = rng.integers(0, len(yt), size=(n_resamples, len(yt)))
        draws.append((ix, iy))
    boot = []
    for b in range(n_resamples):
        per_task = []
        for (xt, yt), (ix, iy) in zip(zip(x, y), draws):
            wins = 0.0
            for i in ix[b]:
                for j in iy[b]:
                    wins += 1.0 if xt[i] > yt[j] else 0.5 if xt[i] == yt[j] else 0.0
            per_task.append(wins / (len(xt) * len(yt)))
        boot.append(sum(per_task) / len(per_task))
    tail = scipy.stats.norm.sf(math.sqrt(2) * scipy.stats.t.ppf(0.975, 2))  # min(n, m) = 2 per task
    low, high = np.quantile(boot, [tail, 1 - tail])
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.point == pytest.approx(S.probability_of_improvement(x, y))


# ----------------------------------------------------------------------------------- paired testing

X_FIXED = {"t1": [0.91, 0.93, 0.90, 0.95], "t2": [0.72, 0.70, 0.75, 0.74]}
Y_FIXED = {"t1": [0.90, 0.91, 0.92, 0.90], "t2": [0.69, 0.66, 0.70, 0.75]}


def test_wilcoxon_equals_scipy_on_fixed_data() -> None:
    x = [X_FIXED[t] for t in ("t1", "t2")]
    y = [Y_FIXED[t] for t in ("t1", "t2")]
    got = S.wilcoxon_paired(x, y)
    d = np.array(x).ravel() - np.array(y).ravel()  # pairs are (task, seed index)
    ref = scipy.stats.wilcoxon(d)
    assert got.testable and got.n_pairs == 8 and got.n_zero == 0
    assert got.p_value == pytest.approx(ref.pvalue) and got.statistic == pytest.approx(ref.statistic)
    # signed ranks by hand: |d| = .01 .02 .02 .05 | .03 .04 .05 .01 -> one negative at t1 seed 2
    # (-0.02) and one at t2 seed 3 (-0.01); ranks of .01 tie at 1.5, of .02 at 3.5
    assert got.r_minus == pytest.approx(3.5 + 1.5) and got.r_plus == pytest.approx(36 - 5)
    assert got.direction == 1


def test_wilcoxon_on_reference_normalised_scores_equals_scipy_on_the_same_differences() -> None:
    scores = {"x": X_FIXED, "ref": Y_FIXED}
    verdicts = S.compare(scores, "ref", "maximize", n_resamples=200)
    norm_d = [(np.array(X_FIXED[t]) - np.array(Y_FIXED[t])) / np.mean(Y_FIXED[t]) for t in ("t1", "t2")]
    ref = scipy.stats.wilcoxon(np.concatenate(norm_d))
    test = verdicts["x"].comparison.test
    assert test.p_value == pytest.approx(ref.pvalue)
    assert test.p_corrected == test.p_value  # a family of one: Holm changes nothing


def test_degenerate_paired_tests_are_reported_not_raised() -> None:
    same = S.wilcoxon_paired([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert not same.testable and same.p_value == 1.0 and same.p_corrected == 1.0
    assert "all 6 paired differences are zero" in same.reason
    few = S.wilcoxon_paired([[1.0, 2.0, 3.0, 4.0, 5.0]], [[0.0, 0.0, 0.0, 0.0, 0.0]])
    assert not few.testable and few.p_value == 1.0 and "only 5 non-zero" in few.reason
    # scipy itself would give 2/2**5 = 0.0625 here: never below 0.05, hence the floor of 6
    assert scipy.stats.wilcoxon([1.0, 2.0, 3.0, 4.0, 5.0]).pvalue == pytest.approx(0.0625)
    empty = S.wilcoxon_paired([[1.0], []], [[], [2.0]])
    assert not empty.testable and "no paired" in empty.reason
    zeros_dropped = S.wilcoxon_paired([[1, 2, 3, 4, 5, 6, 7, 8]], [[1, 2, 2, 3, 4, 5, 6, 7]])
    assert zeros_dropped.n_zero == 2 and zeros_dropped.testable


def test_holm_bonferroni_by_hand() -> None:
    # sorted: 0.005 (x4) = 0.02, 0.01 (x3) = 0.03, 0.03 (x2) = 0.06, 0.04 (x1) = 0.04 -> running max 0.06
    assert S.holm_bonferroni([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1, and the running maximum keeps the order
    assert S.holm_bonferroni([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert S.holm_bonferroni([0.2]) == [0.2]
    assert S.holm_bonferroni([]) == []
    with pytest.raises(ValueError):
        S.holm_bonferroni([1.5])


def test_compare_corrects_across_the_contenders_of_one_reference() -> None:
    rng = np.random.default_rng(4)
    base = {f"t{i}": rng.normal(1.0, 0.05, 8) for i in range(3)}
    scores = {
        "ref": base,
        "a": {t: v + rng.normal(0.05, 0.02, 8) for t, v in base.items()},
        "b": {t: v + rng.normal(0.0, 0.05, 8) for t, v in base.items()},
        "same": base,
    }
    verdicts = S.compare(scores, "ref", "maximize", n_resamples=200)
    assert list(verdicts) == ["a", "b", "same"]
    raw = [verdicts[c].comparison.test.p_value for c in verdicts]
    assert raw[2] == 1.0  # not testable, kept in the family
    expected = S.holm_bonferroni(raw)
    assert [verdicts[c].comparison.test.p_corrected for c in verdicts] == pytest.approx(expected)
    assert verdicts["same"].outcome == "no detectable difference"
    assert "not testable (all 24 paired differences are zero)" in verdicts["same"].sentence


# -------------------------------------------------------------------------------------------- verdicts


def _comparison(p: float, direction: int, poi: tuple[float, float, float], testable: bool = True):
    test = S.PairedTest(p, p, 1.0, 1.0, 1.0, direction, 15, 0, testable, "" if testable else "why")
    return S.Comparison(
        contender="opt1",
        reference="adam",
        normalisation="none",
        iqm=S.Interval(0.912, 0.905, 0.918),
        reference_iqm=S.Interval(0.897, 0.889, 0.904),
        probability_of_improvement=S.Interval(*poi),
        test=test,
        n_tasks=3,
        seeds_per_task=(5, 5, 5),
    )


def test_the_test_decides_and_the_probability_of_improvement_must_agree_on_the_side() -> None:
    v = S.verdict(_comparison(0.004, 1, (0.81, 0.70, 0.90)), reference_label="tuned adam")
    assert v.outcome == "better"
    assert v.sentence == (
        "better than tuned adam: IQM 0.912 [0.905, 0.918] vs 0.897 [0.889, 0.904], "
        "P(improvement) 0.81 [0.70, 0.90], Wilcoxon p = 0.004 (Holm-corrected), 3 tasks × 5 seeds; "
        "raw scores (negated where lower is better)"
    )
    assert S.verdict(_comparison(0.004, -1, (0.2, 0.1, 0.3))).outcome == "worse"
    # significant, and P(improvement) on the same side: the interval reaching 0.5 does not decide
    assert S.verdict(_comparison(0.004, 1, (0.6, 0.45, 0.75))).outcome == "better"
    # clear probability interval but the corrected p is not below alpha
    assert S.verdict(_comparison(0.06, 1, (0.81, 0.70, 0.90))).outcome == "no detectable difference"
    # the two disagree on the side
    assert S.verdict(_comparison(0.004, -1, (0.81, 0.70, 0.90))).outcome == "no detectable difference"
    assert S.verdict(_comparison(0.004, 1, (0.5, 0.3, 0.7))).outcome == "no detectable difference"
    untestable = S.verdict(_comparison(1.0, 0, (0.81, 0.70, 0.90), testable=False))
    assert untestable.outcome == "no detectable difference"
    assert "Wilcoxon not testable (why)" in untestable.sentence
    assert "p < 0.001" in S.verdict(_comparison(0.0002, 1, (0.81, 0.70, 0.90))).sentence
    noted = S.verdict(_comparison(0.004, 1, (0.81, 0.70, 0.90)), note="underpowered design")
    assert noted.sentence.endswith("; underpowered design")


# -------------------------------------------------------------------------------- planted truths

TASKS = {f"task{i}": (0.5 + 0.08 * i, 0.01 * (i + 1)) for i in range(5)}  # (mean, sd): different scales


def _draw(rng: np.random.Generator, shift_in_sd: float) -> dict[str, np.ndarray]:
    return {t: rng.normal(m + shift_in_sd * s, s, 10) for t, (m, s) in TASKS.items()}


@pytest.mark.parametrize("normalisation", ["reference", "minmax"])
def test_a_clearly_better_contender_is_called_better_and_flips_under_minimize(normalisation: str) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        scores = {"adam": _draw(rng, 0.0), "a": _draw(rng, 1.5)}
        up = S.compare(scores, "adam", "maximize", normalisation=normalisation, n_resamples=500, seed=seed)
        assert up["a"].outcome == "better", up["a"].sentence
        assert up["a"].sentence.startswith("better than adam: IQM ")
        down = S.compare(scores, "adam", "minimize", normalisation=normalisation, n_resamples=500, seed=seed)
        assert down["a"].outcome == "worse", down["a"].sentence
        assert down["a"].sentence.startswith("worse than adam: ")


def test_mixed_directions_per_task() -> None:
    """A higher accuracy and a lower loss are both improvements."""
    rng = np.random.default_rng(9)
    ref = {"acc": rng.normal(0.80, 0.01, 10), "loss": rng.normal(2.0, 0.05, 10)}
    better = {"acc": rng.normal(0.83, 0.01, 10), "loss": rng.normal(1.8, 0.05, 10)}
    dirs = {"acc": "maximize", "loss": "minimize"}
    v = S.compare({"ref": ref, "new": better}, "ref", dirs, n_resamples=500)["new"]
    assert v.outcome == "better", v.sentence
    assert v.comparison.probability_of_improvement.point > 0.9


def test_a_copy_with_noise_of_the_same_distribution_shows_no_detectable_difference() -> None:
    rng = np.random.default_rng(123)
    scores = {"adam": _draw(rng, 0.0), "copy": _draw(rng, 0.0)}
    v = S.compare(scores, "adam", "maximize", n_resamples=500)["copy"]
    assert v.outcome == "no detectable difference", v.sentence
    assert v.comparison.probability_of_improvement.low < 0.5 < v.comparison.probability_of_improvement.high
    # and not by luck of one seed: over 40 null data sets the rule rarely claims a difference
    claims = 0
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        null = {"adam": _draw(rng, 0.0), "copy": _draw(rng, 0.0)}
        claims += S.compare(null, "adam", "maximize", n_resamples=200, seed=seed)["copy"].outcome != (
            "no detectable difference"
        )
    assert claims <= 4  # nominal rate <= 5 %, i.e. 2 expected at most


# --------------------------------------------------------------------------------- performance profiles


def test_performance_profile_by_hand() -> None:
    inf = math.inf
    times = {
        "a": {"t1": 10.0, "t2": 20.0, "t3": 30.0, "t4": inf},
        "b": {"t1": 20.0, "t2": 20.0, "t3": 15.0, "t4": 40.0},
        "c": {"t1": 40.0, "t2": 10.0, "t3": inf, "t4": 100.0},
    }
    prof = S.performance_profiles(times, tau_max=4.0, n_points=7)  # tau = 1, 1.5, ..., 4
    # fastest per task: 10, 10, 15, 40
    assert prof.ratios["a"] == {"t1": 1.0, "t2": 2.0, "t3": 2.0, "t4": inf}
    assert prof.ratios["b"] == {"t1": 2.0, "t2": 2.0, "t3": 1.0, "t4": 1.0}
    assert prof.ratios["c"] == {"t1": 4.0, "t2": 1.0, "t3": inf, "t4": 2.5}
    np.testing.assert_allclose(prof.tau, [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    np.testing.assert_allclose(prof.rho["a"], [0.25, 0.25, 0.75, 0.75, 0.75, 0.75, 0.75])
    np.testing.assert_allclose(prof.rho["b"], [0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(prof.rho["c"], [0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.75])
    # area / 3: a = (3 + 2 + 2 + 0) / 4 / 3, b = (2 + 2 + 3 + 3) / 12, c = (0 + 3 + 0 + 1.5) / 12
    assert prof.area == pytest.approx({"a": 7 / 12, "b": 10 / 12, "c": 4.5 / 12})
    # exact area agrees with a fine numerical integral of the step function
    fine = S.performance_profiles(times, n_points=30001)
    for c in times:
        assert scipy.integrate.trapezoid(fine.rho[c], fine.tau) / 3 == pytest.approx(prof.area[c], abs=1e-3)


def test_performance_profile_of_an_unsolved_task_and_per_seed_times() -> None:
    inf = math.inf
    times = {"a": {"t1": [10.0, 12.0, 11.0], "t2": inf}, "b": {"t1": [20.0, inf, inf], "t2": inf}}
    prof = S.performance_profiles(times)
    assert prof.ratios["a"] == {"t1": 1.0, "t2": inf}  # median 11; nobody solved t2
    assert prof.ratios["b"] == {"t1": inf, "t2": inf}  # median over seeds is inf
    assert prof.area == pytest.approx({"a": 0.5, "b": 0.0})
    assert prof.rho["a"][0] == 0.5 and prof.rho["a"][-1] == 0.5
    with pytest.raises(ValueError, match="> 0"):
        S.performance_profiles({"a": {"t": 0.0}})


def test_sentence_numbers_are_the_computed_ones() -> None:
    rng = np.random.default_rng(2)
    scores = {"adam": _draw(rng, 0.0), "opt1": _draw(rng, 2.0)}
    v = S.compare(scores, "adam", "maximize", n_resamples=300, reference_label="tuned adam")["opt1"]
    c = v.comparison
    numbers = [float(n) for n in re.findall(r"\d+\.\d+", v.sentence)]
    iqm, ref, poi = c.iqm, c.reference_iqm, c.probability_of_improvement
    expected = [iqm.point, iqm.low, iqm.high, ref.point, ref.low, ref.high, poi.point, poi.low, poi.high]
    assert numbers[:9] == pytest.approx(expected, abs=6e-3)
    assert v.sentence.endswith("5 tasks × 10 seeds; scores normalised per task by tuned adam's mean")


def test_exactly_half_the_seeds_missing_the_target_is_not_never() -> None:
    inf = math.inf
    assert S.median_time([10.0, 20.0, inf, inf]) == 20.0  # reached on half: the slower of those
    assert S.median_time([10.0, 20.0, 30.0, 40.0]) == 25.0  # the plain median
    assert S.median_time([10.0, inf, inf, inf]) == inf  # more than half missed: never
    assert S.median_time([10.0, 20.0, inf]) == 20.0 and S.median_time([10.0, inf, inf]) == inf
    prof = S.performance_profiles({"a": {"t": [10.0, 20.0, inf, inf]}, "b": {"t": [40.0, 40.0]}})
    assert prof.ratios["a"]["t"] == 1.0 and prof.ratios["b"]["t"] == 2.0
