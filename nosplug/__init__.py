"""nosplug: neural optimizer search and optimizer amalgamation for PyTorch, built from plugins.

Public names (a stable contract, see docs/api.md)::

    nosplug.zoo.load("adam"); nosplug.zoo.names()
    nosplug.Genome.from_json(text); genome.to_json(); genome.formula(); genome.canonical_hash()
    nosplug.GraphOptimizer(model.parameters(), genome, lr=1e-3, total_steps=10_000)
    nosplug.plugin_manager()
    nosplug.search(task, config=..., storage=..., name=...)   # run or resume a search in-process
    nosplug.benchmark(contenders, tasks, seeds=..., tuning_trials=...)   # a fair comparison
"""

from __future__ import annotations

from nosplug.plugins import plugin_manager
from nosplug.primitives.registry import registry
from nosplug.version import __version__


def __getattr__(name: str):  # lazy: keep `import nosplug` light for the CLI and workers
    if name == "Genome":
        from nosplug.genome import Genome

        return Genome
    if name == "GraphOptimizer":
        from nosplug.optim import GraphOptimizer

        return GraphOptimizer
    if name == "zoo":
        import nosplug.zoo as zoo

        return zoo
    if name == "search":
        import nosplug.search as search  # a package you can call: nosplug.search(...)

        return search
    if name == "benchmark":
        import nosplug.benchmark as benchmark  # a module you can call: nosplug.benchmark(...)

        return benchmark
    if name == "tasks":
        import nosplug.tasks as tasks

        return tasks
    raise AttributeError(f"module 'nosplug' has no attribute {name!r}")


__all__ = [
    "Genome",
    "GraphOptimizer",
    "__version__",
    "benchmark",
    "plugin_manager",
    "registry",
    "search",
    "tasks",
    "zoo",
]
