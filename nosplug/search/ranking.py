"""How a search's genomes rank: one rule for ``study best``, reports, exports and the verdict.

A search evaluates many genomes, some several times (a genome met again is trained on fresh
seeds), in stages with different budgets. :func:`best` ranks distinct genomes (by canonical hash
and sign flip) within one stage by their fitness pooled over every seed they were trained on.
"""

from __future__ import annotations

import copy

import optuna
from optuna.trial import FrozenTrial, TrialState

from nosplug.search.planners.particle_ga import EVOLUTION, INIT
from nosplug.study import trials as T
from nosplug.study.kinds import NotRankedError
from nosplug.study.studies import kind_name

#: The kinds whose trials are genome evaluations ranked by fitness.
SEARCH, ELIMINATION = "search", "elimination"
RANKED_KINDS = (SEARCH, ELIMINATION, "particle-ga")  # particle-ga: searches of nosplug <= 0.1


#: How ``study best``, ``nosplug report`` and every other ranking of a search's genomes rank:
#: the words their headers print.
RANKING_RULE = (
    "ranked by fitness (the best validation value of the final run, averaged over every seed the "
    "genome was trained on) within one stage: the evolution stage once it has results, else the "
    "initial population (the stages train on different budgets, so their values are not mixed)"
)


def ranking_stage(study: optuna.Study) -> str | None:
    """The stage whose evaluations are ranked (see :data:`RANKING_RULE`); None for studies that
    are not searches (their stages are elimination rounds, all of which count)."""
    if kind_name(study) not in (SEARCH, "particle-ga"):
        return None
    scored = [t for t in _scored(study) if t.user_attrs.get(T.STAGE) == EVOLUTION]
    return EVOLUTION if scored else INIT


def _scored(study: optuna.Study) -> list[FrozenTrial]:
    live = T.live_trials(study.get_trials(deepcopy=False)).values()
    return [t for t in live if t.state == TrialState.COMPLETE and t.user_attrs.get(T.FITNESS) is not None]


def best(study: optuna.Study, n: int = 10, stage: str | None = None) -> list[FrozenTrial]:
    """The top ``n`` distinct genomes by fitness among finished evaluations of ``stage`` (default:
    :func:`ranking_stage`); reused copies and repeated genomes are skipped."""
    kind = kind_name(study)
    if kind not in RANKED_KINDS:
        raise NotRankedError.of(study.study_name, kind)
    stage = stage or ranking_stage(study)
    done = _scored(study)
    if stage is not None:
        done = [t for t in done if t.user_attrs.get(T.STAGE) == stage]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    groups: dict[str, list[FrozenTrial]] = {}
    for t in done:
        if t.user_attrs.get(T.REUSED_FROM) is None:  # a reused copy is not new evidence
            groups.setdefault(f"{t.user_attrs.get(T.HASH)}|{bool(t.user_attrs.get('flip'))}", []).append(t)
    pooled = [_pooled(ts, sign) for ts in groups.values()]
    pooled.sort(key=lambda t: (sign * t.user_attrs[T.FITNESS], t.number))
    return pooled[:n]


def _pooled(trials: list[FrozenTrial], sign: float) -> FrozenTrial:
    """One genome's evaluations as one ranked entry: its best trial (for the rate it chose), with
    ``fitness`` the mean of its evaluations' fitness weighted by their seeds (a genome met again
    was trained on fresh seeds), ``fitness_seeds`` the seeds in all and ``trial_fitness`` the
    best trial's own value."""
    rep = min(trials, key=lambda t: (sign * t.user_attrs[T.FITNESS], t.number))
    weights = [len(t.user_attrs.get("seed_fitness") or [None]) for t in trials]
    total = sum(w * float(t.user_attrs[T.FITNESS]) for w, t in zip(weights, trials))
    out = copy.deepcopy(rep)
    out.set_user_attr("trial_fitness", rep.user_attrs[T.FITNESS])
    out.set_user_attr(T.FITNESS, total / sum(weights))
    out.set_user_attr("fitness_seeds", sum(weights))
    return out
