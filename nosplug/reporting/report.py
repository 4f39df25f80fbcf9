"""What a study report holds: the data every output (Markdown, HTML, tests) reads.

:mod:`nosplug.reporting.build` fills a :class:`Report` from the storage;
:mod:`nosplug.reporting.document` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nosplug.genome.model import Genome
from nosplug.reporting import compare, data, figures


@dataclass
class BestGenome:
    """One of the best distinct genomes, with what the report shows about it."""

    rank: int
    trial: int
    key: str
    stage: str
    fitness: float
    chosen_lr: float | None
    hash: str
    formula: str
    latex: str
    momentum: str
    flip: bool
    has_decays: bool
    genome: Genome


@dataclass
class ComparisonRow:
    """A line of the comparison table: a best genome or a zoo baseline under the same evaluation."""

    label: str
    search: bool
    hash: str
    result: compare.Result


@dataclass
class Report:
    """Everything a report shows, kept after writing so callers and tests can inspect the data."""

    study: str
    out: Path
    generated: str
    summary: list[tuple[str, str]]
    best: list[BestGenome]
    best_stage: str
    trajectories: list[data.Trajectory]
    comparison: list[ComparisonRow]
    schedules: list[figures.ScheduleCurve] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
