"""Amalgamation runs on Optuna storage: config, curriculum periods as trials, resumable checkpoints.

One run is one Optuna study (kind ``amalgamation``); every curriculum period is one trial whose
value is the period's meta-validation loss, with the training loss, stage and checkpoint file in
its user attributes. Checkpoints (student weights, meta-optimizer, random state and curriculum
position, all tensors or plain data) are written before the trial is told, so a run killed at any
moment resumes from its last finished period with the same random stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from nosplug.amalgamation.losses import AmalgamationLoss
from nosplug.amalgamation.problems import PROBLEMS, get_problem
from nosplug.amalgamation.student import build_learned, save
from nosplug.amalgamation.teachers import POOLS, Teacher, resolve_teacher
from nosplug.amalgamation.train import MetaConfig, MetaTrainer
from nosplug.errors import UserError
from nosplug.study import optuna_adapter
from nosplug.tomlconfig import check_sections, read_toml

KIND = "amalgamation"
CONFIG_ATTR = "nosplug.config"
KIND_ATTR = "nosplug.kind"
DIR_ATTR = "nosplug.checkpoint_dir"


class AmalgamationConfigError(ValueError, UserError):
    """A malformed amalgamation config; the message names the key."""


_SECTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "run": {
        "name": ((str,), None),
        "seed": ((int,), 0),
        "description": ((str,), ""),
        "problem": ((str,), "mlp"),
    },
    "student": {"kind": ((str,), "rnnprop"), "options": ((dict,), {})},
    "teachers": {"pool": ((str,), "small"), "refs": ((list,), [])},
    "loss": {"name": ((str,), "minmax")},
    "choice": {"pool": ((str,), "small"), "refs": ((list,), []), "depths": ((list,), [1, 2, 5, 5, 5])},
    "evaluation": {
        "problems": ((list,), ["mlp", "mlp_deeper", "mlp_wider", "mlp_relu", "digits_mlp"]),
        "runs": ((int,), 3),
        "epochs": ((int,), 25),
        "teachers": ((list,), []),
    },
}


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """Validate an amalgamation config (errors name the key path) and fill defaults."""
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
    from nosplug.primitives.registry import UnknownPrimitiveError, registry

    try:
        loss = registry().get("amalgamation_losses", out["loss"]["name"])
        registry().get("students", out["student"]["kind"])
    except UnknownPrimitiveError as exc:
        raise AmalgamationConfigError(f"loss/student: {exc}") from None
    for section in ("teachers", "choice"):
        if out[section]["pool"] not in POOLS:
            raise AmalgamationConfigError(f"{section}.pool: choose {', '.join(POOLS)}")
        for ref in teacher_refs(out[section]):
            try:
                resolve_teacher(ref, total_steps=1000)
            except UserError as exc:
                raise AmalgamationConfigError(f"{section}.refs: {exc}") from None
    if loss.needs_teachers and not loss.single_teacher and not teacher_refs(out["teachers"]):
        raise AmalgamationConfigError("teachers: the loss needs teachers")
    return out


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        return isinstance(value, list)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def teacher_refs(section: dict[str, Any]) -> list[str]:
    return list(section["refs"]) or list(POOLS[section["pool"]])


def meta_config(raw: dict[str, Any]) -> MetaConfig:
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw["meta"].items()}
    return MetaConfig(**kw)


class LearnedTeacher(Teacher):
    """A trained learned optimizer (the choice optimizer) used as a teacher; never differentiated."""

    def __init__(self, learned: torch.nn.Module, name: str = "choice") -> None:
        self.learned, self.name, self.lr = learned.requires_grad_(False), name, 1.0

    def init(self, theta):
        st = self.learned.init_state(theta.numel(), theta)
        return st

    def step(self, g, state, theta):
        with torch.no_grad():
            return self.learned(g, state)


# ----------------------------------------------------------------------------- storage
def create_run(path: str | Path, *, name: str | None = None, storage: str | None = None,
               checkpoint_dir: str | None = None) -> optuna.Study:  # fmt: skip
    from nosplug.study.runner import StudyExistsError, study_names
    from nosplug.study.storage import open_storage, shown_url, storage_url

    raw = normalise(read_toml(path, AmalgamationConfigError))
    if name:
        raw["run"]["name"] = name
    url = storage_url(storage)
    store = open_storage(url)
    run_name = raw["run"]["name"]
    if run_name in study_names(store):
        raise StudyExistsError(
            f"a study named {run_name!r} already exists in {shown_url(url)}; choose another with --name"
        )
    ckdir = Path(checkpoint_dir or Path("nosplug-amalgamation") / run_name).resolve()
    study = optuna.create_study(study_name=run_name, storage=store, direction="minimize")
    study.set_user_attr(KIND_ATTR, KIND)
    study.set_user_attr(CONFIG_ATTR, raw)
    study.set_user_attr(DIR_ATTR, str(ckdir))
    return study


def load_run(name: str, storage: str | None = None) -> optuna.Study:
    from nosplug.study.runner import load

    study = load(name, storage)
    if study.user_attrs.get(KIND_ATTR) != KIND:
        raise UserError(f"study {name!r} is not an amalgamation run")
    return study


def _teachers_for(raw: dict[str, Any], ckdir: Path, phase: str) -> list[Teacher]:
    if phase == "choice":
        return []
    loss = _loss(raw)
    if loss.single_teacher:
        from nosplug.amalgamation.student import load

        return [LearnedTeacher(load(ckdir / "choice"))]
    if not loss.needs_teachers:
        return []
    horizon = teacher_horizon(raw)
    return [resolve_teacher(r, total_steps=horizon) for r in teacher_refs(raw["teachers"])]


def teacher_horizon(raw: dict[str, Any]) -> int:
    """Steps a teacher runs on one problem instance in meta-training (warm-up + longest depth):
    the run length a genome teacher's decay functions are scheduled over."""
    meta = meta_config(raw)
    return meta.warmup_steps + max(meta.depths) * meta.unroll


