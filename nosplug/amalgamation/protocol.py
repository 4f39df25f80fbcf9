"""The paper's evaluation protocol with replicates (spec §6.1), stored in Optuna and resumable.

A *protocol* compares methods. Each method is an amalgamation config (mean, min-max, choice, a
learned-optimizer baseline ...) meta-trained ``replicates`` times independently: replicate r is
its own amalgamation run ``PROTOCOL.METHOD.rR`` in the same storage, with ``run.seed = seed + r``
(so replicate r of every method starts from the same student weights and problem instances:
common random numbers). Every replicate, and every teacher of ``evaluation.teachers`` (a teacher
has nothing to meta-train: one replicate), is then evaluated on every problem with ``runs`` runs of
``epochs`` epochs; run k uses the same initialisation, batch order and DP noise seed for every
optimizer.

Storage: the protocol is one Optuna study (kind ``amalgamation-protocol``) holding its resolved
config (each method's full amalgamation config, so a resume needs no files) and one trial per
(method, replicate, problem, run), value = best log validation loss, metrics and the per-epoch
curve as user attributes. A killed protocol resumes: finished meta-training periods and
evaluations are never redone; a trial left running by a dead process is marked failed and its
evaluation redone. :func:`export` writes the Parquet file of :data:`SCHEMA`.

Device: ``protocol.device`` (default ``auto``) or the ``device`` argument (``--device``) is where
the whole protocol trains, every replicate's meta-training and every evaluation (a method
config's ``run.device`` is not used here). It is not part of the protocol's identity: a protocol
may resume on another device, and a changed device in the config is not a changed config.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from optuna.trial import TrialState

from nosplug.amalgamation import run as amrun
from nosplug.amalgamation.evaluate import (
    learned_stepper,
    run_metrics,
    steps_per_epoch,
    teacher_stepper,
    train_problem,
)
from nosplug.amalgamation.problems import PAPER_PROBLEMS, PROBLEMS, get_problem
from nosplug.amalgamation.teachers import resolve_teacher
from nosplug.errors import UserError
from nosplug.quiet import quiet_optuna
from nosplug.study import optuna_adapter
from nosplug.tomlconfig import check_sections, read_toml

KIND = "amalgamation-protocol"
TEACHER = "teacher"
STUDENT = "student"
#: A diverged run (no finite validation loss) scores chance level on the 10-class problems:
#: log of the cross-entropy of a uniform guess, log(ln 10). Statistics need finite values and a
#: diverged run must count as bad, never be dropped.
DIVERGED_LOG_VAL = math.log(math.log(10.0))
LARGE_POOL = ["adam", "rmsprop", "sgd", "momentum", "addsign", "powersign"]


class ProtocolConfigError(ValueError, UserError):
    """A malformed protocol config; the message names the key."""


_SECTIONS: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "protocol": {
        "name": ((str,), None),
        "replicates": ((int,), 3),
        "seed": ((int,), 0),
        "description": ((str,), ""),
        "device": ((str,), "auto"),
    },
    "evaluation": {
        "problems": ((list,), list(PAPER_PROBLEMS)),
        "runs": ((int,), 3),
        "epochs": ((int,), 25),
        "teachers": ((list,), LARGE_POOL),
    },
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = (
            _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
        )
    return out


def load_config(path: str | Path, storage: str | None = None) -> dict[str, Any]:
    """Read and resolve a protocol TOML: ``[protocol]``, ``[evaluation]``, ``[overrides]`` (merged
    into every method's config) and one ``[methods.NAME]`` table per method with ``config`` (an
    amalgamation TOML, relative to this file) and optional ``overrides``."""
    path = Path(path)
    data = read_toml(path, ProtocolConfigError)
    out = check_sections(data, _SECTIONS, ProtocolConfigError, free_sections=("methods", "overrides"))
    if out["protocol"]["replicates"] < 1 or out["evaluation"]["runs"] < 1 or out["evaluation"]["epochs"] < 1:
        raise ProtocolConfigError("protocol.replicates, evaluation.runs and evaluation.epochs must be >= 1")
    try:
        amrun.check_device_name(out["protocol"]["device"])
    except UserError as exc:
        raise ProtocolConfigError(f"protocol.device: {exc}") from None
    for p in out["evaluation"]["problems"]:
        if p not in PROBLEMS:
            raise ProtocolConfigError(
                f"evaluation.problems: unknown problem {p!r} (known: {', '.join(PROBLEMS)})"
            )
    for ref in out["evaluation"]["teachers"]:
        try:
            resolve_teacher(ref, total_steps=1000, storage=storage)
        except UserError as exc:
            raise ProtocolConfigError(f"evaluation.teachers: {exc}") from None
    overrides = data.get("overrides", {})
    methods = data.get("methods", {})
    if not isinstance(methods, dict) or not methods:
        raise ProtocolConfigError("methods: at least one [methods.NAME] table with a config")
    resolved = {}
    for name, spec in methods.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), str):
            raise ProtocolConfigError(f"methods.{name}.config: the path of an amalgamation config")
        unknown = set(spec) - {"config", "overrides"}
        if unknown:
            raise ProtocolConfigError(
                f"methods.{name}.{sorted(unknown)[0]}: unknown key (known: config, overrides)"
            )
        raw = read_toml(path.parent / spec["config"], ProtocolConfigError)
        raw = _merge(_merge(raw, overrides), spec.get("overrides", {}))
        raw.setdefault("run", {})["name"] = f"{out['protocol']['name']}.{name}"
        try:
            resolved[name] = amrun.normalise(raw, storage)
        except UserError as exc:
            raise ProtocolConfigError(f"methods.{name}: {exc}") from None
    out["methods"] = resolved
    return out


def replicate_name(protocol: str, method: str, replicate: int) -> str:
    return f"{protocol}.{method}.r{replicate}"


def create(
    path: str | Path,
    storage: str | None = None,
    checkpoint_dir: str | None = None,
    device: str | None = None,
) -> optuna.Study:
    """Create the protocol study, or return the existing one when its stored config is the same
    (a different config under the same name is an error; nothing is changed). The device it will
    train on (``device``, else ``protocol.device``) must be present: checked before anything is
    stored."""
    from nosplug.study.runner import study_names
    from nosplug.study.storage import open_storage, shown_url, storage_url

    cfg = load_config(path, storage)
    protocol_device(cfg, device)
    name = cfg["protocol"]["name"]
    url = storage_url(storage)
    store = open_storage(url)
    if name in study_names(store):
        study = optuna.load_study(study_name=name, storage=store)
        if study.user_attrs.get(amrun.KIND_ATTR) != KIND:
            raise UserError(f"a study named {name!r} in {shown_url(url)} is not an amalgamation protocol")
        if _identity(study.user_attrs.get(amrun.CONFIG_ATTR)) != _identity(cfg):
            raise UserError(
                f"protocol {name!r} in {shown_url(url)} was created with another config; "
                "give the protocol a new name to start over"
            )
        return study
    with quiet_optuna():
        study = optuna.create_study(study_name=name, storage=store, direction="minimize")
    study.set_user_attr(amrun.KIND_ATTR, KIND)
    study.set_user_attr(amrun.CONFIG_ATTR, cfg)
    ckdir = Path(checkpoint_dir or Path("nosplug-amalgamation") / name).resolve()
    study.set_user_attr(amrun.DIR_ATTR, str(ckdir))
    return study


def _identity(cfg: Any) -> Any:
    """A protocol config without its device keys (``protocol.device``, each method's
    ``run.device``): where a protocol trains does not make it another protocol."""
    if not isinstance(cfg, dict):
        return cfg
    out = copy.deepcopy(cfg)
    out.get("protocol", {}).pop("device", None)
    for method in out.get("methods", {}).values():
        method.get("run", {}).pop("device", None)
    return out


def protocol_device(cfg: dict[str, Any], device: str | torch.device | None = None) -> torch.device:
    """Where protocol ``cfg`` trains: ``device``, else ``protocol.device``, else ``auto``; a device
    not present here raises :class:`~nosplug.tasks.devices.DeviceError` (one line)."""
    from nosplug.tasks.devices import resolve_device

    return resolve_device(device or cfg["protocol"].get("device", "auto"))


def _key(method: str, replicate: int, problem: str, run: int) -> str:
    return f"{method}/r{replicate}/{problem}/{run}"


def run_protocol(
    study: optuna.Study,
    storage: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Meta-train every missing replicate and run every missing evaluation on ``device`` (see
    :func:`protocol_device`); returns a summary."""
    emit = on_event or (lambda e: None)
    cfg = study.user_attrs[amrun.CONFIG_ATTR]
    dev = protocol_device(cfg, device)  # a missing device fails before anything trains
    ckdir = Path(study.user_attrs[amrun.DIR_ATTR])
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        optuna_adapter.set_attr(study, t, "abandoned", True)
        optuna_adapter.fail(study, t)
        emit({"event": "abandoned", "trial": t.number})
    done = {t.user_attrs["key"] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    ev = cfg["evaluation"]
    evaluated = 0
    for method, raw in cfg["methods"].items():
        for r in range(cfg["protocol"]["replicates"]):
            keys = [_key(method, r, p, k) for p in ev["problems"] for k in range(ev["runs"])]
            if all(k in done for k in keys):
                continue
            student = _train_replicate(cfg, method, raw, r, ckdir, storage, emit, dev)
            meta = raw["meta"]
            make = learned_stepper(
                student, int(meta.get("warmup_steps", 100)), float(meta.get("warmup_lr", 0.05))
            )
            evaluated += _evaluate(study, done, STUDENT, method, r, lambda _p, m=make: m, ev, emit, dev)
    for ref in ev["teachers"]:

        def teacher(problem: str, ref: str = ref):
            horizon = ev["epochs"] * steps_per_epoch(get_problem(problem))
            return teacher_stepper(resolve_teacher(ref, total_steps=horizon, storage=storage))

        evaluated += _evaluate(study, done, TEACHER, ref, 0, teacher, ev, emit, dev)
    return {"done": True, "evaluated": evaluated, "trials": len(rows(study))}


def _train_replicate(cfg, method, raw, r, ckdir, storage, emit, device):
    """The trained student of replicate ``r`` (created and meta-trained, or resumed, as needed)."""
    from nosplug.amalgamation.student import load
    from nosplug.study.runner import study_names
    from nosplug.study.storage import open_storage, storage_url

    name = replicate_name(cfg["protocol"]["name"], method, r)
    rep = _merge(raw, {"run": {"name": name, "seed": cfg["protocol"]["seed"] + r}})
    if name not in study_names(open_storage(storage_url(storage))):
        amrun.create_run_from(rep, storage=storage, checkpoint_dir=str(ckdir / f"{method}-r{r}"))
    t0 = time.perf_counter()
    emit({"event": "train", "method": method, "replicate": r, "run": name})
    summary = amrun.run(
        name, storage, on_event=lambda e: emit({**e, "method": method, "replicate": r}), device=device
    )
    emit({"event": "trained", "method": method, "replicate": r, "seconds": time.perf_counter() - t0})
    return load(summary["student"])


def _evaluate(study, done, kind, method, replicate, make_for, ev, emit, device) -> int:
    count = 0
    for problem in ev["problems"]:
        for k in range(ev["runs"]):
            key = _key(method, replicate, problem, k)
            if key in done:
                continue
            trial = study.ask()
            attrs = {"key": key, "kind": kind, "method": method, "replicate": replicate, "problem": problem,
                     "run": k, "epochs": ev["epochs"]}  # fmt: skip
            for a, v in attrs.items():
                trial.set_user_attr(a, v)
            t0 = time.perf_counter()
            vals = train_problem(get_problem(problem), make_for(problem), k, ev["epochs"], device)
            m = run_metrics(vals)
            record = {**m, "val_losses": vals, "seconds": time.perf_counter() - t0}
            for a, v in record.items():
                trial.set_user_attr(a, v)
            for i, v in enumerate(vals):
                if math.isfinite(v):
                    trial.report(v, i)
            study.tell(trial, m["best_log_val"])
            done.add(key)
            count += 1
            emit({"event": "evaluated", **attrs, **{a: m[a] for a in ("best_log_val", "stability")},
                  "seconds": record["seconds"]})  # fmt: skip
    return count


# ----------------------------------------------------------------------------- results
SCHEMA_VERSION = "amalgamation-protocol/1"
SCHEMA = pa.schema(
    [
        ("protocol", pa.string()),
        ("trial_number", pa.int64()),
        ("kind", pa.string()),  # student | teacher
        ("method", pa.string()),  # method name, or the teacher reference
        ("replicate", pa.int64()),
        ("problem", pa.string()),
        ("run", pa.int64()),
        ("epochs", pa.int64()),
        ("best_log_val", pa.float64()),  # +inf: diverged before any finite validation loss
        ("last_log_val", pa.float64()),
        ("mean_log_val", pa.float64()),
        ("stability", pa.float64()),  # NaN: diverged or fewer than 2 epochs
        ("seconds", pa.float64()),
        ("val_losses", pa.list_(pa.float64())),
    ],
    metadata={"nosplug.parquet_schema": SCHEMA_VERSION},
)


def rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per finished evaluation, with the columns of :data:`SCHEMA`."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = t.user_attrs
        row = {c: a.get(c) for c in SCHEMA.names}
        row.update(protocol=study.study_name, trial_number=t.number)
        out.append(row)
    return out


def export(study: optuna.Study, out: str | Path) -> Path:
    """Write :func:`rows` to Parquet atomically (a temporary file renamed into place)."""
    target = Path(out)
    tmp = target.with_name(target.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows(study), schema=SCHEMA), tmp)
    tmp.replace(target)
    return target


def load(name: str, storage: str | None = None) -> optuna.Study:
    from nosplug.study.runner import load as load_study

    study = load_study(name, storage)
    if study.user_attrs.get(amrun.KIND_ATTR) != KIND:
        raise UserError(f"study {name!r} is not an amalgamation protocol")
    return study
