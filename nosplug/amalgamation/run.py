"""Amalgamation runs on Optuna storage: config, curriculum periods as trials, resumable checkpoints.

One run is one Optuna study (kind ``amalgamation``); every attempt at a curriculum period is one
trial whose value is the period's meta-validation loss (+inf when it is not finite: Optuna stores
no NaN), with the exact validation loss, the training loss, stage and checkpoint file in its user
attributes. Checkpoints (student weights, meta-optimizer and curriculum position, all tensors or
plain data) are written before the trial is told; every attempt at a period derives its random
stream from (run seed, stage, period, attempt), so a run killed at any moment resumes from its
last finished period and ends as an uninterrupted run would.

Divergence handling (spec §4.4, §4.6): a period that blew up is redone from the weights before it
(at most ``meta.max_repeats`` times, with a new random stream):

* the very first period of a phase has no reference and is judged only by the next rule;
* a non-finite validation loss is always a blow-up;
* curriculum (the student): the first period of a stage blew up if its *training* meta loss
  exceeds best + blowup·|best|, best = the previous stage's best validation loss; any other period
  if its validation loss exceeds prev + blowup·|prev|, prev = the previous period's (blowup 0.5);
* the choice optimizer's ``repeat`` strategy: every period by validation against the previous
  period's (blowup 0.9).

When the repeats are used up the last try is kept (and marked as a blow-up).

Device: ``run.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``; default ``auto``) or the
``device`` argument, which wins (``--device``). It is where a run trains, not what it computes,
so a run may resume on another device. A device that is not present is one error line before
anything trains or is stored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from nosplug.amalgamation.losses import AmalgamationLoss
from nosplug.amalgamation.problems import PROBLEMS, get_problem
from nosplug.amalgamation.student import LearnedTeacher, build_learned, save
from nosplug.amalgamation.teachers import Teacher, TeacherError, pool_members, resolve_teacher
from nosplug.amalgamation.train import MetaConfig, MetaTrainer, PeriodResult
from nosplug.errors import UserError
from nosplug.quiet import quiet_optuna
from nosplug.study import optuna_adapter
from nosplug.study.artifacts import check as check_artifacts
from nosplug.study.artifacts import publish_student
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
        "device": ((str,), "auto"),
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

    return resolve_device(device or raw["run"].get("device", "auto"))


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


# ----------------------------------------------------------------------------- storage
def create_run(path: str | Path, *, name: str | None = None, storage: str | None = None,
               checkpoint_dir: str | None = None) -> optuna.Study:  # fmt: skip
    raw = normalise(read_toml(path, AmalgamationConfigError), storage)
    if name:
        raw["run"]["name"] = name
    return create_run_from(raw, storage=storage, checkpoint_dir=checkpoint_dir)


def create_run_from(
    raw: dict[str, Any], *, storage: str | None = None, checkpoint_dir: str | None = None
) -> optuna.Study:
    """Create run ``raw["run"]["name"]`` from an already normalised config (see :func:`normalise`)."""
    from nosplug.study.runner import StudyExistsError, study_names
    from nosplug.study.storage import open_storage, shown_url, storage_url

    url = storage_url(storage)
    store = open_storage(url)
    run_name = raw["run"]["name"]
    if run_name in study_names(store):
        raise StudyExistsError(
            f"a study named {run_name!r} already exists in {shown_url(url)}; choose another with --name"
        )
    ckdir = Path(checkpoint_dir or Path("nosplug-amalgamation") / run_name).resolve()
    with quiet_optuna():
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


def _teachers_for(
    raw: dict[str, Any],
    ckdir: Path,
    phase: str,
    storage: str | None = None,
    device: torch.device | str = "cpu",
) -> list[Teacher]:
    if phase == "choice":
        return []
    loss = _loss(raw)
    if loss.single_teacher:
        from nosplug.amalgamation.student import load

        return [LearnedTeacher(load(ckdir / "choice").to(device))]
    if not loss.needs_teachers:
        return []
    horizon = teacher_horizon(raw)
    return [resolve_teacher(r, total_steps=horizon, storage=storage) for r in teacher_refs(raw["teachers"])]


def teacher_horizon(raw: dict[str, Any]) -> int:
    """Steps a teacher runs on one problem instance in meta-training (warm-up + longest depth):
    the run length a genome teacher's decay functions are scheduled over."""
    meta = meta_config(raw)
    return max(meta.warmups or (meta.warmup_steps,)) + max(meta.depths) * meta.unroll


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
        return learned, choice_config(raw), registry().get("amalgamation_losses", "none")
    learned = build_learned({"kind": raw["student"]["kind"], **raw["student"]["options"]})
    return learned, cfg, _loss(raw)


