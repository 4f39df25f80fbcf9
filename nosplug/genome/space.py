"""The search space: which primitives random genomes and mutations may use, and how often.

Defaults are the paper's (spec §3.3, §5, §9.2): the 20 paper operands, 22 scalar unary ops plus
3 stateful ones, 10 binary ops, 14 schedules, 13 + 7 decay ops, 5 hidden nodes, decay graphs on
15% of new edges. A space is plain data so a study can store it and a worker rebuild it; names
are checked against the plugin registry, so a space may use primitives from any plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from nosplug.errors import UserError
from nosplug.genome.model import MOMENTUM_TYPES, NESTEROV_FORMS
from nosplug.primitives.base import PAPER
from nosplug.primitives.registry import Registry, UnknownPrimitiveError
from nosplug.primitives.registry import registry as default_registry

#: The six mutations of spec §9.2 (swap lives inside ``connection``) with their probabilities.
MUTATIONS: dict[str, float] = {
    "operation": 0.40,
    "connection": 0.30,
    "arity": 0.10,
    "momentum": 0.10,
    "decay": 0.10,
}


class SearchSpaceError(ValueError, UserError):
    """A search-space setting is impossible; the message names the setting."""


@dataclass(frozen=True)
class SearchSpace:
    """Everything random initialisation and mutation draw from (spec §3.3, §5, §9.2)."""

    operands: tuple[str, ...]
    unary_ops: tuple[str, ...]
    binary_ops: tuple[str, ...]
    schedules: tuple[str, ...]
    decay_unary_ops: tuple[str, ...]
    decay_binary_ops: tuple[str, ...]
    #: Unary ops a mutation may introduce. The reference stops one short of its op list, so
    #: ``max_value`` can be drawn at initialisation but never introduced by mutation.
    mutation_unary_ops: tuple[str, ...] = ()
    hidden_nodes: int = 5
    p_identity: float = 0.2
    p_hidden_unary: float = 0.75
    p_root_unary: float = 0.25
    p_operand_arg: float = 0.8
    p_decay: float = 0.15
    #: Decay probability on the edge of a unary root; 0.85 in the reference (likely a typo).
    p_decay_unary_root: float = 0.85
    momentum_types: tuple[str, ...] = MOMENTUM_TYPES
    #: Nesterov form of searched genomes: the search code's ``reference`` form (spec §4).
    nesterov: str = "reference"
    #: Which of the mutations in :data:`MUTATIONS` may happen; probabilities renormalise.
    mutations: tuple[str, ...] = tuple(MUTATIONS)
    #: Redraw decay mutants that leave [0, 1] or do not change (the reference keeps them, §9.3).
    checked_decay_mutation: bool = True

    @classmethod
    def paper(cls, reg: Registry | None = None, **overrides: Any) -> SearchSpace:
        """The paper's space, built from every primitive tagged ``paper`` in the registry."""
        reg = reg or default_registry()
        unary = [n for n in reg.names("unary_ops", PAPER) if n != "identity"]
        stateful = reg.names("stateful_ops", PAPER)
        space = cls(
            operands=tuple(reg.names("operands", PAPER)),
            unary_ops=tuple(unary + stateful),
            binary_ops=tuple(reg.names("binary_ops", PAPER)),
            schedules=tuple(reg.names("schedules", PAPER)),
            decay_unary_ops=tuple(reg.names("decay_unary_ops", PAPER)),
            decay_binary_ops=tuple(reg.names("decay_binary_ops", PAPER)),
            mutation_unary_ops=tuple(unary + [s for s in stateful if s != "max_value"]),
        )
        return space.with_overrides(overrides, reg) if overrides else space.validate(reg)

    def with_overrides(
        self, overrides: Mapping[str, Any], reg: Registry | None = None, where: str = "space"
    ) -> SearchSpace:
        """A copy with settings replaced, checked as a study config would be (errors name the key)."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise SearchSpaceError(f"{where}.{key}: unknown setting (known: {', '.join(known)})")
            default = getattr(self, key)
            if isinstance(default, tuple):
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise SearchSpaceError(f"{where}.{key}: expected a list of names, got {value!r}")
                if not all(isinstance(v, str) for v in value):
                    raise SearchSpaceError(f"{where}.{key}: every entry must be a name (a string)")
                value = tuple(value)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise SearchSpaceError(f"{where}.{key}: expected true or false, got {value!r}")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise SearchSpaceError(f"{where}.{key}: expected an integer, got {value!r}")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise SearchSpaceError(f"{where}.{key}: expected a number, got {value!r}")
                value = float(value)
            elif isinstance(default, str) and not isinstance(value, str):
                raise SearchSpaceError(f"{where}.{key}: expected a string, got {value!r}")
            changes[key] = value
        if "unary_ops" in changes and "mutation_unary_ops" not in changes:
            changes["mutation_unary_ops"] = tuple(
                u for u in changes["unary_ops"] if u in self.mutation_unary_ops or u not in self.unary_ops
            )
        return replace(self, **changes).validate(reg, where)

    def validate(self, reg: Registry | None = None, where: str = "space") -> SearchSpace:
        """Check every name against the registry and every number against its range."""
        reg = reg or default_registry()
        checks = (
            ("operands", reg.operand),
            ("unary_ops", reg.unary),
            ("mutation_unary_ops", reg.unary),
            ("binary_ops", reg.binary),
            ("schedules", reg.schedule),
            ("decay_unary_ops", reg.decay_unary),
            ("decay_binary_ops", reg.decay_binary),
        )
        for key, lookup in checks:
            for name in getattr(self, key):
                try:
                    lookup(name)
                except UnknownPrimitiveError as exc:
                    raise SearchSpaceError(f"{where}.{key}: {exc}") from None
        for key, minimum in (("operands", 2), ("unary_ops", 1), ("binary_ops", 1), ("schedules", 2)):
            if len(getattr(self, key)) < minimum:
                raise SearchSpaceError(f"{where}.{key}: needs at least {minimum} entries")
        if "identity" in self.unary_ops:
            raise SearchSpaceError(f"{where}.unary_ops: leave out 'identity'; p_identity controls it")
        if not 1 <= self.hidden_nodes <= 64:
            raise SearchSpaceError(f"{where}.hidden_nodes: must be between 1 and 64, got {self.hidden_nodes}")
        for f in fields(self):
            if f.name.startswith("p_") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise SearchSpaceError(f"{where}.{f.name}: a probability must lie in [0, 1]")
        bad = [m for m in self.momentum_types if m not in MOMENTUM_TYPES]
        if bad or not self.momentum_types:
            raise SearchSpaceError(f"{where}.momentum_types: choose from {', '.join(MOMENTUM_TYPES)}")
        if self.nesterov not in NESTEROV_FORMS:
            raise SearchSpaceError(f"{where}.nesterov: choose from {', '.join(NESTEROV_FORMS)}")
        bad = [m for m in self.mutations if m not in MUTATIONS]
        if bad or not self.mutations:
            raise SearchSpaceError(
                f"{where}.mutations: {', '.join(bad) or 'empty'}; choose from {', '.join(MUTATIONS)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], reg: Registry | None = None) -> SearchSpace:
        return cls.paper(reg).with_overrides(d, reg)
