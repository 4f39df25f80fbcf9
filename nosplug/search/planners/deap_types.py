"""DEAP types over our genome: created once at import, so worker processes can unpickle them.

DEAP's GP trees are trees; our genomes are DAGs with shared nodes, so the individual is our own
:class:`~nosplug.genome.model.Genome` with a DEAP fitness attached, made by ``creator``.
"""

from __future__ import annotations

from deap import base, creator

from nosplug.genome.model import Genome

if not hasattr(creator, "NosFitness"):
    creator.create("NosFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "NosIndividual"):
    creator.create("NosIndividual", Genome, fitness=creator.NosFitness)

Individual = creator.NosIndividual
Fitness = creator.NosFitness


def as_individual(genome: Genome, fitness: float | None = None) -> Genome:
    """``genome`` as a DEAP individual (a Genome subclass carrying ``.fitness``)."""
    ind = Individual(
        nodes=genome.copy().nodes,
        momentum=genome.momentum,
        nesterov=genome.nesterov,
        flip=genome.flip,
        meta=dict(genome.meta),
    )
    if fitness is not None:
        ind.fitness.values = (fitness,)
    return ind


def same_genome(a: Genome, b: Genome) -> bool:
    """Hall-of-fame similarity: equal canonical hashes compute the same update."""
    return a.canonical_hash() == b.canonical_hash()
