"""Hook specifications: everything nosplug searches over or trains with comes from these hooks.

Built-in primitives are registered through exactly these hooks by the modules in
:mod:`nosplug.builtin`, the way pytest builds itself from its own plugins. An outside package
adds primitives by exposing a module with ``@hookimpl`` functions under the entry-point group
``nosplug``::

    [project.entry-points.nosplug]
    myops = "my_package.nosplug_plugin"

Every hook returns a list of records (``nosplug_zoo_genomes`` a mapping name -> genome); names
must be unique per kind across all plugins, and a clash is an error that names both plugins.

Primitive records (operands, ops, schedules, decay ops) may carry a source form in their field
``source`` (:class:`~nosplug.primitives.base.SourceForm`), which ``nosplug genome export`` copies
into a standalone PyTorch optimizer. It is a field and not a hook of its own because it must equal
the record's function, and factory-built records (operand families, ``lion_interp_op(b1, b2)``)
know the parameters their source needs; a primitive without one cannot be exported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

PROJECT = "nosplug"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def nosplug_operands() -> list[Any]:
    """Return :class:`~nosplug.primitives.Operand` records (named leaves of update graphs)."""


@hookspec
def nosplug_operand_families() -> list[Any]:
    """Return :class:`~nosplug.primitives.OperandFamily` records (parameterised operands)."""


@hookspec
def nosplug_unary_ops() -> list[Any]:
    """Return scalar :class:`~nosplug.primitives.UnaryOp` records."""


@hookspec
def nosplug_stateful_ops() -> list[Any]:
    """Return state-holding :class:`~nosplug.primitives.StatefulOp` records (share the unary namespace)."""


@hookspec
def nosplug_binary_ops() -> list[Any]:
    """Return :class:`~nosplug.primitives.BinaryOp` records."""


@hookspec
def nosplug_schedules() -> list[Any]:
    """Return :class:`~nosplug.primitives.Schedule` records (the leaves of decay graphs)."""


@hookspec
def nosplug_decay_unary_ops() -> list[Any]:
    """Return :class:`~nosplug.primitives.DecayUnaryOp` records allowed inside decay graphs."""


@hookspec
def nosplug_decay_binary_ops() -> list[Any]:
    """Return :class:`~nosplug.primitives.DecayBinaryOp` records allowed inside decay graphs."""


@hookspec
def nosplug_datasets() -> list[Any]:
    """Return :class:`~nosplug.tasks.datasets.DatasetSpec` records."""


@hookspec
def nosplug_surrogates() -> list[Any]:
    """Return :class:`~nosplug.tasks.surrogates.SurrogateSpec` records."""


@hookspec
def nosplug_tasks() -> list[Any]:
    """Return :class:`~nosplug.tasks.TaskSpec` records (what one evaluation trains)."""


@hookspec
def nosplug_teachers() -> list[Any]:
    """Return teacher optimizer records for optimizer amalgamation."""


@hookspec
def nosplug_students() -> list[Any]:
    """Return learned-optimizer (student) records for optimizer amalgamation."""


@hookspec
def nosplug_amalgamation_losses() -> list[Any]:
    """Return amalgamation loss records (mean, min-max, choice, ...)."""


@hookspec
def nosplug_study_kinds() -> list[Any]:
    """Return study kinds (:class:`~nosplug.study.kinds.StudyKind`: a ``name``, ``aliases``, a
    ``description`` and ``open(study)``): what a kind of study plans, evaluates and ranks on the
    generic work queue. The built-ins: search, elimination, benchmark, amalgamation, and
    amalgamation-protocol."""


@hookspec
def nosplug_planners() -> list[Any]:
    """Return search planners (:class:`~nosplug.search.planners.base.PlannerSpec`): what a search
    evaluates next, selected by ``[search] planner = NAME`` with ``[search.options]``. The
    built-ins: particle-ga, random, regularized-evolution."""


@hookspec
def nosplug_baseline_sets() -> list[Any]:
    """Return :class:`~nosplug.baselines.BaselineSet` records: named lists of baseline optimizers
    (contender references, the hyperparameters each tunes, its recipe) that ``nosplug benchmark
    --baselines NAME`` and ``validate.baselines`` add as contenders."""


@hookspec
def nosplug_zoo_genomes() -> Mapping[str, str | Mapping[str, Any]] | Iterable[Any]:
    """Return named genomes for :mod:`nosplug.zoo`, so ``zoo.load(name)`` finds them.

    A mapping name -> genome (JSON text or its dict form), or an iterable of
    :class:`~nosplug.primitives.registry.ZooGenome` records or ``(name, genome)`` pairs. Names are
    case-insensitive and may not repeat a built-in zoo name or another plugin's. Genomes are parsed
    when loaded, so they may use primitives from any plugin, including the one shipping them.
    """
