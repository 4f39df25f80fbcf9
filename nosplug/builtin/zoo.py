"""Built-in plugin: the shipped zoo genomes (``nosplug/zoo/data/*.json``), registered through the
same ``nosplug_zoo_genomes`` hook that plugins use, so the registry needs no special case for
them (and does not import :mod:`nosplug.zoo`, which imports the registry)."""

from __future__ import annotations

from importlib import resources

from nosplug.hookspecs import hookimpl
from nosplug.primitives.registry import ZooGenome


@hookimpl
def nosplug_zoo_genomes() -> list[ZooGenome]:
    data = resources.files("nosplug.zoo") / "data"
    return [
        ZooGenome(p.name[: -len(".json")], p.read_text())
        for p in sorted(data.iterdir(), key=lambda p: p.name)
        if p.name.endswith(".json")
    ]
