"""Execute genomes: the compiled program, GraphOptimizer and the paper's LR schedule."""

from nosplug.optim.graph_optimizer import GraphOptimizer, NonFiniteUpdateError
from nosplug.optim.program import Program, compile_genome
from nosplug.optim.schedules import WarmupHoldCosine, cycled_momentum, warmup_hold_cosine_factor

__all__ = [
    "GraphOptimizer",
    "NonFiniteUpdateError",
    "Program",
    "WarmupHoldCosine",
    "compile_genome",
    "cycled_momentum",
    "warmup_hold_cosine_factor",
]
