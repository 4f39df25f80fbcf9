"""Named baseline sets: the optimizers a discovered one must beat, each with its tuning and recipe.

A discovered optimizer is worth adopting only if it beats what people use today, tuned just as
hard: AdamW, NAdamW (AlgoPerf's baseline), Lion, Schedule-Free AdamW, SOAP and Muon. A
:class:`BaselineSet` names such a list; ``nosplug benchmark ... --baselines modern`` (config:
``benchmark.baselines``, a search's ``validate.baselines``) adds its members as contenders, each
tuned with the same number of trials as every other contender over its learning rate, warm-up
and the extra hyperparameters its entry lists (``tuning.extra``), and run with its recipe:

* **Schedule-Free** optimizers (any optimizer with ``train()`` / ``eval()``, detected by
  :func:`~nosplug.baselines.recipes.is_schedule_free`) get the tuned warm-up and then a constant
  rate (they replace the decay schedule), train in ``train()`` mode and are evaluated in
  ``eval()`` mode (the averaged weights);
* **Muon** runs as :class:`~nosplug.baselines.recipes.MuonAdamW`: ``torch.optim.Muon`` on the
  hidden weight matrices, AdamW on everything else, one learning rate for both.

Sets are registered the plugin way, through the hook ``nosplug_baseline_sets`` (the built-in ones
by :mod:`nosplug.builtin.baselines`); :mod:`nosplug.benchmark.baseline_report` states each
contender's tuning space and recipe as text to print with a verdict table and judges the other
contenders against the best baseline. The members of the built-in ``modern`` set need the
optional extra ``pip install "nosplug[baselines]"`` (pytorch-optimizer) and torch >= 2.9
(``torch.optim.Muon``).

This module imports no torch: plugin registration reads it for every command.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nosplug.errors import UserError

#: The pip command that installs what the built-in sets need.
INSTALL_HINT = 'pip install "nosplug[baselines]" (in a clone: pip install -e ".[baselines]")'


class BaselineSetError(ValueError, UserError):
    """An unknown baseline set, or one whose optimizers cannot be imported here."""


@dataclass(frozen=True)
class Baseline:
    """One optimizer of a set.

    Attributes:
        ref: the contender reference (``torch:AdamW``, ``pytorch_optimizer:Lion``, ...).
        tune: what it tunes besides the learning rate and the warm-up (names of
            :data:`nosplug.benchmark.contenders.EXTRA_TUNING`).
        recipe: how it is run, in words (stated with the verdict table).
        requires: ``(module, what to install)`` pairs that must be importable for it to run.
    """

    ref: str
    tune: tuple[str, ...] = ()
    recipe: str = ""
    requires: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BaselineSet:
    """A named list of baselines (a registry record: ``name`` is its key)."""

    name: str
    baselines: tuple[Baseline, ...]
    description: str = ""

    def missing(self) -> list[str]:
        """What is not installed here for this set, each once (module and what to install)."""
        out: dict[str, str] = {}
        for b in self.baselines:
            for module, hint in b.requires:
                if module not in out and not _importable(module):
                    out[module] = hint
        return [f"{m} ({hint})" for m, hint in out.items()]


def _importable(module: str) -> bool:
    """``pkg.mod`` or ``pkg.mod:Attr`` (an attribute that must exist, e.g. torch.optim:Muon)."""
    path, _, attr = module.partition(":")
    try:
        if importlib.util.find_spec(path.split(".")[0]) is None:
            return False
        if not attr:
            return importlib.util.find_spec(path) is not None
        return hasattr(importlib.import_module(path), attr)
    except (ImportError, ValueError):
        return False


def baseline_sets() -> dict[str, BaselineSet]:
    """Every registered baseline set, by name."""
    from nosplug.primitives.registry import registry

    return dict(registry().items["baseline_sets"])


def get_set(name: str) -> BaselineSet:
    """The set ``name``; one error line naming the registered sets when there is none."""
    sets = baseline_sets()
    if name not in sets:
        known = ", ".join(sorted(sets)) or "none"
        raise BaselineSetError(f"unknown baseline set {name!r} (registered: {known})")
    return sets[name]


def expand(names: Iterable[str], *, check: bool = True) -> list[Baseline]:
    """The baselines of the sets ``names``, in order, each reference once; with ``check`` one
    error line when a set's optimizers cannot be imported here (naming what to install)."""
    out: dict[str, Baseline] = {}
    for name in names:
        s = get_set(name)
        missing = s.missing() if check else []
        if missing:
            raise BaselineSetError(
                f"baseline set {name!r} needs what is not installed here: {'; '.join(missing)}"
            )
        for b in s.baselines:
            out.setdefault(b.ref, b)
    return list(out.values())


def is_set_name(name: str) -> bool:
    """Whether ``name`` is a registered baseline set (``validate.baselines`` takes set names
    and contender references side by side)."""
    return name in baseline_sets()


def recipe_of(spec: str) -> str:
    """The recipe a registered set states for contender ``spec`` ("" when no set lists it)."""
    for s in baseline_sets().values():
        for b in s.baselines:
            if b.ref == spec and b.recipe:
                return b.recipe
    return ""


def baseline_contenders(raw: Mapping[str, Any]) -> list[str]:
    """The contenders of a benchmark config that stand for its baselines: its reference and the
    members of its ``benchmark.baselines`` sets."""
    b = raw["benchmark"]
    members = {x.ref for x in expand(b.get("baselines") or (), check=False)}
    return [c for c in b["contenders"] if c == b["reference"] or c in members]


def __getattr__(name: str) -> Any:
    """``nosplug.baselines:MuonAdamW`` (a contender reference) without importing torch here."""
    if name == "MuonAdamW":
        from nosplug.baselines.recipes import MuonAdamW

        return MuonAdamW
    raise AttributeError(name)


def sets_json(sets: Mapping[str, BaselineSet] | None = None) -> list[dict[str, Any]]:
    """The sets as plain JSON (``--json`` outputs)."""
    sets = baseline_sets() if sets is None else sets
    return [
        {
            "name": s.name,
            "description": s.description,
            "baselines": [{"ref": b.ref, "tune": list(b.tune), "recipe": b.recipe} for b in s.baselines],
            "missing": s.missing(),
        }
        for s in sets.values()
    ]


__all__ = [
    "INSTALL_HINT",
    "Baseline",
    "BaselineSet",
    "BaselineSetError",
    "baseline_contenders",
    "baseline_sets",
    "expand",
    "get_set",
    "is_set_name",
    "recipe_of",
    "sets_json",
]
