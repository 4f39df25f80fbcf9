"""Tasks: what one evaluation trains (model, data splits, loss, metric and its direction).

Built-in tasks are registered through the hook ``nosplug_tasks`` like any plugin's:
``classification`` (a dataset plugin × the stage's surrogate; named forms ``mnist5k-convnet``,
``digits-convnet``, ``cifar10-convnet``, ``cifar100-convnet``), ``charlm`` (a character-level
Transformer on Python's help texts), ``diabetes-mlp`` (regression) and ``mnist5k-autoencoder``.
A study or command can also name ``"module:callable"`` returning a :class:`Task`.
"""

from __future__ import annotations

from nosplug.tasks.base import (
    ACCURACY,
    LOSS,
    MAXIMIZE,
    MINIMIZE,
    RELATIVE_LOSS_GATES,
    Batches,
    Gates,
    Metric,
    Split,
    Task,
    TaskData,
    TaskError,
)
from nosplug.tasks.devices import DeviceError, resolve_device
from nosplug.tasks.resolve import TaskSpec, resolve_task, task_specs

__all__ = [
    "ACCURACY",
    "LOSS",
    "MAXIMIZE",
    "MINIMIZE",
    "RELATIVE_LOSS_GATES",
    "Batches",
    "DeviceError",
    "Gates",
    "Metric",
    "Split",
    "Task",
    "TaskData",
    "TaskError",
    "TaskSpec",
    "resolve_device",
    "resolve_task",
    "task_specs",
]