def choice_config(raw: dict[str, Any]) -> MetaConfig:
    """The choice optimizer's training (spec §4.6, strategy ``repeat``): one period per entry of
    ``choice.depths`` (each a stage of one period, so the stage's best is that period), meta loss
    only, no perturbation, ``choice.instances`` instances per period, no warm-up in the first
    period and then ``meta.warmup_steps`` (the warm-up it later sees as a teacher, so its time
    feature matches), validation of depth ``choice.val_depth`` on ``choice.val_instances``
    instance(s), repeated above prev + ``choice.blowup``·|prev|."""
    choice = raw["choice"]
    cfg = meta_config(raw)
    return replace(
        cfg,
        depths=tuple(choice["depths"]),
        warmups=(choice["first_warmup"], cfg.warmup_steps),
        alphas=(0.0,),
        instances=choice["instances"],
        val_depths=(choice["val_depth"],),
        val_instances=choice["val_instances"],
        blowup=float(choice["blowup"]),
        min_periods=1,
        max_periods=1,
        perturbation="none",
    )


def run(
    name: str,
    storage: str | None = None,
    *,
    max_periods: int | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    artifacts: str | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train (or resume) amalgamation run ``name`` on ``device`` (default: the config's
    ``run.device``, else ``auto``); returns a summary. The trained student is attached to the run's
    study as Optuna artifacts (store: ``artifacts``, see
    :func:`nosplug.study.storage.artifacts_url`), once, however often the run is repeated."""
    study = load_run(name, storage)
    raw = study.user_attrs[CONFIG_ATTR]
    dev = resolve_run_device(raw, device)  # a missing device fails before anything trains
    check_artifacts(storage, artifacts)  # a bad artifact store fails now, not after meta-training
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
    budget = _Budget(max_periods)
    for phase in phases(raw):
        if (ckdir / f"{phase}.json").exists():
            continue
        if not _run_phase(study, raw, phase, ckdir, budget, emit, storage, dev):
            return {"done": False, "periods": budget.done}
        emit({"event": "phase_done", "phase": phase})
    study.set_user_attr("nosplug.student", str(ckdir / "student"))
    emit({"event": "artifacts", "line": publish_student(study, ckdir / "student", storage, artifacts).line()})
    return {"done": True, "periods": budget.done, "student": str(ckdir / "student")}


@dataclass
class _Budget:
    """Periods this call may still finish (``--max-periods``); repeats do not count."""

    limit: int | None
    done: int = 0

    def exhausted(self) -> bool:
        return self.limit is not None and self.done >= self.limit


@dataclass(frozen=True)
class BlowUp:
    """Why a period counts as blown up: which loss was compared, its value, the reference and the
    limit ref + blowup·|ref| (NaN when there was no comparison: a non-finite validation loss)."""

    compared: str  # "training" | "validation"
    value: float
    ref: float
    limit: float


def blow_up(cur: dict[str, Any], res: PeriodResult, blowup: float, curriculum: bool) -> BlowUp | None:
    """The divergence rules of the module docstring for period ``cur`` with result ``res``."""
    if not math.isfinite(res.val_loss):
        prev = cur.get("prev_val")
        return BlowUp("validation", res.val_loss, math.nan if prev is None else prev, math.nan)
    if curriculum and cur["period"] == 0:
        compared, value, ref = "training", res.train_loss, cur.get("stage_ref")
    else:
        compared, value, ref = "validation", res.val_loss, cur.get("prev_val")
    if ref is None or not math.isfinite(ref):  # the very first period, or after a kept blow-up
        return None
    limit = ref + blowup * abs(ref)
    return None if value <= limit else BlowUp(compared, value, ref, limit)


def _score(value: float | None) -> float:
    """Ordering of validation losses: a non-finite one is never better than a finite one."""
    return math.inf if value is None or not math.isfinite(value) else value


def _storable(value: float) -> float:
    """A trial value Optuna accepts (it fails a trial told NaN); the user attribute keeps the NaN."""
    return math.inf if math.isnan(value) else value


def _new_curriculum() -> dict[str, Any]:
    return {"stage": 0, "period": 0, "best": None, "best_period": -1, "prev_val": None, "stage_ref": None,
            "repeats": 0, "index": 0}  # fmt: skip


def _run_phase(
    study: optuna.Study,
    raw: dict[str, Any],
    phase: str,
    ckdir: Path,
    budget: _Budget,
    emit: Callable[[dict[str, Any]], None],
    storage: str | None = None,
    device: torch.device | str = "cpu",
) -> bool:
    """Train one phase on ``device`` to the end (True) or until the budget is spent (False)."""
    # the learned optimizer's initial weights: drawn on the CPU, the same on every device
    torch.manual_seed(raw["run"]["seed"] * 7919 + len(phase))
    learned, cfg, loss = _phase_setup(raw, phase, ckdir)
    teachers = _teachers_for(raw, ckdir, phase, storage, device)
    seed = raw["run"]["seed"] + (1 if phase == "choice" else 0)
    problem = get_problem(raw["run"]["problem"])
    trainer = MetaTrainer(learned, teachers, loss, cfg, problem, seed=seed, device=device)
    curriculum = phase == "student"  # the choice optimizer's strategy is ``repeat`` (spec §4.6)
    cur = _new_curriculum()
    last = _last_checkpoint(study, phase)
    if last is not None:
        sd = torch.load(last, weights_only=True, map_location="cpu")
        trainer.load_state_dict(sd["trainer"])
        cur = {**cur, **sd["curriculum"]}
        emit({"event": "resumed", "phase": phase, "checkpoint": str(last), **cur})
    while cur["stage"] < len(cfg.depths):
        if budget.exhausted():
            return False
        before = trainer.state_dict()
        trial = study.ask()
        attrs = {"phase": phase, "stage": cur["stage"], "period": cur["period"], "index": cur["index"],
                 "attempt": cur["repeats"]}  # fmt: skip
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        t0 = time.perf_counter()
        res = trainer.period(
            cur["stage"],
            period=cur["period"],
            attempt=cur["repeats"],
            on_step=lambda i, v: emit({"event": "meta_step", "step": i, "loss": v}),
        )
        blew = blow_up(cur, res, cfg.blowup, curriculum)
        record = {"train_loss": res.train_loss, "val_loss": res.val_loss, "meta_steps": res.meta_steps,
                  "seconds": time.perf_counter() - t0, "diverged_instances": res.diverged_instances,
                  "blowup": blew is not None}  # fmt: skip
        if blew is not None and cur["repeats"] < cfg.max_repeats:
            trainer.load_state_dict(before)
            cur["repeats"] += 1
            _tell(study, trial, {**record, "repeated": True, "compared": blew.compared, "ref": blew.ref}, [])
            emit({"event": "repeat", **attrs, "compared": blew.compared, "value": blew.value, "ref": blew.ref,
                  "limit": blew.limit, "val_loss": res.val_loss, "train_loss": res.train_loss,
                  "max_repeats": cfg.max_repeats})  # fmt: skip
            continue
        path = _finish_period(trainer, cur, res, cfg, ckdir / f"{phase}-{cur['index']:04d}.ckpt")
        _tell(study, trial, {**record, "checkpoint": str(path)}, res.history)
        budget.done += 1
        emit({"event": "period", **attrs, "val_loss": res.val_loss, "train_loss": res.train_loss,
              "blowup": blew is not None})  # fmt: skip
    save(trainer.learned, ckdir / phase, extra={"run": study.study_name, "phase": phase})
    return True


def _finish_period(
    trainer: MetaTrainer, cur: dict[str, Any], res: PeriodResult, cfg: MetaConfig, path: Path
) -> Path:
    """Advance the curriculum past a kept period, checkpoint it, and end the stage when it is due
    (reload the stage's best-validation checkpoint; its best becomes the next stage's reference)."""
    cur["repeats"] = 0
    if cur["best"] is None or _score(res.val_loss) < _score(cur["best"]):
        cur["best"], cur["best_period"], cur["best_path"] = res.val_loss, cur["period"], str(path)
    cur["prev_val"] = res.val_loss
    cur["period"] += 1
    cur["index"] += 1
    torch.save({"trainer": trainer.state_dict(), "curriculum": dict(cur)}, path)
    if _stage_over(cur, cfg):
        best = torch.load(cur["best_path"], weights_only=True, map_location="cpu")
        trainer.load_state_dict(best["trainer"])
        cur.update(
            stage=cur["stage"] + 1, period=0, stage_ref=cur["best"], best=None, best_period=-1, repeats=0
        )
        torch.save({"trainer": trainer.state_dict(), "curriculum": dict(cur)}, path)
    return path


def _stage_over(cur: dict[str, Any], cfg: MetaConfig) -> bool:
    """At least ``min_periods`` done and the stage's best more than ``patience`` periods old, or
    ``max_periods`` done."""
    stale = cur["period"] - cur["best_period"] > cfg.patience
    return (cur["period"] >= cfg.min_periods and stale) or cur["period"] >= cfg.max_periods


def _tell(study: optuna.Study, trial: optuna.Trial, record: dict[str, Any], history: list[float]) -> None:
    for k, v in record.items():
        trial.set_user_attr(k, v)
    for i, v in enumerate(history):
        trial.report(v, i)
    study.tell(trial, _storable(record["val_loss"]))


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
