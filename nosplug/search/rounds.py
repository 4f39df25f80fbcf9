"""The elimination protocol of spec §10 on stored studies, and the second GA round it seeds.

``NAME`` (a search) -> ``NAME.elimination`` (its best genomes through progressively harder
stages, each stage with its own task and learning-rate test) -> ``NAME.round2`` (a new search
whose particles are the elimination's winners, every child trained on several seeds) ->
``NAME.round2.elimination`` (its best genomes on the final stage). Each step is a study of its
own: stored, resumable and shared between workers like the search.
"""

from __future__ import annotations

import copy
from typing import Any

import optuna

from nosplug.errors import UserError
from nosplug.genome.model import Genome
from nosplug.search.api import create_search
from nosplug.search.config import ConfigError, SearchConfig, elimination_stage_preset, stage_task
from nosplug.search.elimination import SWEEP
from nosplug.search.kind import SearchStudy
from nosplug.search.ranking import ELIMINATION, best
from nosplug.study import trials as T
from nosplug.study.kinds import open_study, plan_state
from nosplug.study.studies import create_study, load


def create_elimination(
    name: str,
    storage: str | None = None,
    *,
    stages: list[dict[str, Any]] | None = None,
    top: int | None = None,
    repeats: int | None = None,
    elimination_name: str | None = None,
) -> optuna.Study:
    """Create the elimination study of a finished search (spec §10) from its best genomes.

    A stage without ``lr`` runs its own learning-rate test (``lr = "sweep"``), as the paper does
    for every model it reports; ``lr = "search"`` reuses the rate the search chose.
    """
    source = load(name, storage)
    ctx = open_study(source)
    if not isinstance(ctx, SearchStudy):
        raise UserError(f"study {name!r} is not a search study")
    el = ctx.raw["elimination"]
    stages = [dict(s) for s in (stages or el["stages"])]
    if not stages:
        raise ConfigError("elimination.stages: give stages in the config or with --stages base64:24,...")
    direction = source.direction.name.lower()
    for i, s in enumerate(stages):
        s.setdefault("lr", SWEEP)
        where = f"elimination.stages[{i}]"
        elimination_stage_preset(s, where)
        stage_task(s, direction, where)
    top = top or el["top"]
    repeats = repeats or el["repeats"]
    cands = []
    for t in best(source, top):
        g = T.evaluated_genome(t.user_attrs)
        cands.append(
            {
                "source": t.user_attrs[T.KEY],
                "genome": g.to_dict(),
                "lr": t.user_attrs.get("chosen_lr"),
                "fitness": t.user_attrs[T.FITNESS],
            }
        )
    if not cands:
        raise UserError(f"study {name!r} has no finished evaluations to eliminate from")
    raw = {
        "study": ctx.raw["study"],
        "task": ctx.raw["task"],
        "data": ctx.raw["data"],
        "workers": ctx.raw["workers"],
        "source": name,
        "stages": stages,
        "top": top,
        "repeats": repeats,
        "candidates": cands,
    }
    return create_study(
        elimination_name or f"{name}.elimination", ELIMINATION, raw, storage=storage, direction=direction
    )


def parse_stages(text: str, base_stage: dict[str, Any], steps: int | None = None) -> list[dict[str, Any]]:
    """``base64:24,base96:12`` -> stages that train ConvNet(base) and keep the best ``keep``."""
    stages = []
    for part in text.split(","):
        part = part.strip()
        name, _, keep = part.partition(":")
        if not name.startswith("base") or not name[4:].isdigit() or not keep.isdigit():
            raise ConfigError(f"--stages: {part!r} is not of the form baseN:KEEP (e.g. base64:24)")
        stage = {**base_stage, "name": name, "keep": int(keep)}
        stage["surrogate_options"] = {**dict(base_stage.get("surrogate_options", {})), "base": int(name[4:])}
        if steps:
            stage["final_steps"] = steps
        stages.append(stage)
    return stages


def evolution_stage(name: str, storage: str | None = None) -> dict[str, Any]:
    """The evolution stage's settings of search ``name`` (what ``--stages`` stages start from)."""
    return dict(open_study(load(name, storage)).raw["evaluation"]["evolution"])


# ----------------------------------------------------------------------------- the second round
def round2_name(name: str) -> str:
    return f"{name}.round2"


def winners(name: str, storage: str | None = None) -> list[Genome]:
    """The genomes that survived every stage of ``NAME.elimination``, best first (as evaluated)."""
    el_name = f"{name}.elimination"
    study = load(el_name, storage)
    progress = plan_state(study).progress
    if "winners" not in progress:
        current = progress.get("current", "?")
        raise UserError(
            f"{el_name} has not finished (stage {current!r} is still running); finish it with "
            f"`nosplug study eliminate {name}`"
        )
    candidates = study.user_attrs[T.CONFIG_ATTR]["candidates"]
    genomes = {c["source"]: Genome.from_dict(c["genome"]) for c in candidates}
    return [genomes[source] for source in progress["winners"]]


def round2_config(name: str, storage: str | None = None) -> dict[str, Any]:
    """The config of ``NAME.round2`` (spec §10 step 7): the search's config with the best
    ``next_round.top`` winners of its elimination as the particles (the random initial
    population is skipped), every child trained on ``next_round.seeds`` seeds (fitness: the
    best value of their mean curve), and its own elimination: its ``elimination_top`` best
    genomes through ``next_round.stages`` (default: the search's last elimination stage)."""
    source = open_study(load(name, storage))
    if not isinstance(source, SearchStudy):
        raise UserError(f"study {name!r} is not a search study")
    nr = source.raw["next_round"]
    if nr["top"] < 1:
        raise ConfigError(
            f"next_round.top: study {name!r} has no second round configured (set [next_round] top, "
            "e.g. 6 as in the paper)"
        )
    seeds = winners(name, storage)[: nr["top"]]
    raw = copy.deepcopy(source.raw)
    raw["study"]["name"] = round2_name(name)
    raw["study"]["seed"] = int(raw["study"]["seed"]) + 1
    raw["study"]["description"] = f"second GA round seeded by the winners of {name}.elimination"
    raw["ga"]["initial_genomes"] = [g.to_dict() for g in seeds]
    raw["ga"]["particles"] = len(seeds)
    for key in ("timesteps", "mutations"):
        if nr[key]:
            raw["ga"][key] = nr[key]
    raw["evaluation"]["evolution"] = {**raw["evaluation"]["evolution"], "seeds": nr["seeds"]}
    stages = nr["stages"] or source.raw["elimination"]["stages"][-1:]
    raw["elimination"] = {**raw["elimination"], "top": nr["elimination_top"], "stages": stages}
    raw["next_round"] = {**nr, "top": 0, "stages": []}
    return raw


def create_round2(name: str, storage: str | None = None) -> optuna.Study:
    """Create ``NAME.round2`` (see :func:`round2_config`); never overwrites."""
    return create_search(SearchConfig(round2_config(name, storage), f"{name} [next_round]"), storage=storage)
