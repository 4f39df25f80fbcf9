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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from nosplug.amalgamation.config import (
    AmalgamationConfigError,
    meta_config,
    normalise,
    resolve_run_device,
    teacher_refs,
)
from nosplug.amalgamation.losses import AmalgamationLoss
from nosplug.amalgamation.problems import get_problem
from nosplug.amalgamation.student import LearnedTeacher, build_learned, save
from nosplug.amalgamation.teachers import Teacher, resolve_teacher
from nosplug.amalgamation.train import MetaConfig, MetaTrainer, PeriodResult
from nosplug.errors import UserError
from nosplug.study import optuna_adapter
from nosplug.study import trials as T
from nosplug.study.artifacts import check as check_artifacts
from nosplug.study.artifacts import publish_student
from nosplug.tomlconfig import read_toml

KIND = "amalgamation"
CONFIG_ATTR, KIND_ATTR = T.CONFIG_ATTR, T.KIND_ATTR
DIR_ATTR = "nosplug.checkpoint_dir"


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
    from nosplug.study.studies import create_study

    run_name = raw["run"]["name"]
    ckdir = Path(checkpoint_dir or Path("nosplug-amalgamation") / run_name).resolve()
    return create_study(
        run_name, KIND, raw, storage=storage, direction="minimize", attrs={DIR_ATTR: str(ckdir)},
        what="amalgamation run",
    )  # fmt: skip


def load_run(name: str, storage: str | None = None) -> optuna.Study:
    from nosplug.study.studies import load

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
    # arithmetic a hundredfold; they carry no information here, so flush them to zero, while the
    # run trains only (torch's default, off, is back afterwards: a library call leaves the
    # process's arithmetic as it found it).
    torch.set_flush_denormal(True)
    try:
        return _train(study, raw, ckdir, dev, emit, max_periods, storage, artifacts)
    finally:
        torch.set_flush_denormal(False)


def _train(study, raw, ckdir, dev, emit, max_periods, storage, artifacts) -> dict[str, Any]:
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
