"""Random genomes of the paper's space for property tests (export, lowering, batched integrity)."""

from __future__ import annotations

import random

from nosplug.genome.model import Genome
from nosplug.genome.random import random_genome
from nosplug.genome.space import SearchSpace


def random_genomes(n: int, seed: int, flip_probability: float = 0.5) -> list[Genome]:
    """``n`` genomes as the search draws them, each sign-flipped with ``flip_probability`` and
    with either Nesterov form, reproducible from ``seed``."""
    space, rng = SearchSpace.paper(), random.Random(seed)
    out = []
    for _ in range(n):
        g = random_genome(space, rng)
        g.flip = rng.random() < flip_probability
        if g.momentum == "nesterov":
            g.nesterov = rng.choice(["standard", "reference"])
        out.append(g)
    return out
