"""Collects what every plugin registers into one name-indexed registry.

Each kind (operands, unary ops, schedules, datasets, ...) is one namespace, except that scalar
unary and state-holding unary ops share one (a node's unary slot can hold either). A name
registered twice is a :class:`PluginClashError` naming both plugins.

Zoo genomes (hook ``nosplug_zoo_genomes``) are collected here too, so they get the same clash
check, the same provenance for ``nosplug plugins list`` and the same cache reset. The built-in zoo
(``nosplug/zoo/data``) arrives through the same hook from the built-in plugin :data:`BUILTIN_ZOO`,
which is registered before any outside plugin, so a plugin cannot shadow a built-in name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from nosplug.errors import UserError
from nosplug.primitives.base import (
    BinaryOp,
    DecayBinaryOp,
    DecayUnaryOp,
    Operand,
    OperandFamily,
    Schedule,
    StatefulOp,
    UnaryOp,
)


class PluginClashError(RuntimeError, UserError):
    """Two plugins registered the same name for the same kind."""


class InvalidPluginRecordError(TypeError, UserError):
    """A plugin's hook returned something nosplug cannot register (the message names the plugin)."""


class UnknownPrimitiveError(KeyError, UserError):
    """A genome or config names a primitive that no plugin registers."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass(frozen=True)
class Kind:
    key: str
    hook: str
    label: str
    namespace: str


KINDS: tuple[Kind, ...] = (
    Kind("operands", "nosplug_operands", "operand", "operand"),
    Kind("operand_families", "nosplug_operand_families", "operand family", "operand"),
    Kind("unary_ops", "nosplug_unary_ops", "unary op", "unary"),
    Kind("stateful_ops", "nosplug_stateful_ops", "stateful op", "unary"),
    Kind("binary_ops", "nosplug_binary_ops", "binary op", "binary"),
    Kind("schedules", "nosplug_schedules", "schedule", "schedule"),
    Kind("decay_unary_ops", "nosplug_decay_unary_ops", "decay unary op", "decay_unary"),
    Kind("decay_binary_ops", "nosplug_decay_binary_ops", "decay binary op", "decay_binary"),
    Kind("datasets", "nosplug_datasets", "dataset", "dataset"),
    Kind("surrogates", "nosplug_surrogates", "surrogate", "surrogate"),
    Kind("tasks", "nosplug_tasks", "task", "task"),
    Kind("teachers", "nosplug_teachers", "teacher", "teacher"),
    Kind("students", "nosplug_students", "student", "student"),
    Kind("amalgamation_losses", "nosplug_amalgamation_losses", "amalgamation loss", "amalgamation_loss"),
    Kind("zoo_genomes", "nosplug_zoo_genomes", "zoo genome", "zoo_genome"),
    Kind("study_kinds", "nosplug_study_kinds", "study kind", "study_kind"),
    Kind("planners", "nosplug_planners", "planner", "planner"),
    Kind("baseline_sets", "nosplug_baseline_sets", "baseline set", "baseline_set"),
)
KIND_BY_KEY = {k.key: k for k in KINDS}

#: Node ids of update graphs; operands may not use these names.
RESERVED_NAME = re.compile(r"^(h\d+|out|hidden)$")
_FAMILY_REF = re.compile(r"^\s*([A-Za-z_][\w.\-]*)\s*\((.*)\)\s*$")
#: Zoo names are looked up lower-cased and must not look like file paths.
_ZOO_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+\-]*$")
#: The built-in plugin that registers the shipped zoo genomes.
BUILTIN_ZOO = "nosplug.zoo"


@dataclass(frozen=True)
class ZooGenome:
    """A named genome a plugin ships for :mod:`nosplug.zoo`.

    ``genome`` is genome JSON text or its dict form. It is parsed only when loaded (parsing needs
    the finished registry, since the genome may use primitives of any plugin).
    """

    name: str
    genome: str | Mapping[str, Any]


def _zoo_records(returned: Any, plugin_name: str) -> list[ZooGenome]:
    """Normalise what ``nosplug_zoo_genomes`` returned: a mapping name -> genome, or an iterable
    of :class:`ZooGenome` records or ``(name, genome)`` pairs. Names are lower-cased because
    :func:`nosplug.zoo.load` looks names up case-insensitively."""
    if isinstance(returned, Mapping):
        pairs: Iterable[Any] = returned.items()
    elif isinstance(returned, Iterable) and not isinstance(returned, (str, bytes)):
        pairs = returned
    else:
        raise InvalidPluginRecordError(
            f"plugin {plugin_name!r}: nosplug_zoo_genomes must return a mapping name -> genome, "
            f"got {type(returned).__name__}"
        )
    records = []
    for item in pairs:
        if isinstance(item, ZooGenome):
            name, genome = item.name, item.genome
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            name, genome = item
        else:
            raise InvalidPluginRecordError(
                f"plugin {plugin_name!r}: nosplug_zoo_genomes entries must be (name, genome) pairs "
                f"or ZooGenome records, got {item!r:.80}"
            )
        if not isinstance(name, str) or not _ZOO_NAME.match(name.lower()) or name.lower().endswith(".json"):
            raise InvalidPluginRecordError(
                f"plugin {plugin_name!r}: zoo genome name {name!r} must be letters, digits, '_', '-', '.' "
                "or '+', start with a letter or digit, and not end in .json (it would read as a file)"
            )
        if not isinstance(genome, (str, Mapping)):
            raise InvalidPluginRecordError(
                f"plugin {plugin_name!r}: zoo genome {name!r} must be genome JSON text or a dict, "
                f"got {type(genome).__name__}"
            )
        records.append(ZooGenome(name.lower(), genome))
    return records


@dataclass
class Registry:
    """Name -> record for every kind, plus which plugin registered each name."""

    items: dict[str, dict[str, Any]] = field(default_factory=lambda: {k.key: {} for k in KINDS})
    provenance: dict[tuple[str, str], str] = field(default_factory=dict)
    _family_cache: dict[str, Operand] = field(default_factory=dict)

    # -- building -----------------------------------------------------------------------
    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> Registry:
        reg = cls()
        owner_by_namespace: dict[tuple[str, str], str] = {}
        for kind in KINDS:
            caller = getattr(pm.hook, kind.hook)
            # in registration order: built-ins first, so a clash names the built-in as the owner
            for impl in caller.get_hookimpls():
                plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
                records = impl.function() or []
                if kind.key == "zoo_genomes":
                    records = _zoo_records(records, plugin_name)
                for record in records:
                    name = record.name
                    if kind.namespace == "operand" and RESERVED_NAME.match(name):
                        raise PluginClashError(
                            f"{kind.label} {name!r} from plugin {plugin_name!r} uses a name reserved for "
                            "graph nodes (h0, h1, ..., out, hidden)"
                        )
                    key = (kind.namespace, name)
                    if key in owner_by_namespace:
                        owner = owner_by_namespace[key]
                        builtin = (
                            " (the built-in zoo, which plugins cannot override)"
                            if owner == BUILTIN_ZOO
                            else ""
                        )
                        raise PluginClashError(
                            f"{kind.label} {name!r} is registered by both plugin "
                            f"{owner!r}{builtin} and plugin {plugin_name!r}"
                        )
                    owner_by_namespace[key] = plugin_name
                    reg.items[kind.key][name] = record
                    reg.provenance[(kind.key, name)] = plugin_name
        return reg

    # -- generic access -----------------------------------------------------------------
    def names(self, kind: str, tag: str | None = None) -> list[str]:
        recs = self.items[kind]
        if tag is None:
            return list(recs)
        return [n for n, r in recs.items() if tag in getattr(r, "tags", ())]

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.items[kind][name]
        except KeyError:
            label = KIND_BY_KEY[kind].label
            known = ", ".join(sorted(self.items[kind])) or "none"
            raise UnknownPrimitiveError(f"unknown {label} {name!r} (registered: {known})") from None

    def by_plugin(self) -> dict[str, dict[str, list[str]]]:
        """plugin name -> kind -> names, for ``nosplug plugins list``."""
        out: dict[str, dict[str, list[str]]] = {}
        for (kind, name), plugin in self.provenance.items():
            out.setdefault(plugin, {}).setdefault(kind, []).append(name)
        return out

    # -- update-graph primitives -------------------------------------------------------
    def operand(self, ref: str) -> Operand:
        """Resolve an operand name or a family reference such as ``ema(power=2, beta=0.999)``."""
        rec = self.items["operands"].get(ref)
        if rec is not None:
            return rec
        cached = self._family_cache.get(ref)
        if cached is not None:
            return cached
        m = _FAMILY_REF.match(ref)
        if m is None:
            raise UnknownPrimitiveError(
                f"unknown operand {ref!r} (not a registered operand, nor a family call like 'ema(power=2)')"
            )
        fam_name, arg_text = m.groups()
        family: OperandFamily | None = self.items["operand_families"].get(fam_name)
        if family is None:
            known = ", ".join(sorted(self.items["operand_families"])) or "none"
            raise UnknownPrimitiveError(
                f"unknown operand family {fam_name!r} in {ref!r} (registered: {known})"
            )
        params = parse_family_args(arg_text, ref)
        unknown = set(params) - set(family.defaults)
        if unknown:
            raise UnknownPrimitiveError(
                f"operand {ref!r}: family {fam_name!r} has no parameter(s) {sorted(unknown)} "
                f"(accepted: {sorted(family.defaults)})"
            )
        operand = family.build(**{**family.defaults, **params})
        operand = _renamed(operand, format_family_ref(fam_name, {**family.defaults, **params}))
        self._family_cache[ref] = operand
        return operand

    def canonical_operand_ref(self, ref: str) -> str:
        """The stored name of an operand: registered names as-is, family calls normalised."""
        return ref if ref in self.items["operands"] else self.operand(ref).name

    def unary(self, name: str) -> UnaryOp | StatefulOp:
        rec = self.items["unary_ops"].get(name) or self.items["stateful_ops"].get(name)
        if rec is None:
            known = ", ".join(sorted([*self.items["unary_ops"], *self.items["stateful_ops"]]))
            raise UnknownPrimitiveError(f"unknown unary op {name!r} (registered: {known})")
        return rec

    def binary(self, name: str) -> BinaryOp:
        return self.get("binary_ops", name)

    def schedule(self, name: str) -> Schedule:
        return self.get("schedules", name)

    def decay_unary(self, name: str) -> DecayUnaryOp:
        return self.get("decay_unary_ops", name)

    def decay_binary(self, name: str) -> DecayBinaryOp:
        return self.get("decay_binary_ops", name)

    def is_stateful(self, name: str) -> bool:
        return name in self.items["stateful_ops"]

    def __iter__(self) -> Iterator[tuple[str, str, Any]]:
        for kind, recs in self.items.items():
            for name, rec in recs.items():
                yield kind, name, rec


def parse_family_args(text: str, ref: str) -> dict[str, Any]:
    """Parse ``power=2, beta=0.999, bias_correction=true`` into Python values."""
    params: dict[str, Any] = {}
    text = text.strip()
    if not text:
        return params
    for part in text.split(","):
        if "=" not in part:
            raise UnknownPrimitiveError(f"operand {ref!r}: argument {part.strip()!r} must be key=value")
        key, raw = (s.strip() for s in part.split("=", 1))
        low = raw.lower()
        if low in ("true", "false"):
            params[key] = low == "true"
            continue
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            raise UnknownPrimitiveError(f"operand {ref!r}: cannot read value {raw!r} of {key!r}") from None
    return params


def format_family_ref(family: str, params: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v)

    return f"{family}(" + ", ".join(f"{k}={fmt(params[k])}" for k in sorted(params)) + ")"


def _renamed(op: Operand, name: str) -> Operand:
    from dataclasses import replace

    return replace(op, name=name)


_cached: dict[tuple[int, int], Registry] = {}


def registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """The registry of the process-wide plugin manager (built once per plugin set, cached: a
    :func:`nosplug.plugins.reset` starts a new generation, and the registry is built again)."""
    from nosplug import plugins

    pm = pm or plugins.plugin_manager()
    key = (id(pm), plugins.generation())
    reg = _cached.get(key)
    if reg is None:
        reg = Registry.from_plugin_manager(pm)
        _cached.clear()
        _cached[key] = reg
    return reg
