"""Fitness of reference genomes under a study's own evaluation, with a cache in the report folder.

A baseline is evaluated as the study evaluates a genome: the study's evolution-stage preset and
data, on a seed derived from the study seed, the stage and the genome's canonical hash. When the
study itself evaluated that genome (Adam as an initial genome, say) its stored result is used.
These are single evaluations on the validation split that also chose the learning rate: a view of
the search, not a verdict (the study's verdict benchmark is the fair comparison). The storage is
only read: results computed here go to a JSON cache next to the report, keyed by the evaluation's
fingerprint (preset and data settings), the genome hash and the seed, so re-running a report is
fast and a changed preset never hits stale entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nosplug.evaluation.presets import EvalPreset
from nosplug.genome.model import Genome

CACHE_FILE = "baselines.json"
CACHE_FORMAT = "nosplug-report-cache"
CACHE_VERSION = 1


@dataclass(frozen=True)
class Result:
    """The outcome of one evaluation and where it came from (``study``, ``cache``, ``evaluated``)."""

    status: str  # complete | pruned | nonfinite | error (a crash: shown as such, never cached)
    fitness: float | None
    chosen_lr: float | None
    reason: str
    source: str
    duration: float = 0.0


def fingerprint(preset: EvalPreset, data: Mapping[str, Any]) -> str:
    """A short digest of everything besides genome and seed that decides an evaluation's result."""
    text = json.dumps({"preset": preset.to_dict(), "data": dict(data)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(print_: str, genome_hash: str, seed: int) -> str:
    return f"{print_}|{genome_hash}|{seed}"


class ResultCache:
    """``baselines.json``: cache key -> result. An unreadable or foreign file is ignored (and replaced)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if data.get("format") == CACHE_FORMAT and data.get("version") == CACHE_VERSION:
                self.entries = dict(data.get("entries", {}))

    def get(self, key: str) -> Result | None:
        e = self.entries.get(key)
        if e is None:
            return None
        return Result(e["status"], e.get("fitness"), e.get("chosen_lr"), e.get("reason", ""), "cache")

    def put(self, key: str, result: Result, **info: Any) -> None:
        entry = {k: v for k, v in asdict(result).items() if k != "source"}
        self.entries[key] = {**entry, **info}
        self.save()  # at once: an interrupted report keeps what it already trained

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        body = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": self.entries}
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.path)


def stored_result(rows: Iterable[Mapping[str, Any]], stage: str, genome_hash: str) -> Result | None:
    """The study's own first finished evaluation of this genome in ``stage`` at a swept rate, if
    any (whatever its seed: it is the study's own evidence about the genome)."""
    for r in sorted(rows, key=lambda r: r["trial_number"]):
        if (
            r.get("stage") == stage
            and r.get("canonical_hash") == genome_hash
            and r.get("fixed_lr") is None
            and not r.get("abandoned")
            and r.get("status") is not None
            and r.get("state") in ("COMPLETE", "PRUNED", "FAIL")
        ):
            return Result(r["status"], r.get("fitness"), r.get("chosen_lr"), r.get("reason") or "", "study")
    return None


def evaluate(genome: Genome, task: Any, data: Any, preset: EvalPreset, seed: int) -> Result:
    """Evaluate ``genome`` as a study trial would; a crash becomes an ``error`` result shown as
    such (never a fitness), so one broken baseline does not lose the rest of the report."""
    from nosplug.evaluation.evaluate import evaluate_genome

    start = time.perf_counter()
    try:
        res = evaluate_genome(genome, task, data, preset, seed=seed)
    except Exception as exc:  # one broken baseline must not lose the rest of the report
        return Result(
            "error",
            None,
            None,
            f"error: {type(exc).__name__}: {exc}",
            "evaluated",
            time.perf_counter() - start,
        )
    return Result(res.status, res.fitness, res.chosen_lr, res.reason, "evaluated", res.duration)
