"""Find a task by name: a registered task (hook ``nosplug_tasks``) or ``"module:callable"``.

``"my_module:make_task"`` imports ``my_module`` (the current folder is searched too, as
``python -m`` would) and calls ``make_task(**options)``, which must return a
:class:`~nosplug.tasks.base.Task`. So a study config can train a user's own model and data
without a plugin package, exactly like a plugin task.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nosplug.tasks.base import Task, TaskError


@dataclass(frozen=True)
class TaskSpec:
    """A task plugin record: ``factory(**options) -> Task``."""

    name: str
    factory: Callable[..., Task]
    description: str
    options: tuple[str, ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)


def task_specs() -> dict[str, TaskSpec]:
    """Every registered task, by name."""
    from nosplug.primitives.registry import registry

    return dict(registry().items["tasks"])


def _factory(ref: str) -> Callable[..., Task]:
    if ":" in ref:
        module, _, attr = ref.partition(":")
        if os.getcwd() not in sys.path:  # a console script does not search the current folder
            sys.path.insert(0, os.getcwd())
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise TaskError(f"task {ref!r}: cannot import module {module!r}: {exc}") from None
        fn = getattr(mod, attr, None)
        if not callable(fn):
            raise TaskError(f"task {ref!r}: module {module!r} has no callable {attr!r}")
        return fn
    from nosplug.primitives.registry import UnknownPrimitiveError, registry

    try:
        return registry().get("tasks", ref).factory
    except UnknownPrimitiveError as exc:
        raise TaskError(f"{exc}; or give module:callable") from None


def resolve_task(ref: str | Task, options: Mapping[str, Any] | None = None) -> Task:
    """The task ``ref`` built with ``options`` (a Task instance is returned as it is)."""
    if isinstance(ref, Task):
        if options:
            raise TaskError(f"task {ref.name!r} is already built; options {sorted(options)} cannot apply")
        return ref
    if not isinstance(ref, str) or not ref:
        raise TaskError(f"a task is a registered name or 'module:callable', got {ref!r}")
    fn = _factory(ref)
    opts = dict(options or {})
    try:
        inspect.signature(fn).bind(**opts)
    except TypeError as exc:
        raise TaskError(f"task {ref!r}: {exc} (options given: {', '.join(sorted(opts)) or 'none'})") from None
    except ValueError:  # no signature (a builtin): let the call say what is wrong
        pass
    try:
        task = fn(**opts)
    except TaskError:
        raise
    except (TypeError, ValueError) as exc:
        raise TaskError(f"task {ref!r}: {exc}") from None
    if not isinstance(task, Task):
        raise TaskError(f"task {ref!r} returned {type(task).__name__}, not a nosplug.tasks.Task")
    return task


def load_task_data(name: str, options: Mapping[str, Any], seed: int, device: str | Any = "cpu"):
    """The splits of task ``name`` built with ``options`` for data seed ``seed``, on ``device``:
    loaded and moved once per process (a worker evaluates many genomes on the same data)."""
    import json

    import torch

    key = json.dumps({"name": name, "options": dict(options)}, sort_keys=True)
    return _load_data(key, int(seed), str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _load_data(key: str, seed: int, device: str):
    import json

    import torch

    ref = json.loads(key)
    return resolve_task(ref["name"], ref["options"]).load(seed).to(torch.device(device))
