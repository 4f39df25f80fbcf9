"""Genomes: typed update graphs with decay graphs on their edges (see :mod:`nosplug.genome.model`)."""

from nosplug.genome.graph import DecayGraph, DecayNode, Edge, GenomeError, Node
from nosplug.genome.ids import HIDDEN, ROOT
from nosplug.genome.model import FORMAT, FORMAT_VERSION, MOMENTUM_TYPES, Genome

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "HIDDEN",
    "MOMENTUM_TYPES",
    "ROOT",
    "DecayGraph",
    "DecayNode",
    "Edge",
    "Genome",
    "GenomeError",
    "Node",
]
