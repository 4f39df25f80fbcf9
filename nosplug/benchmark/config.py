"""Benchmark configs (TOML or a dict): contenders × tasks × seeds, with equal tuning budgets.

```toml
[benchmark]
name = "bench"
reference = "torch:Adam"               # what every verdict compares with
contenders = ["opt6", "torch:Adam", "torch:SGD(momentum=0.9, nesterov=True)"]

[tuning]
trials = 8                             # per tuning study, the same for every contender
studies = 0                            # most tuning studies per contender and task (0: the fewest
                                       # with power 0.8 at d = 1, see docs/benchmark.md)
batch = 4                              # tuning studies added per look of the sequential design
lr = [1e-5, 10.0]                      # log-uniform range of the learning rate
max_warmup = 0.25                      # the schedule's warm-up fraction is tuned in [0, this]
extra = { "torch:Adam" = ["beta1", "beta2"] }   # what else a torch: contender tunes

[evaluation]
seeds = 2                              # fresh seeds per tuning study, results on the test split

[[tasks]]
name = "diabetes-mlp"                  # any task; options, preset and preset overrides optional
```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nosplug.config import (
    REFERENCE,
    SEEDS_PER_STUDY,
    TUNING_BATCH,
    TUNING_LR_RANGE,
    TUNING_STUDIES,
    TUNING_TRIALS,
    WorkersConfig,
    section_schema,
)
from nosplug.errors import UserError
from nosplug.tomlconfig import check_sections, read_toml


class BenchmarkConfigError(ValueError, UserError):
    """A benchmark config is malformed; the message starts with the key path."""


_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], Any]]] = {
    "benchmark": {
        "name": ((str,), None),
        "seed": ((int,), 0),
        "reference": ((str,), REFERENCE),
        "contenders": ((list,), []),
        "baselines": ((list,), []),  # names of baseline sets (nosplug.baselines), added as contenders
        "allow_unequal_budgets": ((bool,), False),
        "allow_underpowered": ((bool,), False),
        "normalisation": ((str,), "reference"),
        "target": ((dict,), {}),
        "description": ((str,), ""),
    },
    "tuning": {
        "trials": ((int,), TUNING_TRIALS),
        "studies": ((int,), TUNING_STUDIES),  # 0: the fewest with power 0.8 at d = 1
        "batch": ((int,), TUNING_BATCH),
        "sampler": ((str,), "tpe"),
        "lr": ((list,), list(TUNING_LR_RANGE)),
        "max_warmup": ((float, int), 0.25),
        "per_contender": ((dict,), {}),
        "extra": ((dict,), {}),
    },
    "evaluation": {
        "seeds": ((int,), SEEDS_PER_STUDY),  # per tuning study
    },
    "workers": section_schema(WorkersConfig),
}


def read(path: str | Path, storage: str | None = None) -> dict[str, Any]:
    return normalise(read_toml(path, BenchmarkConfigError), storage)


def normalise(data: Mapping[str, Any], storage: str | None = None) -> dict[str, Any]:
    """Check keys, types and the fairness rules; fill defaults; resolve every task's direction and
    every ``study:`` contender's genome (stored, so the benchmark does not move if the search
    goes on)."""
    out = check_sections(data, _SCHEMA, BenchmarkConfigError, free_sections=("tasks", "genomes"))
    b, tu = out["benchmark"], out["tuning"]
    name = b["name"]
    if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise BenchmarkConfigError(f"benchmark.name: use letters, digits, '-', '_' or '.', got {name!r}")
    specs = [s.strip() for s in b["contenders"] if isinstance(s, str) and s.strip()]
    if len(specs) != len(b["contenders"]) or not (specs or b["baselines"]):
        raise BenchmarkConfigError(
            "benchmark.contenders: a list of contender specs (e.g. 'opt6', 'torch:Adam')"
        )
    if len(set(specs)) != len(specs):
        raise BenchmarkConfigError(
            f"benchmark.contenders: listed twice: {sorted({s for s in specs if specs.count(s) > 1})}"
        )
    _add_baselines(b, tu, specs)
    if b["reference"] not in specs:
        specs.append(b["reference"])  # the reference is tuned and evaluated like everyone else
    b["contenders"] = specs
    if tu["trials"] < 1:
        raise BenchmarkConfigError("tuning.trials: at least 1")
    if tu["sampler"] not in ("tpe", "random", "qmc"):
        raise BenchmarkConfigError("tuning.sampler: tpe, random or qmc")
    lr = tu["lr"]
    if len(lr) != 2 or not all(isinstance(v, (int, float)) for v in lr) or not 0 < lr[0] < lr[1]:
        raise BenchmarkConfigError(f"tuning.lr: [low, high] with 0 < low < high, got {lr!r}")
    tu["lr"] = [float(v) for v in lr]
    if not 0 <= tu["max_warmup"] < 1:
        raise BenchmarkConfigError("tuning.max_warmup: a fraction in [0, 1)")
    for spec, n in tu["per_contender"].items():
        if spec not in specs:
            raise BenchmarkConfigError(f"tuning.per_contender.{spec}: not a contender")
        if not isinstance(n, int) or n < 1:
            raise BenchmarkConfigError(f"tuning.per_contender.{spec}: a positive number of trials")
        if n != tu["trials"] and not b["allow_unequal_budgets"]:
            raise BenchmarkConfigError(
                f"tuning.per_contender.{spec}: {n} tuning trials where the others get {tu['trials']}; "
                "equal budgets are what make the comparison fair (set benchmark.allow_unequal_budgets = true "
                "to allow it, and the report will say so)"
            )
    for spec, names in tu["extra"].items():
        if spec not in specs:
            raise BenchmarkConfigError(f"tuning.extra.{spec}: not a contender")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BenchmarkConfigError(f"tuning.extra.{spec}: a list of hyperparameter names")
    WorkersConfig.from_raw(out["workers"]).check(BenchmarkConfigError)
    if out["evaluation"]["seeds"] < 1:
        raise BenchmarkConfigError("evaluation.seeds: at least 1 (fresh seeds per tuning study)")
    if tu["studies"] < 0 or tu["batch"] < 0:
        raise BenchmarkConfigError("tuning.studies and tuning.batch: >= 0 (0: automatic cap; all at once)")
    if b["normalisation"] not in ("reference", "minmax", "none"):
        raise BenchmarkConfigError("benchmark.normalisation: reference, minmax or none")
    out["tasks"] = _tasks(data.get("tasks"))
    for key in b["target"]:
        if key not in {t["label"] for t in out["tasks"]}:
            raise BenchmarkConfigError(f"benchmark.target.{key}: not a task of this benchmark")
    out["genomes"] = dict(data.get("genomes", {}))
    _check_contenders(out, storage)
    _check_design(out)
    return out


def _check_design(raw: dict[str, Any]) -> None:
    """The design can decide with power 0.8 at d = 1, or the config says to run it anyway: checked
    before anything is stored or trained (:mod:`nosplug.benchmark.design`)."""
    from nosplug.benchmark.design import resolve

    shortfall = resolve(raw)
    if shortfall and not raw["benchmark"]["allow_underpowered"]:
        needed = raw.get("design", {}).get("needed", 0)
        fix = (
            f"set tuning.studies = {needed} (or 0 for the automatic cap)" if needed else "add tasks or seeds"
        )
        raise BenchmarkConfigError(
            f"{shortfall}: {fix}, or allow it with --allow-underpowered (benchmark.allow_underpowered)"
        )


def _add_baselines(b: dict[str, Any], tu: dict[str, Any], specs: list[str]) -> None:
    """``benchmark.baselines``: each named set's optimizers join the contenders (after the
    listed ones, each once), with the extra hyperparameters the set tunes for them unless
    ``tuning.extra`` says otherwise; the same tuning budget as everyone."""
    from nosplug.baselines import expand

    names = b["baselines"]
    if not names:
        del b["baselines"]  # absent, as in configs stored before baseline sets (they still resume)
        return
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise BenchmarkConfigError("benchmark.baselines: a list of baseline set names (e.g. 'modern')")
    b["baselines"] = [n.strip() for n in names]
    try:
        members = expand(b["baselines"])
    except UserError as exc:
        raise BenchmarkConfigError(f"benchmark.baselines: {exc}") from None
    for m in members:
        if m.ref not in specs:
            specs.append(m.ref)
        if m.tune:
            tu["extra"].setdefault(m.ref, list(m.tune))


def _tasks(given: Any) -> list[dict[str, Any]]:
    from nosplug.evaluation.presets import get_preset
    from nosplug.evaluation.runs import for_stage
    from nosplug.tasks.resolve import resolve_task

    if not isinstance(given, list) or not given:
        raise BenchmarkConfigError("tasks: at least one [[tasks]] table with a name")
    out = []
    for i, t in enumerate(given):
        where = f"tasks[{i}]"
        if isinstance(t, str):
            t = {"name": t}
        if not isinstance(t, Mapping) or not isinstance(t.get("name"), str):
            raise BenchmarkConfigError(f"{where}: a table with a task name")
        unknown = set(t) - {"name", "options", "preset", "overrides", "label"}
        if unknown:
            raise BenchmarkConfigError(
                f"{where}: unknown key(s) {sorted(unknown)} (name, options, preset, overrides, label)"
            )
        entry = {
            "name": t["name"],
            "options": dict(t.get("options", {})),
            "preset": t.get("preset", "task"),
            "overrides": dict(t.get("overrides", {})),
            "label": t.get("label") or t["name"],
        }
        try:
            task = resolve_task(entry["name"], entry["options"])
            preset = get_preset(entry["preset"]).with_overrides(
                entry["overrides"], where=f"{where}.overrides"
            )
            for_stage(task, preset)
        except UserError as exc:
            raise BenchmarkConfigError(f"{where}: {exc}") from None
        entry["direction"] = task.metric.direction
        entry["metric"] = task.metric.name
        out.append(entry)
    labels = [e["label"] for e in out]
    if len(set(labels)) != len(labels):
        raise BenchmarkConfigError("tasks: two tasks have the same label; give each a label")
    return out


def _check_contenders(raw: dict[str, Any], storage: str | None) -> None:
    """Every spec resolves here and now (a typo fails before anything is stored)."""
    from nosplug.benchmark.contenders import resolve

    extra = raw["tuning"]["extra"]
    for spec in raw["benchmark"]["contenders"]:
        try:
            c = resolve(spec, extra.get(spec, ()), storage, raw["genomes"])
        except UserError as exc:
            raise BenchmarkConfigError(f"benchmark.contenders: {exc}") from None
        if spec.startswith("study:"):
            raw["genomes"][spec] = c.genome.to_dict()


def trials_for(raw: Mapping[str, Any], spec: str) -> int:
    return int(raw["tuning"]["per_contender"].get(spec, raw["tuning"]["trials"]))
