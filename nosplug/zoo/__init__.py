"""Shipped genomes: torch's classics, sign methods, and the paper's discoveries, as JSON data.

``load(name)`` also accepts a path to a genome JSON file. Every zoo genome carries metadata:
a description, its source, default hyperparameters and (for the paper's genomes) the base
schedule the paper trains it with; see :func:`scheduler_for`.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from torch.optim import Optimizer

from nosplug.errors import UserError
from nosplug.genome.model import Genome


class UnknownGenomeError(UserError):
    """Neither a zoo name nor a readable genome file."""


def _data_dir():
    return resources.files("nosplug.zoo") / "data"


@lru_cache(maxsize=1)
def names() -> list[str]:
    """Every shipped genome name, sorted."""
    return sorted(p.name[:-5] for p in _data_dir().iterdir() if p.name.endswith(".json"))


@cache
def _load_text(name: str) -> str:
    return (_data_dir() / f"{name}.json").read_text()


def load(name_or_path: str) -> Genome:
    """The zoo genome ``name`` (case-insensitive), or the genome JSON file at a path."""
    key = name_or_path.lower()
    if key in names():
        return Genome.from_json(_load_text(key))
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise UnknownGenomeError(f"genome file {str(path)!r} does not exist")
        return Genome.from_json(path.read_text())
    raise UnknownGenomeError(
        f"{name_or_path!r} is neither a zoo genome nor a genome file (zoo: {', '.join(names())})"
    )


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
