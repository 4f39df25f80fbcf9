"""Devices by name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``, with one-line errors.

``auto`` is the first accelerator present (CUDA, then MPS), else the CPU. A device that is named
but not present is an error found before any work starts (a study's preflight), never a crash
in the middle of a run.
"""

from __future__ import annotations

import torch

from nosplug.errors import UserError

DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(UserError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``name``; raises :class:`DeviceError` if it is not available here."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {name!r} is not a device name ({DEVICE_FORMS})") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r}: CUDA is not available on this machine (torch {torch.__version__})"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 ..)"
            )
        return dev
    if dev.type == "mps":
        if not _mps():
            raise DeviceError(f"device {name!r}: MPS is not available on this machine")
        return dev
    raise DeviceError(f"device {name!r} is not supported ({DEVICE_FORMS})")


def _mps() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def accelerators() -> list[torch.device]:
    """Every accelerator present: each CUDA device, then MPS."""
    out = (
        [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else []
    )
    if _mps():
        out.append(torch.device("mps"))
    return out
