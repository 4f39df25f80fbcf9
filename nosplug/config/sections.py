"""Config sections shared by every kind of study, as dataclasses with one schema and one check.

A section's schema (what :func:`nosplug.tomlconfig.check_sections` reads: key -> (types, default))
is derived from its dataclass by :func:`section_schema`, so the defaults below are the only ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from nosplug.config.defaults import DEFAULT_DEVICE

_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def section_schema(cls: type) -> dict[str, tuple[tuple[type, ...], Any]]:
    """key -> (accepted types, default) for the dataclass ``cls`` (a field without a default is
    required: default ``None`` in the schema)."""
    out = {}
    for f in fields(cls):
        default = None if f.default is MISSING else f.default
        out[f.name] = (_TYPES[str(f.type)], default)
    return out


@dataclass(frozen=True)
class WorkersConfig:
    """How the workers of a study run (section ``[workers]`` of search and benchmark configs).

    ``threads`` 0 means cores / local workers; ``device`` is where evaluations train (``auto``,
    ``cpu``, ``cuda``, ``cuda:N``, ``mps``; a worker's ``--device`` wins). A worker stamps its
    trial every ``heartbeat_seconds``; one silent for ``lease_seconds`` is taken for dead and
    its trial handed out again; idle workers poll every ``poll_seconds``; a crashed evaluation is
    retried ``retries`` times before the worker stops.
    """

    threads: int = 0
    heartbeat_seconds: float = 5.0
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    retries: int = 1
    device: str = DEFAULT_DEVICE

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> WorkersConfig:
        """From a stored ``[workers]`` table (studies stored by nosplug 0.1 lack ``retries``)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def problems(self) -> list[str]:
        """What is out of range, as ``workers.KEY: why`` lines (empty when all is well)."""
        out = []
        if self.threads < 0:
            out.append("workers.threads: must be 0 (automatic) or positive")
        if self.retries < 0:
            out.append("workers.retries: must be 0 or more (how often a crashed evaluation is retried)")
        if self.heartbeat_seconds <= 0 or self.lease_seconds <= 2 * self.heartbeat_seconds:
            out.append("workers.lease_seconds: must exceed twice workers.heartbeat_seconds (> 0)")
        if self.poll_seconds <= 0:
            out.append("workers.poll_seconds: must be positive")
        return out

    def check(self, error: type[Exception]) -> WorkersConfig:
        """Raise ``error`` with the first problem; return self when there is none."""
        problems = self.problems()
        if problems:
            raise error(problems[0])
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
