"""Typed configuration: the sections every kind of study shares, and the defaults, once each.

Config files (TOML, or a dict) are checked by :func:`nosplug.tomlconfig.check_sections` against a
schema; the shared sections are dataclasses here (:class:`WorkersConfig`), their schema derived
from the dataclass, so a default or a rule lives in one place whatever kind of study reads it.
"""

from nosplug.config.defaults import (
    DEFAULT_DEVICE,
    FALLBACK_LR,
    REFERENCE,
    SEEDS_PER_STUDY,
    TUNING_BATCH,
    TUNING_LR_RANGE,
    TUNING_STUDIES,
    TUNING_TRIALS,
)
from nosplug.config.sections import WorkersConfig, section_schema

__all__ = [
    "DEFAULT_DEVICE",
    "FALLBACK_LR",
    "REFERENCE",
    "SEEDS_PER_STUDY",
    "TUNING_BATCH",
    "TUNING_LR_RANGE",
    "TUNING_STUDIES",
    "TUNING_TRIALS",
    "WorkersConfig",
    "section_schema",
]
