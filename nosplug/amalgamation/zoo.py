"""Pretrained students shipped with the package: ``nosplug.amalgamation.pretrained(name, params)``.

Each student is one JSON file in ``nosplug/amalgamation/pretrained/`` (package data): the learned
optimizer's config, its weights as little-endian float32 bytes in base64 (exact, compact, and no
pickle: loading runs no code), and a ``training`` record of how it was made (the amalgamation
config, seed, nosplug and torch versions, meta-steps, periods, wall time, the rebuild command)
plus the figures measured when it was built. ``scripts/build_pretrained_students.py`` rebuilds
them.

    import nosplug.amalgamation as am
    am.pretrained_names()                           # ['choice-large', 'mean-large', 'minmax-large']
    opt = am.pretrained("choice-large", model.parameters())   # a torch.optim.Optimizer
    am.pretrained_info("choice-large")["training"]["meta_steps"]
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nosplug.errors import UserError

FORMAT = "nosplug-pretrained-student"
DIR = Path(__file__).resolve().parent / "pretrained"


class PretrainedError(KeyError, UserError):
    """No pretrained student of that name, or a file that is not one."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def encode(learned: nn.Module) -> dict[str, Any]:
    """The module's state dict as {name: {shape, data}} with float32 little-endian base64 data."""
    out = {}
    for k, v in learned.state_dict().items():
        arr = v.detach().to(torch.float32).contiguous().numpy().astype("<f4")
        out[k] = {"shape": list(v.shape), "data": base64.b64encode(arr.tobytes()).decode("ascii")}
    return out


def decode(weights: dict[str, Any]) -> dict[str, torch.Tensor]:
    import numpy as np

    return {
        k: torch.from_numpy(np.frombuffer(base64.b64decode(w["data"]), dtype="<f4").copy()).reshape(
            w["shape"]
        )
        for k, w in weights.items()
    }


def write(path: str | Path, learned: nn.Module, name: str, training: dict[str, Any], **extra: Any) -> Path:
    """Write a pretrained-student file (used by the build script)."""
    doc = {"format": FORMAT, "version": 1, "name": name, "config": learned.config(), "training": training,
           **extra, "weights": encode(learned)}  # fmt: skip
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def pretrained_names() -> list[str]:
    """Names of the shipped students."""
    return sorted(p.stem for p in DIR.glob("*.json"))


def pretrained_info(name: str) -> dict[str, Any]:
    """Everything in the student's file but its weights: config, training record, figures."""
    path = DIR / f"{name}.json"
    if not path.is_file():
        raise PretrainedError(
            f"no pretrained student {name!r} (shipped: {', '.join(pretrained_names()) or 'none'})"
        )
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT:
        raise PretrainedError(f"{path}: not a nosplug pretrained student")
    return doc


def pretrained(name: str, params=None, *, warmup: int | None = None, warmup_lr: float | None = None):
    """The shipped student ``name``: with ``params`` a ready ``torch.optim.Optimizer``
    (:class:`~nosplug.amalgamation.student.StudentOptimizer`), else the learned ``nn.Module``.

    ``warmup`` and ``warmup_lr`` default to the warm-up the student was meta-trained after (the
    SGD steps before its recurrent state starts to move, spec §1.3)."""
    from nosplug.amalgamation.student import StudentOptimizer, build_learned

    doc = pretrained_info(name)
    learned = build_learned(doc["config"])
    learned.load_state_dict(decode(doc["weights"]))
    if params is None:
        return learned
    meta = doc["training"]["config"]["meta"]
    return StudentOptimizer(
        params,
        learned,
        warmup=int(meta.get("warmup_steps", 100)) if warmup is None else warmup,
        warmup_lr=float(meta.get("warmup_lr", 0.05)) if warmup_lr is None else warmup_lr,
    )
