"""Amalgamation run configs (TOML or a dict), validated once with errors that name the key.

Sections: ``[run]`` (name, seed, problem, device), ``[student]``, ``[teachers]``, ``[loss]``,
``[choice]`` (the choice optimizer's own training, spec §4.6), ``[evaluation]`` and ``[meta]``
(any :class:`~nosplug.amalgamation.train.MetaConfig` field). ``study:`` teachers are looked up in
the storage the run is created in.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from nosplug.amalgamation.problems import PROBLEMS
from nosplug.amalgamation.teachers import TeacherError, pool_members, resolve_teacher
from nosplug.amalgamation.train import MetaConfig
from nosplug.config import DEFAULT_DEVICE
from nosplug.errors import UserError
from nosplug.tomlconfig import check_sections


class AmalgamationConfigError(ValueError, UserError):
    """A malformed amalgamation config; the message names the key."""


_SECTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "run": {
        "name": ((str,), None),
        "seed": ((int,), 0),
        "description": ((str,), ""),
        "problem": ((str,), "mlp"),
        "device": ((str,), DEFAULT_DEVICE),
    },
    "student": {"kind": ((str,), "rnnprop"), "options": ((dict,), {})},
    "teachers": {"pool": ((str,), "small"), "refs": ((list,), [])},
    "loss": {"name": ((str,), "minmax")},
    # the choice optimizer's own training, spec §4.6 (truncation and later warm-ups: meta.unroll,
    # meta.warmup_steps; validation seed and repeats: meta.val_seed, meta.max_repeats)
    "choice": {
        "pool": ((str,), "small"),
        "refs": ((list,), []),
        "depths": ((list,), [1, 2, 5, 5, 5]),
        "instances": ((int,), 10),
        "val_depth": ((int,), 10),
        "val_instances": ((int,), 1),
        "blowup": ((int, float), 0.9),
        "first_warmup": ((int,), 0),
    },
    "evaluation": {
        "problems": ((list,), ["mlp", "mlp_deeper", "mlp_wider", "mlp_relu", "digits_mlp"]),
        "runs": ((int,), 3),
        "epochs": ((int,), 25),
        "teachers": ((list,), []),
    },
}


def normalise(data: dict[str, Any], storage: str | None = None) -> dict[str, Any]:
    """Validate an amalgamation config (errors name the key path) and fill defaults; ``study:``
    teachers are looked up in ``storage``."""
    out: dict[str, Any] = {"version": 1}
    out.update(check_sections(data, _SECTIONS, AmalgamationConfigError, free_sections=("meta",)))
    meta = data.get("meta", {})
    known = {f.name: f for f in fields(MetaConfig)}
    for key, value in meta.items():
        if key not in known:
            raise AmalgamationConfigError(f"meta.{key}: unknown key (known: {', '.join(known)})")
        default = getattr(MetaConfig(), key)
        if not _same_kind(value, default):
            raise AmalgamationConfigError(f"meta.{key}: expected {type(default).__name__}, got {value!r}")
    out["meta"] = dict(meta)
    cfg = meta_config(out)
    if cfg.perturbation not in ("none", "random", "adversarial"):
        raise AmalgamationConfigError("meta.perturbation: choose none, random or adversarial")
    if cfg.unroll < 2 or cfg.instances < 1 or cfg.min_periods < 1 or cfg.max_periods < cfg.min_periods:
        raise AmalgamationConfigError("meta: unroll >= 2, instances >= 1, 1 <= min_periods <= max_periods")
    for where, name in (
        ("run.problem", out["run"]["problem"]),
        *(("evaluation.problems", p) for p in out["evaluation"]["problems"]),
    ):
        if name not in PROBLEMS:
            raise AmalgamationConfigError(f"{where}: unknown problem {name!r} (known: {', '.join(PROBLEMS)})")
    try:
        check_device_name(out["run"]["device"])
    except UserError as exc:
        raise AmalgamationConfigError(f"run.device: {exc}") from None
    if PROBLEMS[out["run"]["problem"]].dp is not None:
        raise AmalgamationConfigError(
            f"run.problem: {out['run']['problem']!r} has DP gradients and is an evaluation problem only"
        )
    from nosplug.primitives.registry import UnknownPrimitiveError, registry

    try:
        loss = registry().get("amalgamation_losses", out["loss"]["name"])
        registry().get("students", out["student"]["kind"])
    except UnknownPrimitiveError as exc:
        raise AmalgamationConfigError(f"loss/student: {exc}") from None
    _check_schedules(cfg, out["choice"])
    for section in ("teachers", "choice"):
        try:
            refs = teacher_refs(out[section])
        except TeacherError as exc:
            raise AmalgamationConfigError(f"{section}.pool: {exc}") from None
        for ref in refs:
            try:
                resolve_teacher(ref, total_steps=1000, storage=storage)
            except UserError as exc:
                raise AmalgamationConfigError(f"{section}.refs: {exc}") from None
    if loss.needs_teachers and not loss.single_teacher and not teacher_refs(out["teachers"]):
        raise AmalgamationConfigError("teachers: the loss needs teachers")
    return out


def check_device_name(name: str) -> None:
    """Refuse a string that names no device at all (``cdua``, ``cuda:x``); whether the device is
    present is checked where the run trains (:func:`resolve_run_device`), which may be another
    machine than the one that created it."""
    from nosplug.tasks.devices import DEVICE_FORMS, DeviceError

    if name.strip().lower() == "auto":
        return
    try:
        dev = torch.device(name.strip().lower())
    except RuntimeError:
        raise DeviceError(f"{name!r} is not a device name ({DEVICE_FORMS})") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {name!r} is not supported ({DEVICE_FORMS})")


def resolve_run_device(raw: dict[str, Any], device: str | torch.device | None = None) -> torch.device:
    """The device a run trains on: ``device`` (the command line's), else the config's
    ``run.device``, else ``auto``; a device not present here raises
    :class:`~nosplug.tasks.devices.DeviceError` (one line)."""
    from nosplug.tasks.devices import resolve_device

    return resolve_device(device or raw["run"].get("device", DEFAULT_DEVICE))


def _check_schedules(cfg: MetaConfig, choice: dict[str, Any]) -> None:
    """Counts and factors that only make sense in a range (checked here, before anything is stored)."""
    if any(not isinstance(w, int) or isinstance(w, bool) or w < 0 for w in cfg.warmups):
        raise AmalgamationConfigError("meta.warmups: warm-up steps per stage, integers >= 0")
    if min(choice["instances"], choice["val_depth"], choice["val_instances"]) < 1:
        raise AmalgamationConfigError("choice: instances, val_depth and val_instances must be >= 1")
    if choice["first_warmup"] < 0 or choice["blowup"] < 0:
        raise AmalgamationConfigError("choice: first_warmup and blowup must be >= 0")


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        return isinstance(value, list)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def teacher_refs(section: dict[str, Any]) -> list[str]:
    """The explicit ``refs``, else the members of ``pool`` (plugin teachers that list it included)."""
    return list(section["refs"]) or pool_members(section["pool"])


def meta_config(raw: dict[str, Any]) -> MetaConfig:
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["meta"].items()}
    return MetaConfig(**kw)