def _loss(raw: dict[str, Any]) -> AmalgamationLoss:
    from nosplug.primitives.registry import registry

    return registry().get("amalgamation_losses", raw["loss"]["name"])


def phases(raw: dict[str, Any]) -> list[str]:
    return ["choice", "student"] if _loss(raw).single_teacher else ["student"]


def _phase_setup(
    raw: dict[str, Any], phase: str, ckdir: Path
) -> tuple[torch.nn.Module, MetaConfig, AmalgamationLoss]:
    from nosplug.primitives.registry import registry

    cfg = meta_config(raw)
    if phase == "choice":
        learned = build_learned({"kind": "choice", "pool": teacher_refs(raw["choice"])})
        depths = tuple(raw["choice"]["depths"])
        cfg = MetaConfig(**{**asdict(cfg), "depths": depths, "val_depths": (10,), "alphas": (0.0,),
                            "min_periods": 1, "max_periods": 1, "perturbation": "none"})  # fmt: skip
        return learned, cfg, registry().get("amalgamation_losses", "none")
    learned = build_learned({"kind": raw["student"]["kind"], **raw["student"]["options"]})
    return learned, cfg, _loss(raw)


def run(
    name: str,
    storage: str | None = None,
    *,
    max_periods: int | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume) amalgamation run ``name``; returns a summary."""
    study = load_run(name, storage)
    raw = study.user_attrs[CONFIG_ATTR]
    ckdir = Path(study.user_attrs[DIR_ATTR])
    ckdir.mkdir(parents=True, exist_ok=True)
    emit = on_event or (lambda e: None)
    # Subnormal floats appear when a learned optimizer's updates underflow and can slow CPU
    # arithmetic a hundredfold; they carry no information here, so flush them to zero.
    torch.set_flush_denormal(True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        optuna_adapter.set_attr(study, t, "abandoned", True)
        optuna_adapter.fail(study, t)  # killed mid-period
        emit({"event": "abandoned", "trial": t.number})
    done_periods = 0
    for phase in phases(raw):
        if (ckdir / f"{phase}.json").exists():
            continue
        torch.manual_seed(raw["run"]["seed"] * 7919 + len(phase))  # the learned optimizer's initial weights
        learned, cfg, loss = _phase_setup(raw, phase, ckdir)
        teachers = _teachers_for(raw, ckdir, phase)
        seed = raw["run"]["seed"] + (1 if phase == "choice" else 0)
        trainer = MetaTrainer(learned, teachers, loss, cfg, get_problem(raw["run"]["problem"]), seed=seed)
        cur = {
            "stage": 0,
            "period": 0,
            "best": None,
            "best_period": -1,
            "prev_val": None,
            "repeats": 0,
            "index": 0,
        }
        last = _last_checkpoint(study, phase)
        if last is not None:
            sd = torch.load(last, weights_only=True)
            trainer.load_state_dict(sd["trainer"])
            cur = sd["curriculum"]
            emit({"event": "resumed", "phase": phase, "checkpoint": str(last), **cur})
        while cur["stage"] < len(cfg.depths):
            if max_periods is not None and done_periods >= max_periods:
                return {"done": False, "periods": done_periods}
            before = trainer.state_dict()
            trial = study.ask()
            attrs = {"phase": phase, "stage": cur["stage"], "period": cur["period"], "index": cur["index"]}
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            t0 = time.perf_counter()
            res = trainer.period(
                cur["stage"], on_step=lambda i, v: emit({"event": "meta_step", "step": i, "loss": v})
            )
            ref = cur["prev_val"]
            blew = ref is not None and res.val_loss > ref + cfg.blowup * abs(ref)
            if blew and cur["repeats"] < cfg.max_repeats:
                trainer.load_state_dict(before)
                cur["repeats"] += 1
                trial.set_user_attr("repeated", True)
                study.tell(trial, res.val_loss, state=TrialState.COMPLETE)
                emit({"event": "repeat", "phase": phase, "val_loss": res.val_loss, "ref": ref})
                continue
            cur["repeats"] = 0
            path = ckdir / f"{phase}-{cur['index']:04d}.ckpt"
            if cur["best"] is None or res.val_loss < cur["best"]:
                cur["best"], cur["best_period"], cur["best_path"] = res.val_loss, cur["period"], str(path)
            cur["prev_val"] = res.val_loss
            cur["period"] += 1
            cur["index"] += 1
            stage_over = (
                cur["period"] >= cfg.min_periods and cur["period"] - cur["best_period"] > cfg.patience
            ) or (cur["period"] >= cfg.max_periods)
            torch.save({"trainer": trainer.state_dict(), "curriculum": dict(cur)}, path)
            if stage_over:
                best = torch.load(cur["best_path"], weights_only=True)
                trainer.load_state_dict(best["trainer"])
                cur.update(stage=cur["stage"] + 1, period=0, best=None, best_period=-1, repeats=0)
                torch.save({"trainer": trainer.state_dict(), "curriculum": dict(cur)}, path)
            for k, v in {"train_loss": res.train_loss, "val_loss": res.val_loss, "meta_steps": res.meta_steps,
                         "checkpoint": str(path), "seconds": time.perf_counter() - t0,
                         "diverged_instances": res.diverged_instances}.items():  # fmt: skip
                trial.set_user_attr(k, v)
            for i, v in enumerate(res.history):
                trial.report(v, i)
            study.tell(trial, res.val_loss)
            done_periods += 1
            emit(
                {
                    "event": "period",
                    "phase": phase,
                    **attrs,
                    "val_loss": res.val_loss,
                    "train_loss": res.train_loss,
                }
            )
        save(trainer.learned, ckdir / phase, extra={"run": name, "phase": phase})
        emit({"event": "phase_done", "phase": phase})
    study.set_user_attr("nosplug.student", str(ckdir / "student"))
    return {"done": True, "periods": done_periods, "student": str(ckdir / "student")}


def _last_checkpoint(study: optuna.Study, phase: str) -> Path | None:
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.user_attrs.get("phase") == phase
        and "checkpoint" in t.user_attrs
        and not t.user_attrs.get("repeated")
    ]
    if not done:
        return None
    path = Path(max(done, key=lambda t: t.number).user_attrs["checkpoint"])
    if not path.is_file():
        raise UserError(f"checkpoint {path} recorded in the study is missing; cannot resume")
    return path
