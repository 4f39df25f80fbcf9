"""Packages you can call: ``nosplug.benchmark(...)`` and ``nosplug.search(...)`` run one while
each stays a package whose modules import on their own (the initialiser imports nothing heavy;
the function is imported on the first call)."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


def make_callable(package: str, target: str) -> None:
    """Make the imported package ``package`` callable: calling it calls ``target``
    ("module:function"), imported when first called."""
    module_name, function = target.split(":")

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), function)(*args, **kwargs)

    CallablePackage.__doc__ = f"The package {package}, callable as {target}."
    sys.modules[package].__class__ = CallablePackage
