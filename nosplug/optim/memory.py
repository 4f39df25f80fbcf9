"""What an optimizer holds between steps: the bytes of every tensor reachable from it.

:func:`held_bytes` walks an optimizer object (its attributes, containers, state, any helper
objects it keeps) and adds up the storage of every tensor it reaches, each storage once (views of
one flat buffer count once), leaving out the parameters and their gradients. It measures torch's
optimizers, GraphOptimizer and exported optimizers alike, so their memory can be compared on any
device without a device allocator's statistics (benchmarks/bench_optimizer.py,
benchmarks/device_check.py, tests/test_memory.py).
"""

from __future__ import annotations

import types
from collections.abc import Iterable

import torch


def held_bytes(optimizer: object, exclude: Iterable[torch.Tensor] | None = None) -> int:
    """Bytes of the distinct tensor storages reachable from ``optimizer``, except those of its
    parameters, their gradients and ``exclude``."""
    params = [p for g in getattr(optimizer, "param_groups", []) for p in g["params"]]
    skip = {_key(t) for t in [*params, *(p.grad for p in params if p.grad is not None), *(exclude or [])]}
    seen_objects: set[int] = set()
    storages: dict[tuple, int] = {}
    stack: list[object] = [optimizer]
    while stack:
        obj = stack.pop()
        if id(obj) in seen_objects:
            continue
        seen_objects.add(id(obj))
        if isinstance(obj, torch.Tensor):
            if obj.device.type != "meta":
                key = _key(obj)
                if key not in skip:
                    storages[key] = obj.untyped_storage().nbytes()
            continue
        if isinstance(obj, (str, bytes, int, float, bool, type(None), torch.device, torch.dtype)):
            continue
        if isinstance(obj, (types.FunctionType, types.MethodType, types.ModuleType, type)):
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        else:
            d = getattr(obj, "__dict__", None)
            if isinstance(d, dict):
                stack.extend(d.values())
            for slot in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, slot):
                    stack.append(getattr(obj, slot))
    return sum(storages.values())


def _key(t: torch.Tensor) -> tuple:
    s = t.untyped_storage()
    return (t.device.type, t.device.index, s.data_ptr(), s.nbytes())


__all__ = ["held_bytes"]
