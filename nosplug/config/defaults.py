"""Defaults that several kinds of study, the Python API and the command line share, stated once.

Each is the value a user gets when they say nothing; changing one here changes it everywhere
(study configs, benchmark configs, ``nosplug.benchmark()``, the CLI's options and the docs'
tables, which tests/test_docs.py holds to these values).
"""

from __future__ import annotations

#: Where work trains when no device is named: an accelerator if present, else the CPU.
DEFAULT_DEVICE = "auto"
#: What every verdict compares with: torch's own Adam, tuned like every contender.
REFERENCE = "torch:Adam"
#: Tuning trials per tuning study of a contender and task (equal for all contenders).
TUNING_TRIALS = 8
#: Tuning studies per contender and task (0: the fewest whose design has power 0.8 at d = 1).
TUNING_STUDIES = 0
#: Tuning studies per look of the sequential design (docs/benchmark.md).
TUNING_BATCH = 4
#: Fresh evaluation seeds per tuning study.
SEEDS_PER_STUDY = 2
#: The learning-rate range tuning searches (log-uniform): the paper's rate grid's range.
TUNING_LR_RANGE = (1e-5, 10.0)
#: A genome's learning rate when neither the caller nor the genome's ``meta.defaults.lr`` gives one.
FALLBACK_LR = 1e-3
