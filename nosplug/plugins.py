"""The plugin manager: built-in plugins, entry-point plugins, and the switch to disable them.

Plugins are disabled by name with the environment variable ``NOSPLUG_DISABLE_PLUGINS``
(comma-separated) or the CLI option ``-p no:NAME``, like ``pytest -p no:NAME``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pluggy

from nosplug import hookspecs

ENTRY_POINT_GROUP = "nosplug"
DISABLE_ENV = "NOSPLUG_DISABLE_PLUGINS"

#: Built-in plugin name -> module. They are registered exactly like outside plugins.
BUILTIN_PLUGINS: dict[str, str] = {
    "nosplug.operands": "nosplug.builtin.operands",
    "nosplug.operations": "nosplug.builtin.operations",
    "nosplug.schedules": "nosplug.builtin.schedules",
    "nosplug.datasets": "nosplug.builtin.datasets",
    "nosplug.surrogates": "nosplug.builtin.surrogates",
    "nosplug.tasks": "nosplug.builtin.tasks",
    "nosplug.teachers": "nosplug.builtin.teachers",
    "nosplug.students": "nosplug.builtin.students",
    "nosplug.losses": "nosplug.builtin.losses",
    "nosplug.zoo": "nosplug.builtin.zoo",
    "nosplug.kinds": "nosplug.builtin.kinds",
    "nosplug.planners": "nosplug.builtin.planners",
    "nosplug.baselines": "nosplug.builtin.baselines",
}

_manager: pluggy.PluginManager | None = None
_extra_disabled: set[str] = set()
#: Incremented by :func:`reset`: what was built from an earlier plugin set (the registry of
#: :mod:`nosplug.primitives.registry`) is built again.
_generation = 0


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str
    module: str
    builtin: bool


def disabled_plugins() -> set[str]:
    """Names disabled through ``NOSPLUG_DISABLE_PLUGINS`` or :func:`disable`."""
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return names | _extra_disabled


def disable(*names: str) -> None:
    """Disable plugins by name for this process (the CLI's ``-p no:NAME``); resets the manager."""
    _extra_disabled.update(names)
    reset()


def reset() -> None:
    """Forget the cached manager and everything built from it (tests and the CLI use this)."""
    global _manager, _generation
    _manager = None
    _generation += 1


def generation() -> int:
    """Which plugin set is in force: a new one after every :func:`reset`."""
    return _generation


def _builtin_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide :class:`pluggy.PluginManager` for the ``nosplug`` entry-point group."""
    global _manager
    if _manager is not None:
        return _manager
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = disabled_plugins()
    for name in blocked:
        pm.set_blocked(name)
    for name, module in BUILTIN_PLUGINS.items():
        if name in blocked or not _builtin_available(module):
            continue
        pm.register(importlib.import_module(module), name=name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    _manager = pm
    return pm


def plugin_infos(pm: pluggy.PluginManager | None = None) -> list[PluginInfo]:
    """Name, version and module of every registered plugin, built-ins first."""
    from nosplug.version import __version__

    pm = pm or plugin_manager()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        version = dist.version if dist is not None else __version__
        infos.append(
            PluginInfo(name, version, getattr(plugin, "__name__", repr(plugin)), name in BUILTIN_PLUGINS)
        )
    infos.sort(key=lambda i: (not i.builtin, i.name))
    return infos
