"""torchvision, imported only where it is needed (CIFAR loaders, the EfficientNetV2 surrogate).

torchvision's wheels are built against one torch build: a CPU torch (``2.13.0+cpu``) beside the
registry's torchvision (built for the CUDA torch) fails on ``import torchvision`` with
``RuntimeError: operator torchvision::nms does not exist``, deep inside whatever imported it.
:func:`import_torchvision` turns that into one line naming the installed pair and the command
that installs the matching build. Nothing else in nosplug imports torchvision.
"""

from __future__ import annotations

import importlib
import re
from importlib import metadata
from types import ModuleType

from nosplug.errors import UserError

#: torchvision 0.(N+15) goes with torch 2.N (0.18 with 2.3, ..., 0.29 with 2.14).
_MINOR_OFFSET = 15


class TorchvisionMismatchError(ImportError, UserError):
    """torchvision cannot be imported with the installed torch (a mismatched pair)."""


def import_torchvision(module: str = "torchvision") -> ModuleType:
    """Import ``module`` (``torchvision`` or one of its submodules); a torchvision that does not
    match the installed torch is one error line naming both versions and the fix."""
    try:
        return importlib.import_module(module)
    except (RuntimeError, ImportError, AttributeError, OSError) as exc:
        raise TorchvisionMismatchError(mismatch_message(exc)) from None


def mismatch_message(exc: BaseException) -> str:
    """One line: what failed, the installed pair, and the command that installs a matching pair."""
    torch_v, vision_v = _version("torch"), _version("torchvision")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return (
        f"cannot import torchvision ({type(exc).__name__}: {first}); installed: torch {torch_v}, "
        f"torchvision {vision_v}, which do not match (torchvision must be built for this torch); "
        f"fix: {fix_command(torch_v)}"
    )


def fix_command(torch_version: str) -> str:
    """The pip command that installs the torchvision built for ``torch_version`` (from the same
    index: PyTorch's for a ``+cpu`` / ``+cuXXX`` build, else PyPI)."""
    m = re.match(r"^2\.(\d+)\.\d+(?:\+(\w+))?", torch_version)
    if m is None:
        return "pip install --force-reinstall torch torchvision (both from the same index)"
    wanted = f"0.{int(m.group(1)) + _MINOR_OFFSET}.*"
    index = f" --index-url https://download.pytorch.org/whl/{m.group(2)}" if m.group(2) else ""
    return f'pip install --force-reinstall --no-deps "torchvision=={wanted}"{index}'


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"
