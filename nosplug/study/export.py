"""Parquet export: one row per trial with stable, documented columns (see docs/parquet.md).

Nested attributes are flattened into typed columns (the integrity result into ``integrity_*``,
the per-rate sweep into two parallel list columns), so pyarrow, pandas, polars and DuckDB read
the file without JSON parsing. Only ``genome_json`` is JSON: it is the genome's own format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pyarrow as pa
import pyarrow.parquet as pq

from nosplug.errors import UserError
from nosplug.study import trials as T

SCHEMA_VERSION = 3  # 2: statuses nonfinite/crashed, error, train_curve; val curve by step; 3: planner, seeded

SCHEMA = pa.schema(
    [
        ("study", pa.string()),
        ("kind", pa.string()),
        ("planner", pa.string()),
        ("trial_number", pa.int64()),
        ("state", pa.string()),
        ("value", pa.float64()),
        ("key", pa.string()),
        ("stage", pa.string()),
        ("particle", pa.int64()),
        ("timestep", pa.int64()),
        ("slot", pa.int64()),
        ("round", pa.int64()),
        ("parent", pa.string()),
        ("seeded", pa.string()),
        ("source", pa.string()),
        ("repeat", pa.int64()),
        ("genome_json", pa.string()),
        ("canonical_hash", pa.string()),
        ("planned_hash", pa.string()),
        ("formula", pa.string()),
        ("status", pa.string()),
        ("fitness", pa.float64()),
        ("metric", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("eval_stage", pa.string()),
        ("integrity_passed", pa.bool_()),
        ("integrity_lr", pa.float64()),
        ("integrity_flip", pa.bool_()),
        ("integrity_reason", pa.string()),
        ("sweep_lrs", pa.list_(pa.float64())),
        ("sweep_values", pa.list_(pa.float64())),
        ("chosen_lr", pa.float64()),
        ("fixed_lr", pa.float64()),
        ("final_steps_run", pa.int64()),
        ("flip", pa.bool_()),
        ("seed", pa.int64()),
        ("seed_fitness", pa.list_(pa.float64())),
        ("reused_from", pa.int64()),
        ("abandoned", pa.bool_()),
        ("worker", pa.string()),
        ("duration_s", pa.float64()),
        ("datetime_start", pa.timestamp("us", tz="UTC")),
        ("datetime_complete", pa.timestamp("us", tz="UTC")),
        ("intermediate_steps", pa.list_(pa.int64())),
        ("intermediate_values", pa.list_(pa.float64())),
        ("train_curve", pa.list_(pa.float64())),
    ],
    metadata={"nosplug.parquet_schema": str(SCHEMA_VERSION)},
)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    kind = study.user_attrs.get(T.KIND_ATTR)
    config = study.user_attrs.get(T.CONFIG_ATTR) or {}
    planner = (config.get("search") or {}).get("planner") or ("particle-ga" if "ga" in config else None)
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        integ = a.get("integrity") or {}
        evaluated = T.evaluated_genome(a) if T.GENOME in a else None  # with the integrity check's flip
        sweep = a.get("lr_scores") or a.get("lr_accuracies") or {}  # the latter: nosplug 0.1 studies
        lrs = sorted(sweep, key=float, reverse=True)
        rows.append(
            {
                "study": study.study_name,
                "kind": kind,
                "planner": planner,
                "trial_number": t.number,
                "state": t.state.name,
                "value": t.value,
                "key": a.get(T.KEY),
                "stage": a.get(T.STAGE),
                "particle": a.get("particle"),
                "timestep": a.get("timestep"),
                "slot": a.get("slot"),
                "round": a.get("round"),
                "parent": a.get("parent"),
                "seeded": a.get("seeded"),
                "source": a.get("source"),
                "repeat": a.get("repeat"),
                "genome_json": evaluated.to_json() if evaluated else None,
                "canonical_hash": evaluated.canonical_hash() if evaluated else None,
                "planned_hash": a.get(T.HASH),
                "formula": evaluated.formula() if evaluated else None,
                "status": a.get(T.STATUS),
                "fitness": a.get(T.FITNESS),
                "metric": a.get("metric", "accuracy"),
                "reason": a.get(T.REASON),
                "error": a.get(T.ERROR),
                "eval_stage": a.get("eval_stage"),
                "integrity_passed": integ.get("passed"),
                "integrity_lr": integ.get("lr"),
                "integrity_flip": integ.get("flip"),
                "integrity_reason": integ.get("reason"),
                "sweep_lrs": [float(x) for x in lrs] if sweep else None,
                "sweep_values": [float(sweep[x]) for x in lrs] if sweep else None,
                "chosen_lr": a.get("chosen_lr"),
                "fixed_lr": a.get(T.FIXED_LR),
                "final_steps_run": a.get("final_steps_run"),
                "flip": a.get("flip"),
                "seed": a.get(T.SEED),
                "seed_fitness": a.get("seed_fitness") or None,
                "reused_from": a.get(T.REUSED_FROM),
                "abandoned": bool(a.get(T.ABANDONED, False)),
                "worker": a.get(T.WORKER),
                "duration_s": a.get("duration"),
                "datetime_start": t.datetime_start,
                "datetime_complete": t.datetime_complete,
                "intermediate_steps": sorted(t.intermediate_values),
                "intermediate_values": [t.intermediate_values[s] for s in sorted(t.intermediate_values)],
                "train_curve": a.get(T.TRAIN_CURVE),
            }
        )
    return rows


def export_parquet(study: optuna.Study, out: str | Path) -> int:
    """Write the study's trials to ``out``; returns the number of rows."""
    rows = trial_rows(study)
    for r in rows:
        for col in ("datetime_start", "datetime_complete"):
            if r[col] is not None and r[col].tzinfo is None:
                r[col] = r[col].astimezone()  # Optuna stores naive local times
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        if out.is_dir():
            raise IsADirectoryError(f"{out} is a folder")
        made = _make_parents(out.parent)
        try:
            pq.write_table(table, tmp)
            tmp.replace(out)  # never leave a half-written file under the requested name
        except BaseException:
            tmp.unlink(missing_ok=True)
            for d in reversed(made):  # folders this call created, innermost first
                d.rmdir()
            raise
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}") from None
    return table.num_rows


class ExportError(UserError):
    """The Parquet file cannot be written where asked (nothing is left behind)."""


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the ones created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    made: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            made.append(d)
    except OSError:
        for d in reversed(made):
            d.rmdir()
        raise
    return made
