"""Built-in plugin: the search planners nosplug ships (``[search] planner = NAME``)."""

from __future__ import annotations

from nosplug.hookspecs import hookimpl


@hookimpl
def nosplug_planners():
    from nosplug.search.planners import evolution, random_search
    from nosplug.search.planners.base import PlannerSpec
    from nosplug.search.planners.particle_ga import ParticleGA

    return [
        PlannerSpec(
            "particle-ga",
            lambda inputs: ParticleGA(inputs.ga, inputs.space),
            {},
            "the paper's particle GA: independent particles, mutation only, aging (settings in [ga])",
        ),
        PlannerSpec(
            "random",
            random_search.RandomSearch,
            random_search.OPTIONS,
            "random genomes of the space through the same integrity check: the baseline",
        ),
        PlannerSpec(
            "regularized-evolution",
            evolution.RegularizedEvolution,
            evolution.OPTIONS,
            "aging evolution (Real et al. 2019): tournament parent, one mutation, the oldest dies",
        ),
    ]
