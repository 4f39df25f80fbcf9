"""Shipped genomes: torch's classics, sign methods, and the paper's discoveries, as JSON data.

``load(name)`` also accepts a path to a genome JSON file. Every zoo genome carries metadata:
a description, its source, default hyperparameters and (for the paper's genomes) the base
schedule the paper trains it with; see :func:`scheduler_for`.

Every zoo genome reaches this module through the hook ``nosplug_zoo_genomes``: the shipped JSON
files through the built-in plugin ``nosplug.zoo`` (:mod:`nosplug.builtin.zoo`), others through
outside plugins. The plugin registry collects them (checking name clashes) and they appear in
:func:`names` and :func:`load` alike.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path

from torch.optim import Optimizer

from nosplug.errors import UserError
from nosplug.genome.graph import GenomeError
from nosplug.genome.model import Genome
from nosplug.primitives.registry import BUILTIN_ZOO as BUILTIN_ZOO  # re-exported: origin() returns it
from nosplug.primitives.registry import Registry, ZooGenome, registry


class UnknownGenomeError(UserError):
    """Neither a zoo name nor a readable genome file."""


def _data_dir():
    return resources.files("nosplug.zoo") / "data"


@cache
def builtin_names() -> tuple[str, ...]:
    """The genome names shipped in ``nosplug/zoo/data``, sorted (fixed for the process)."""
    return tuple(sorted(p.name[:-5] for p in _data_dir().iterdir() if p.name.endswith(".json")))


#: (registry, names) of the last :func:`names` call. Keyed on the registry object itself, which
#: ``nosplug.plugins.reset()`` replaces, so a plugin reset can never leave stale plugin names.
_names_memo: tuple[Registry, tuple[str, ...]] | None = None


def _genomes() -> dict[str, ZooGenome]:
    return registry().items["zoo_genomes"]


def names() -> list[str]:
    """Every zoo genome name, built-in and from plugins, sorted."""
    global _names_memo
    reg = registry()
    if _names_memo is None or _names_memo[0] is not reg:
        _names_memo = (reg, tuple(sorted(reg.items["zoo_genomes"])))
    return list(_names_memo[1])


def origin(name: str) -> str:
    """Who ships the zoo genome ``name``: :data:`BUILTIN_ZOO` or the name of a plugin."""
    key = name.lower()
    reg = registry()
    if key in reg.items["zoo_genomes"]:
        return reg.provenance[("zoo_genomes", key)]
    raise UnknownGenomeError(f"{name!r} is not a zoo genome (zoo: {', '.join(names())})")


def load(name_or_path: str) -> Genome:
    """The zoo genome ``name`` (case-insensitive), or the genome JSON file at a path."""
    shipped = _genomes().get(name_or_path.lower())
    if shipped is not None:
        return _parse(shipped)
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise UnknownGenomeError(f"genome file {str(path)!r} does not exist")
        try:
            return Genome.from_json(path.read_text())
        except (GenomeError, UnicodeDecodeError) as exc:
            raise GenomeError(f"genome file {str(path)!r}: {exc}") from None
    raise UnknownGenomeError(
        f"{name_or_path!r} is neither a zoo genome nor a genome file (zoo: {', '.join(names())})"
    )


def _parse(shipped: ZooGenome) -> Genome:
    """Parse a zoo genome; a broken one is reported with the plugin that shipped it."""
    plugin = registry().provenance.get(("zoo_genomes", shipped.name), "?")
    try:
        if isinstance(shipped.genome, str):
            return Genome.from_json(shipped.genome)
        # a deep copy, so that changing a loaded genome's meta cannot change the plugin's data
        return Genome.from_dict(copy.deepcopy(dict(shipped.genome)))
    except GenomeError as exc:
        raise GenomeError(f"zoo genome {shipped.name!r} from plugin {plugin!r}: {exc}") from None


def scheduler_for(genome: Genome, optimizer: Optimizer, total_steps: int):
    """The LR scheduler a genome's metadata recommends, or None for a constant learning rate."""
    from nosplug.optim.schedules import WarmupHoldCosine

    sched = genome.meta.get("schedule")
    if not sched:
        return None
    if sched.get("kind") != "warmup_hold_cosine":
        raise UserError(f"unknown schedule kind {sched.get('kind')!r} in genome metadata")
    return WarmupHoldCosine.from_fractions(
        optimizer,
        total_steps,
        warmup=float(sched.get("warmup", 0.0)),
        hold=float(sched.get("hold", 0.0)),
        cycle_momentum=bool(sched.get("cycle_momentum", False)),
    )
