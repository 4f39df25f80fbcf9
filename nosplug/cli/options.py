"""Help texts of options that several commands share, so one option reads the same everywhere."""

from __future__ import annotations

ARTIFACTS_HELP = (
    "Artifact store for results (a folder or s3://bucket/prefix; default: $NOSPLUG_ARTIFACTS, "
    "else artifacts/ beside a journal or SQLite file)."
)
STORAGE_HELP = (
    "Optuna storage URL (default: $NOSPLUG_STORAGE, else the journal file ./nosplug-studies/journal.log)."
)
