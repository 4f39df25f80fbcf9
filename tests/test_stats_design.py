"""Designs, sequential stopping, tuning studies as units and paired intervals: checked against
scipy, hand-worked data and planted truths (vectorised simulations, a few seconds in all)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from nosplug import stats as S
from nosplug.stats.design import Design, decide, draw, simulate

#: The default designs (docs/benchmark.md): seeds per tuning study 2, a batch of 4 studies.
QUICK = Design(family=1, studies=7, tasks=1, seeds=2, batch=4)  # studies/quick.toml, nosplug benchmark A B
VALIDATE = Design(family=3, studies=10, tasks=1, seeds=2, batch=4)  # [validate] top = 3
DEFAULTS = [QUICK, VALIDATE]

# --------------------------------------------------------------------------------- units, by hand


def test_units_pair_by_task_and_tuning_study_and_the_test_ranks_their_mean_differences() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(8, 2))  # 8 tuning studies x 2 seeds
    x = ref + rng.normal(0.3, 1.0, size=(8, 2))
    got = S.wilcoxon_paired([x], [ref])
    d = (x - ref).mean(axis=1)  # one difference per study: the mean over its seeds
    assert got.n_pairs == 8
    assert got.p_value == pytest.approx(scipy.stats.wilcoxon(d).pvalue)
    assert got.p_better == pytest.approx(scipy.stats.wilcoxon(d, alternative="greater").pvalue)
    assert got.p_worse == pytest.approx(scipy.stats.wilcoxon(d, alternative="less").pvalue)
    # a contender stopped early pairs on the common leading studies
    assert S.wilcoxon_paired([x[:6]], [ref]).n_pairs == 6
    with pytest.raises(ValueError, match="same seeds per unit"):
        S.wilcoxon_paired([x[:, :1]], [ref])


@pytest.mark.parametrize("n", [6, 13, 50, 51, 80])
def test_vectorised_signed_rank_p_values_equal_scipy(n: int) -> None:
    d = np.random.default_rng(n).normal(0.2, 1.0, size=(5, n))
    greater, less = S.signed_rank_pvalues(d)
    for row, g, lo in zip(d, greater, less):  # exact up to 50 differences, normal approximation above
        assert g == pytest.approx(scipy.stats.wilcoxon(row, alternative="greater").pvalue, rel=1e-9)
        assert lo == pytest.approx(scipy.stats.wilcoxon(row, alternative="less").pvalue, rel=1e-9)


def test_paired_probability_of_improvement_by_hand() -> None:
    x = [[[3.0, 1.0], [2.0, 2.0]], [5.0, 6.0, 1.0]]  # task 1: 2 studies x 2 seeds; task 2: 3 seeds
    y = [[[2.0, 2.0], [1.0, 2.0]], [4.0, 7.0, 1.0]]
    # task 1: study 0 wins 1 of 2, study 1 wins 1 and ties 1 -> (0.5 + 0.75) / 2; task 2: 1 + 0 + 0.5
    expected = ((0.5 + 0.75) / 2 + 1.5 / 3) / 2
    assert S.probability_of_improvement(x, y, paired=True) == pytest.approx(expected)
    got = S.probability_of_improvement_ci(x, y, paired=True, n_resamples=300, seed=4)
    rng = np.random.default_rng(4)  # documented draws: per task, units with replacement, X and Y together
    wins = [np.array([0.5, 0.75]), np.array([1.0, 0.0, 0.5])]
    boot = sum(w[rng.integers(0, w.size, size=(300, w.size))].mean(axis=1) for w in wins) / 2
    tail = S.expanded_tail(0.95, [2, 3])
    assert tail == pytest.approx(scipy.stats.norm.sf(math.sqrt(2) * scipy.stats.t.ppf(0.975, 1 + 2)))
    assert (got.low, got.high) == (
        pytest.approx(np.quantile(boot, tail)),
        pytest.approx(np.quantile(boot, 1 - tail)),
    )


def test_a_shared_seed_effect_leaves_the_paired_probability_of_improvement_alone() -> None:
    """Seeds that help both sides (data order, initial weights) blur the unpaired P(X > Y), not the paired."""
    rng = np.random.default_rng(0)
    seed_effect = 3.0 * rng.normal(size=(200, 6))
    x = seed_effect + rng.normal(1.5 * math.sqrt(2), 1.0, size=(200, 6))
    y = seed_effect + rng.normal(0.0, 1.0, size=(200, 6))
    paired = [S.probability_of_improvement([a], [b], paired=True) for a, b in zip(x, y)]
    unpaired = [S.probability_of_improvement([a], [b]) for a, b in zip(x, y)]
    assert np.mean(paired) == pytest.approx(scipy.stats.norm.cdf(1.5), abs=0.02)  # P(d > 0), d ~ N(1.5 sd)
    assert np.mean(unpaired) < 0.75


# ------------------------------------------------------------------------------------ sequential


def test_spending_functions_by_hand() -> None:
    z = scipy.stats.norm.isf(0.025)
    assert S.spent(0.5) == pytest.approx(2 * scipy.stats.norm.sf(z / math.sqrt(0.5)) / 0.05)
    assert S.spent(1.0) == 1.0 and S.spent(0.0) == 0.0
    assert S.spent(0.5, "pocock") == pytest.approx(math.log(1 + (math.e - 1) * 0.5))
    with pytest.raises(ValueError, match="spending"):
        S.spent(0.5, "linear")


def test_looks_that_could_hardly_decide_are_skipped_and_their_share_carries_on() -> None:
    looks = S.plan_looks(12, 4)  # candidates 4, 8, 12 units, one task, one contender
    # at 4 units even 4 of 4 on one side gives p = 2/16: no share of alpha could pass it
    assert looks.units == (8, 12)
    assert looks.shares[0] == pytest.approx(S.spent(8 / 12))
    assert sum(looks.shares) == pytest.approx(1.0)
    assert S.plan_looks(7, 0).units == (7,) and S.plan_looks(7, 0).shares == (1.0,)
    assert S.plan_looks(7, 4).units == (7,)  # 4 studies cannot decide: one look, all of alpha
    assert S.sequential_p([0.01, None], looks.shares) == pytest.approx(0.01 / looks.shares[0])
    assert S.sequential_p([0.9, 0.02], looks.shares) == pytest.approx(0.02 / looks.shares[1])


def test_many_looks_keep_the_false_positive_rate_at_alpha() -> None:
    """A null with a look after every study: stopping at the first pass would be far above 5 %."""
    design = Design(family=1, studies=30, seeds=1, batch=1)
    sim = simulate(design, 0.0, reps=4000, seed=11)
    assert len(design.looks().units) >= 10
    assert sim.better + sim.worse <= 0.05
    naive = np.zeros(4000, dtype=bool)  # the same data, each look at the full alpha
    y = draw(design, 0.0, reps=4000, seed=11)
    d = (y[:, 0] - y[:, 1]).mean(axis=-1)[:, 0]
    for k in design.looks().units:
        g, lo = S.signed_rank_pvalues(d[:, :k])
        naive |= 2 * np.minimum(g, lo) <= 0.05
    assert naive.mean() > 0.1


def test_the_replay_freezes_a_decided_contender_and_waits_for_incomplete_looks() -> None:
    rng = np.random.default_rng(5)
    looks = S.plan_looks(12, 4)  # looks at 8 and 12 studies
    ref = rng.normal(1.0, 0.01, size=(12, 2))
    clear = ref[:8] + 0.05  # wins every study: decided at the first look, gets no more studies
    close = ref + rng.normal(0.0, 0.01, size=(12, 2))
    v = S.compare({"ref": {"t": ref}, "clear": {"t": clear}, "close": {"t": close}}, "ref", "maximize",
                  looks=looks, n_resamples=200)  # fmt: skip
    assert v["clear"].outcome == "better" and v["clear"].stopped == "decided"
    assert v["clear"].comparison.looks == 1 and v["clear"].comparison.units_per_task == (8,)
    assert "sequential over 1 look, Holm-corrected" in v["clear"].sentence
    assert v["close"].stopped == "cap" and v["close"].comparison.units_per_task == (12,)
    # the second look is not complete for 'close': its verdict is provisional, 'clear' stays decided
    part = S.compare({"ref": {"t": ref[:10]}, "clear": {"t": clear}, "close": {"t": close[:10]}}, "ref",
                     "maximize", looks=looks, n_resamples=200)  # fmt: skip
    assert part["clear"].stopped == "decided" and part["close"].stopped == "running"
    assert part["clear"].sentence == v["clear"].sentence


def test_the_vectorised_simulation_is_the_real_procedure_repetition_by_repetition() -> None:
    design = Design(family=2, studies=12, seeds=2, batch=4)
    y = draw(design, 0.9, tau=0.5, reps=60, seed=3)
    outcome, used = decide(design, y)
    for r in range(y.shape[0]):
        ref, con = y[r, 1, 0] + 10.0, y[r, 0, 0] + 10.0
        scores = {"ref": {"t": ref}, "c": {"t": con}, "equal": {"t": ref}}  # a family of 2 (one untestable)
        v = S.compare(scores, "ref", "maximize", normalisation="none", looks=design.looks(), n_resamples=50)[
            "c"
        ]
        assert {"better": 1, "worse": -1}.get(v.outcome, 0) == outcome[r], r
        if outcome[r]:
            assert v.comparison.units_per_task == (used[r],), r


# ------------------------------------------------------------------------------------------ design


def test_a_design_that_cannot_decide_says_what_it_needs() -> None:
    old = Design(family=3, studies=5, seeds=1)  # the old [validate] defaults: top 3, 5 seeds, one task
    check = S.check(old)
    assert not check.decidable and not check.adequate and check.power == 0.0 and math.isinf(check.mde)
    line = check.shortfall()
    assert "cannot decide" in line and f"it needs {check.needed} tuning studies × 1 seeds" in line
    assert "\n" not in line
    fixed = S.check(old.with_studies(check.needed))
    assert fixed.adequate and fixed.shortfall() == ""
    # 6 seeds and top 3: Holm's smallest corrected p is 3 x 2 / 2**6 = 0.094, still undecidable
    assert not S.check(Design(family=3, studies=6, seeds=1)).decidable
    assert S.check(Design(family=1, studies=6, seeds=1)).decidable  # a family of one can, barely


@pytest.mark.parametrize("design", DEFAULTS, ids=["quick", "validate"])
def test_default_designs_detect_d_1_with_power_0_8_and_are_what_the_automatic_cap_picks(design) -> None:
    assert S.studies_needed(design.with_studies(2)) == design.studies
    assert simulate(design, 1.0, reps=4000, seed=21).better >= 0.8
    assert simulate(design.with_studies(design.studies - 1), 1.0, reps=4000, seed=21).better < 0.82


@pytest.mark.parametrize("tau", [0.0, 1.0, 3.0])
@pytest.mark.parametrize("design", DEFAULTS, ids=["quick", "validate"])
def test_a_null_with_tuning_luck_is_called_better_at_most_5_percent(design, tau: float) -> None:
    """Tuning studies are the units: their luck is in each unit's variance, so the test stays exact
    for any amount of it (a one-study design with tau = 1 says 'better' 14 % of the time)."""
    sim = simulate(design, 0.0, tau=tau, reps=4000, seed=31)
    assert sim.better <= 0.05 and sim.worse <= 0.05


def test_more_seeds_never_make_tuning_luck_worse() -> None:
    big = Design(family=1, studies=24, seeds=4, batch=4)
    assert simulate(big, 0.0, tau=1.0, reps=4000, seed=41).better <= 0.05


def test_a_contender_that_wins_every_seed_of_an_adequate_design_is_better() -> None:
    for design in DEFAULTS:
        rng = np.random.default_rng(design.family)
        ref = rng.normal(0.9, 0.01, size=(design.studies, design.seeds))
        scores = {"ref": {"t": ref}, "winner": {"t": ref + 0.001 * rng.uniform(1, 2, size=ref.shape)}}
        scores |= {f"other{i}": {"t": ref + rng.normal(0, 0.01, ref.shape)} for i in range(design.family - 1)}
        v = S.compare(scores, "ref", "maximize", looks=design.looks())["winner"]
        assert v.outcome == "better", v.sentence


# ------------------------------------------------------------------------------------ per task first


def test_pooled_better_with_a_task_significantly_worse_is_mixed_and_says_so() -> None:
    rng = np.random.default_rng(2)
    ref = {t: rng.normal(1.0, 0.01, size=(8, 2)) for t in ("a", "b", "c")}
    x = {"a": ref["a"] + 0.2, "b": ref["b"] + 0.2, "c": ref["c"] - 0.02}  # far ahead twice, a bit behind once
    v = S.compare({"ref": ref, "x": x}, "ref", "maximize", reference_label="tuned ref", n_resamples=300)["x"]
    assert v.per_task["a"].outcome == "better" and v.per_task["c"].outcome == "worse"
    assert v.outcome == "mixed"
    assert v.sentence.startswith(
        "mixed against tuned ref: better pooled over tasks and on a, b, but worse on c"
    )
    assert "scores normalised per task by tuned ref's mean" in v.sentence


# -------------------------------------------------------------------------------------- coverage


def _coverage(design: Design, tau: float, reps: int = 600) -> tuple[float, float]:
    """Coverage of the real IQM and paired P(improvement) intervals for their true values."""
    y = draw(design, 0.5, tau=tau, reps=reps, seed=51)
    poi_true = scipy.stats.norm.cdf(0.5 * math.sqrt(2) / math.sqrt(2 + 2 * tau**2))
    iqm_true = 0.5 * math.sqrt(2)  # symmetric runs: the IQM is the mean
    hit_poi = hit_iqm = 0
    for r in range(reps):
        con, ref = y[r, 0, 0], y[r, 1, 0]
        poi = S.probability_of_improvement_ci([con], [ref], paired=True, n_resamples=1000, seed=r)
        iqm = S.iqm_ci([con], n_resamples=1000, seed=r)
        hit_poi += poi.low <= poi_true <= poi.high
        hit_iqm += iqm.low <= iqm_true <= iqm.high
    return hit_poi / reps, hit_iqm / reps


def test_paired_intervals_cover_at_least_93_percent_at_the_default_design() -> None:
    poi, iqm = _coverage(QUICK, tau=0.0)
    assert poi >= 0.93 and iqm >= 0.93, (poi, iqm)


def test_the_shipped_defaults_are_these_designs() -> None:
    """nosplug benchmark / nosplug.benchmark() with one contender, [validate] (top 3) and the quick
    study (top 1): the configs' own defaults give the designs measured above."""
    from pathlib import Path

    import tomllib

    from nosplug.benchmark.api import build_config
    from nosplug.benchmark.config import normalise
    from nosplug.search.config import normalise as study_normalise

    raw = normalise(build_config(["torch:SGD"], ["diabetes-mlp"], name="d"))
    assert raw["design"]["studies"] == QUICK.studies and raw["design"]["adequate"]
    assert (raw["evaluation"]["seeds"], raw["tuning"]["batch"]) == (QUICK.seeds, QUICK.batch)
    v = study_normalise({"study": {"name": "v"}})["validate"]
    assert (v["top"], v["seeds"], v["batch"], v["studies"]) == (
        VALIDATE.family,
        VALIDATE.seeds,
        VALIDATE.batch,
        0,
    )
    quick = tomllib.loads((Path(__file__).parents[1] / "studies" / "quick.toml").read_text())["validate"]
    assert (quick["top"], quick["seeds"], quick.get("studies", 0)) == (QUICK.family, QUICK.seeds, 0)
