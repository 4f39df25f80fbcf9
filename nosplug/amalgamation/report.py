"""Summaries and the paper's claims, computed from protocol rows (:mod:`nosplug.amalgamation.protocol`).

Pure numpy + scipy on plain dicts (the Parquet rows), so a report can be recomputed from an
exported file. Units: best log validation loss (lower is better); a diverged run counts as
chance level (``DIVERGED_LOG_VAL``). Statistics from :mod:`nosplug.stats` (the paired Wilcoxon
signed-rank test with Holm correction, paired bootstrap IQM and P(improvement) intervals, its
verdict rule) where a claim compares methods across problems. There the **replicate is the unit**:
one meta-training run is one optimizer, used on every problem and in every run, so its runs and
problems share whatever luck its meta-training had and are not independent draws; each replicate
counts once, as the mean over problems of its mean over runs. Replicate r of every method shares
its seeds, so replicates pair. A paired rank test over R replicates cannot pass below 2 / 2**R,
so a protocol with too few replicates says so (and how many it needs) instead of a verdict. Per
(method, problem) means come with the confidence interval of the random-intercept model
(:mod:`nosplug.amalgamation.variance`), whose degrees of freedom are the replicates too.

Layering: this module and :mod:`nosplug.amalgamation.protocol` compare methods, which is the
benchmark layer's job (docs' architecture); they may use :mod:`nosplug.stats`, and no
module of the amalgamation core (teachers, students, losses, training, runs) imports them.

Claims (spec §6.2) and how each verdict is computed (α = 0.05):

1. *Choice beats Mean and Min-max* (small pool): :func:`nosplug.stats.compare` with
   ``choice-small`` as reference over replicates (the unit; each the mean over problems and runs);
   supported when both are ``worse`` than choice, contradicted when either is ``better``, else not
   detectable (with the replicates a decision needs, when there are too few).
2. *The amalgamated optimizer beats the learned-optimizer baselines*: the same with
   ``choice-large`` against ``original`` and ``rnnprop`` (RNNProp without teachers).
3. *The best Choice replicate matches the oracle with better stability*: the ``choice-large``
   replicate with the lowest mean best log validation loss (chosen on the same evaluations, as in
   the paper, which flatters it) against the per-problem oracle (best teacher). A claim about that
   one replicate, so its runs are the units: per problem a Welch 95 % interval of the difference of
   means over runs: worse when it lies above 0, matching when it lies below the margin
   ``EQUIVALENCE`` (0.05 in log loss, about 5 % loss). Stability: ``compare`` on per-run stability
   paired by run seed. Supported when it matches on every problem and its stability is ``better``;
   contradicted when it is worse on a problem or less stable; else not detectable.
4. *Perturbations reduce variance*: the variance over replicates of each replicate's mean (over
   problems and runs) for ``minmax`` (random perturbation) against ``minmax-plain`` (none); a
   two-sided F test with (R−1, R−1) degrees of freedom. Supported when the perturbed variance is
   smaller and p < 0.05, contradicted when larger and p < 0.05, else not detectable.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from nosplug import stats
from nosplug.amalgamation.variance import random_intercept

DIVERGED_LOG_VAL = math.log(math.log(10.0))
EQUIVALENCE = 0.05
ALPHA = 0.05
SUPPORTED, CONTRADICTED, UNDETECTABLE, NOT_RUN = (
    "supported",
    "contradicted",
    "not detectable at this scale",
    "not run",
)


CLAIMS = (
    "Choice amalgamation beats Mean and Min-max (small pool)",
    "the amalgamated optimizer (Choice, large pool) beats the learned-optimizer baselines",
    "the best Choice replicate matches the oracle with better stability",
    "perturbations reduce the variance between replicates",
)


CLAIMS = (
    "Choice amalgamation beats Mean and Min-max (small pool)",
    "the amalgamated optimizer (Choice, large pool) beats the learned-optimizer baselines",
    "the best Choice replicate matches the oracle with better stability",
    "perturbations reduce the variance between replicates",
)


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    verdict: str
    evidence: str


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _value(row: dict[str, Any]) -> float:
    v = row["best_log_val"]
    return v if v is not None and math.isfinite(v) else DIVERGED_LOG_VAL


def by_replicate(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[int, dict[int, dict]]]]:
    """rows indexed [method][problem][replicate][run]."""
    out: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    for r in rows:
        out[r["method"]][r["problem"]][r["replicate"]][r["run"]] = r
    return out


def oracles(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per problem, the teacher with the lowest mean best log validation loss."""
    means: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["kind"] == "teacher":
            means[r["problem"]][r["method"]].append(_value(r))
    return {p: min(m, key=lambda t: float(np.mean(m[t]))) for p, m in means.items()}


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (method, problem): mean best log validation loss with its random-intercept 95 % interval,
    σ_meta and σ_eval, mean stability over runs with a finite one, diverged runs; oracle marked."""
    idx = by_replicate(rows)
    kinds = {r["method"]: r["kind"] for r in rows}
    best = oracles(rows)
    out = []
    for method, problems in idx.items():
        for problem, reps in problems.items():
            groups = [[_value(x) for x in runs.values()] for _, runs in sorted(reps.items())]
            vc = random_intercept(groups)
            all_runs = [x for runs in reps.values() for x in runs.values()]
            stab = [
                x["stability"]
                for x in all_runs
                if x["stability"] is not None and math.isfinite(x["stability"])
            ]
            out.append({
                "method": method, "kind": kinds[method], "problem": problem, "replicates": vc.replicates,
                "runs": vc.runs, "mean": vc.mean, "low": vc.low, "high": vc.high, "sd_meta": vc.sd_meta,
                "sd_eval": vc.sd_eval, "stability": float(np.mean(stab)) if stab else math.nan,
                "diverged": sum(1 for x in all_runs if not _finite(x["best_log_val"])),
                "oracle": best.get(problem) == method,
            })  # fmt: skip
    return out


def _replicate_scores(idx, method: str, problems: Sequence[str], replicates: Sequence[int]) -> np.ndarray:
    """``replicates x problems``: minus the mean over runs of each (replicate, problem)'s best log
    validation loss (higher is better); a row is one replicate, the unit of the paired test."""
    return np.array(
        [
            [-float(np.mean([_value(x) for x in idx[method][p][r].values()])) for p in problems]
            for r in replicates
        ]
    )


def _compare_claim(
    idx, reference: str, contenders: Sequence[str], problems: Sequence[str]
) -> tuple[str, str]:
    missing = [m for m in (reference, *contenders) if m not in idx]
    if missing:
        return NOT_RUN, f"methods not in the protocol: {', '.join(missing)}"
    methods = (reference, *contenders)
    replicates = sorted(set.intersection(*({r for p in problems for r in idx[m][p]} for m in methods)))
    if not replicates:
        return UNDETECTABLE, "no replicate index is shared by every method"
    scores = {m: {"problems": _replicate_scores(idx, m, problems, replicates)} for m in methods}
    verdicts = stats.compare(
        scores, reference, "maximize", normalisation="none", n_resamples=2000, unit="replicate",
        inner="problem", normalisation_text=(
            "scores: minus each replicate's best log validation loss, mean over runs then problems "
            "(higher is better); the replicate (one meta-training run) is the unit"
        ),
    )  # fmt: skip
    outcomes = [v.outcome for v in verdicts.values()]
    text = "; ".join(f"{c}: {v.sentence}" for c, v in verdicts.items())
    design = stats.Design(len(contenders), len(replicates), 1, len(problems))
    if not stats.design.decidable(design):
        need = stats.studies_needed(design)
        text += (
            f"; {len(replicates)} replicates cannot decide for a family of {len(contenders)} (a paired rank "
            f"test over replicates needs at least {_decidable_from(design)}; {need} for power 0.8 at d = 1)"
        )
    if all(o == "worse" for o in outcomes):
        return SUPPORTED, text
    if any(o == "better" for o in outcomes):
        return CONTRADICTED, text
    return UNDETECTABLE, text


def _decidable_from(design: stats.Design) -> int:
    """The fewest replicates with which the paired rank test could pass at all."""
    k = 1
    while not stats.design.decidable(design.with_studies(k)):
        k += 1
    return k


def _oracle_claim(idx, rows, method: str, problems: Sequence[str]) -> tuple[str, str]:
    if method not in idx:
        return NOT_RUN, f"method {method} not in the protocol"
    best_of = oracles(rows)
    replicates = sorted({r for p in problems for r in idx[method][p]})
    score = {
        r: np.mean([_value(x) for p in problems for x in idx[method][p][r].values()]) for r in replicates
    }
    best = min(score, key=score.get)
    parts, worse, matches = [], 0, 0
    stab_rep: dict[str, list[float]] = {}
    stab_orc: dict[str, list[float]] = {}
    for p in problems:
        oracle = best_of[p]
        mine, theirs = idx[method][p][best], idx[oracle][p][0]
        a = np.array([_value(mine[k]) for k in sorted(mine)])
        b = np.array([_value(theirs[k]) for k in sorted(theirs)])
        diff = float(a.mean() - b.mean())
        if len(a) > 1 and len(b) > 1 and (a.std() > 0 or b.std() > 0):
            ci = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
            low, high = float(ci.low), float(ci.high)
        else:
            low = high = diff
        worse += low > 0
        matches += high < EQUIVALENCE
        parts.append(f"{p}: {diff:+.3f} [{low:+.3f}, {high:+.3f}] vs {oracle}")
        common = [k for k in sorted(mine) if k in theirs]
        pairs = [(mine[k]["stability"], theirs[k]["stability"]) for k in common]
        pairs = [
            (x, y)
            for x, y in pairs
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
        ]
        if pairs:
            stab_rep[p], stab_orc[p] = [x for x, _ in pairs], [y for _, y in pairs]
    stab_outcome, stab_text = "no detectable difference", "stability: no comparable runs"
    if stab_rep:
        v = stats.compare(
            {"oracle": stab_orc, "best": stab_rep},
            "oracle",
            "minimize",
            normalisation="none",
            inner="run",
            normalisation_text="raw stability values (lower is steadier), runs of the one replicate as units",
        )["best"]
        stab_outcome, stab_text = v.outcome, f"stability (lower is steadier) {v.sentence}"
    text = (
        f"best replicate r{best}; its best log validation loss minus the oracle's, mean "
        f"[95 % Welch interval]: {'; '.join(parts)}; matches (interval below +{EQUIVALENCE}) on "
        f"{matches} of {len(problems)}, worse on {worse}; {stab_text}"
    )
    if worse or stab_outcome == "worse":
        return CONTRADICTED, text
    if matches == len(problems) and stab_outcome == "better":
        return SUPPORTED, text
    return UNDETECTABLE, text


def _perturbation_claim(idx, perturbed: str, plain: str, problems: Sequence[str]) -> tuple[str, str]:
    missing = [m for m in (perturbed, plain) if m not in idx]
    if missing:
        return NOT_RUN, f"methods not in the protocol: {', '.join(missing)}"

    def replicate_means(method: str) -> np.ndarray:
        reps = sorted({r for p in problems for r in idx[method][p]})
        return np.array(
            [np.mean([_value(x) for p in problems for x in idx[method][p][r].values()]) for r in reps]
        )

    a, b = replicate_means(perturbed), replicate_means(plain)
    if len(a) < 2 or len(b) < 2:
        return UNDETECTABLE, "fewer than 2 replicates per method: no variance to compare"
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))

    def sd_meta(method: str) -> float:
        fits = [
            random_intercept([[_value(x) for x in r.values()] for r in idx[method][p].values()])
            for p in problems
        ]
        return float(np.mean([f.sd_meta for f in fits]))

    sd = {m: sd_meta(m) for m in (perturbed, plain)}
    if va == 0 and vb == 0:
        return UNDETECTABLE, "no variance between replicates in either method"
    f = vb / va if va > 0 else math.inf
    p = 2 * min(scipy.stats.f.sf(f, len(b) - 1, len(a) - 1), scipy.stats.f.cdf(f, len(b) - 1, len(a) - 1))
    text = (
        f"variance of replicate means {perturbed} {va:.2e} vs {plain} {vb:.2e} ({len(a)} and {len(b)} "
        f"replicates), F = {f:.2f}, two-sided p = {p:.3f}; mean σ_meta over problems "
        f"{sd[perturbed]:.3f} vs {sd[plain]:.3f}"
    )
    if p < ALPHA:
        return (SUPPORTED if f > 1 else CONTRADICTED), text
    return UNDETECTABLE, text


def claims(rows: Sequence[dict[str, Any]]) -> list[Claim]:
    """The four claims of the paper this protocol can test, each with its computed verdict."""
    idx = by_replicate(rows)
    problems = sorted({r["problem"] for r in rows})
    found = [
        ("choice-beats-mean-minmax", _compare_claim(idx, "choice-small", ["mean", "minmax"], problems)),
        (
            "amalgamated-beats-baselines",
            _compare_claim(idx, "choice-large", ["original", "rnnprop"], problems),
        ),
        ("best-choice-matches-oracle", _oracle_claim(idx, rows, "choice-large", problems)),
        ("perturbations-reduce-variance", _perturbation_claim(idx, "minmax", "minmax-plain", problems)),
    ]
    return [Claim(name, paper, v, e) for (name, (v, e)), paper in zip(found, CLAIMS)]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The summary table and the claims as Markdown (used by scripts/reproduce.py)."""
    head = "| problem | method | replicates × runs | best log val loss [95 % CI] | σ_meta | σ_eval |"
    lines = [head + " stability | diverged |", "|---|---|---|---|---|---|---|---|"]
    for s in sorted(summary(rows), key=lambda s: (s["problem"], s["kind"] != "student", s["mean"])):
        name = f"{s['method']} (oracle)" if s["oracle"] else s["method"]
        lines.append(
            f"| {s['problem']} | {name} | {s['replicates']} × {s['runs'] // max(1, s['replicates'])} | "
            f"{s['mean']:+.3f} [{s['low']:+.3f}, {s['high']:+.3f}] | {number(s['sd_meta'])} | "
            f"{number(s['sd_eval'])} | {number(s['stability'])} | {s['diverged']} |"
        )
    lines.append("")
    for c in claims(rows):
        lines.append(f"- **{c.paper}**: {c.verdict}. {c.evidence}")
    return "\n".join(lines)


def number(x: float) -> str:
    """Three decimals, or an en dash for a missing (NaN) value."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.3f}"
