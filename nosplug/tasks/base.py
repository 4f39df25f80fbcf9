"""The task API: what one evaluation trains.

A :class:`Task` says how to build the model for a seed, the train / validation / **test** data,
the loss, the metric fitness is read from and its direction, the batch size and the gates'
defaults. Everything above it (the integrity-checked genome's learning-rate sweep, the gates,
the final run, the benchmark harness) is written against this interface, so the paper's
ConvNet-on-images setup is one task among a language model, a regression net, an autoencoder
or a user's own model.

The test split exists so that a claim about an optimizer can be made on data nothing was chosen
on: neither the search nor the learning-rate selection ever reads it (a test guards this);
only the benchmark harness evaluates on it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nosplug.errors import UserError

MAXIMIZE, MINIMIZE = "maximize", "minimize"


class TaskError(UserError):
    """A task cannot be built or used as configured (the message names the task)."""


@dataclass(frozen=True)
class Metric:
    """A quality measure and which way is better."""

    name: str
    direction: str  # MAXIMIZE | MINIMIZE

    def __post_init__(self) -> None:
        if self.direction not in (MAXIMIZE, MINIMIZE):
            raise ValueError(f"metric {self.name!r}: direction must be maximize or minimize")

    @property
    def maximize(self) -> bool:
        return self.direction == MAXIMIZE

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b`` (a non-finite value is never better)."""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        return a > b if self.maximize else a < b

    def best(self, values) -> float | None:
        """The best finite value, None if there is none."""
        finite = [float(v) for v in values if math.isfinite(float(v))]
        if not finite:
            return None
        return max(finite) if self.maximize else min(finite)

    @property
    def worst(self) -> float:
        """What a run without a usable value counts as when runs are averaged."""
        if self.maximize:
            return 0.0 if self.name == "accuracy" else -math.inf
        return math.inf

    def key(self, value: float | None) -> float:
        """A sort key where smaller is better (for ``sorted``); None and NaN sort last."""
        if value is None or not math.isfinite(value):
            return math.inf
        return -value if self.maximize else value


ACCURACY = Metric("accuracy", MAXIMIZE)
#: The training metric of tasks that read their gates from the loss.
LOSS = Metric("loss", MINIMIZE)


@dataclass(frozen=True)
class Gates:
    """The early-stopping thresholds of spec §8, in *gate units* of the task's training metric.

    ``scale = "absolute"``: gate units are the metric itself (the paper's training accuracies).
    ``scale = "relative"``: gate units are the training loss divided by the untrained model's
    training loss L0 (measured at the start of each evaluation), so ``prescreen = 0.9`` asks a
    candidate to bring the loss below 90 % of where it started; lower is better.
    """

    prescreen: float
    sweep: float
    run: float  # a sweep run stops when its epoch value is worse than this ...
    final_floor: float  # ... and the final run stops (not rejected) when worse than this
    scale: str = "absolute"

    def __post_init__(self) -> None:
        if self.scale not in ("absolute", "relative"):
            raise ValueError(f"gates: scale must be absolute or relative, got {self.scale!r}")

    def units(self, value: float, untrained_loss: float | None) -> float:
        """``value`` of the training metric in gate units."""
        if self.scale == "absolute":
            return value
        if untrained_loss is None or not math.isfinite(untrained_loss) or untrained_loss <= 0:
            return math.nan  # nothing to be relative to: never passes
        return value / untrained_loss

    def direction(self, train_metric: Metric) -> str:
        """Which way gate units are better: relative units are loss ratios (lower is better)."""
        return MINIMIZE if self.scale == "relative" else train_metric.direction


#: The built-in loss tasks' gates (language model, regression, autoencoder): the training loss as a
#: fraction of the untrained model's, below 90 % after the pre-screen and 80 % after the sweep.
RELATIVE_LOSS_GATES = Gates(prescreen=0.9, sweep=0.8, run=0.95, final_floor=0.9, scale="relative")


@dataclass
class Split:
    """Inputs and targets of one split, already on the task's device."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class TaskData:
    """The three splits of a task for one data seed. ``info`` holds shapes and sizes."""

    train: Split
    val: Split
    test: Split
    info: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device) -> TaskData:
        """Move every split once (evaluations never copy data per batch)."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


class Batches:
    """An endless, reproducible minibatch stream over a split, reshuffled every epoch by its own
    generator; ``augment(x, generator)`` (if given) transforms each batch."""

    def __init__(self, split: Split, batch_size: int, *, seed: int = 0, augment=None) -> None:
        if batch_size < 1:
            raise TaskError(f"batch_size must be positive, got {batch_size}")
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.augment = augment
        self.generator = torch.Generator().manual_seed(int(seed))
        self.epoch = 0
        self._order = torch.empty(0, dtype=torch.int64)
        self._pos = 0

    def next(self) -> tuple[Tensor, Tensor]:
        """The next minibatch; a new permutation starts when the current one cannot fill a batch."""
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(len(self.split), generator=self.generator)
            self._pos = 0
            self.epoch += 1
        idx = self._order[self._pos : self._pos + self.batch_size].to(self.split.y.device)
        self._pos += self.batch_size
        xb = self.split.x[idx]
        if self.augment is not None:
            xb = self.augment(xb, self.generator)
        return xb, self.split.y[idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.next()


def mean_squared_error(model: nn.Module, split: Split, chunk: int = 1000) -> float:
    """Mean squared error per target value over a split (regression and reconstruction metrics)."""
    if not len(split):
        return math.nan
    err = Task.loss_sum(model, split, lambda out, y: nn.functional.mse_loss(out, y, reduction="sum"), chunk)
    return err / split.y.numel()


class Task(ABC):
    """What one evaluation trains; subclass it for your own model and data.

    A subclass sets the class attributes and implements :meth:`load` and :meth:`build_model`
    (and :meth:`loss`, :meth:`evaluate` when the defaults below do not fit):

    * ``metric``: what fitness and test quality are read from (on whole splits);
    * ``train_metric``: what the gates read during training (epoch means over minibatches);
    * ``gates``: their defaults; ``batch_size`` and ``budget`` (evaluation-preset overrides used
      when no preset is named) are defaults too.

    The default :meth:`loss` is cross entropy with the default accuracy metric, i.e. a
    classifier; regression and language tasks override ``loss`` and ``evaluate``.
    """

    name: str = "task"
    description: str = ""
    metric: Metric = ACCURACY
    train_metric: Metric = ACCURACY
    gates: Gates = Gates(0.25, 0.40, 0.25, 0.40)
    #: Evaluation-preset settings (batch size, step counts) this task suggests.
    budget: ClassVar[dict[str, Any]] = {}
    #: Options the task was built with (recorded with results; set by the constructor).
    options: dict[str, Any]

    # -- what a subclass provides ----------------------------------------------------------
    @abstractmethod
    def load(self, seed: int) -> TaskData:
        """The three splits for data seed ``seed`` (on the CPU; the caller moves them)."""

    @abstractmethod
    def build_model(self, seed: int) -> nn.Module:
        """A freshly initialised model; parameters drawn after ``torch.manual_seed(seed)``."""

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        """Mean loss of a minibatch (differentiable)."""
        return nn.functional.cross_entropy(output, y)

    def batch_train_metric(self, output: Tensor, y: Tensor, loss: Tensor) -> Tensor:
        """The training metric summed over a minibatch's ``len(y)`` examples (epoch means divide
        by the examples seen). Accuracy counts correct predictions; a loss metric is the
        minibatch's mean loss times its size. Tensor ops only, so ``vmap`` can batch it."""
        if self.train_metric.name == "accuracy":
            return (output.argmax(-1) == y).sum()
        return loss * len(y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: Split, chunk: int = 1000) -> float:
        """The metric on a whole split, in eval mode (accuracy by default)."""
        was = model.training
        model.eval()
        correct = 0
        for i in range(0, len(split), chunk):
            correct += (model(split.x[i : i + chunk]).argmax(-1) == split.y[i : i + chunk]).sum().item()
        model.train(was)
        return correct / max(1, len(split))

    def with_options(self, **overrides: Any) -> Task:
        """The same task with some options changed (an evaluation stage's ``task_options``).

        Rebuilds the task from :attr:`options`, which works when they are its constructor's
        keyword arguments (true of the built-in tasks); a task that cannot says so."""
        try:
            return type(self)(**{**self.options, **overrides})
        except TypeError as exc:
            raise TaskError(f"task {self.name}: cannot change options {sorted(overrides)}: {exc}") from None

    def augmentation(self):
        """A callable ``(x, generator) -> x`` applied to training batches, or None."""
        return None

    def grouped_model(self, model: nn.Module, k: int) -> nn.Module | None:
        """K copies of ``model`` as one module with outputs (batch, K, ...), or None. A task
        that has a grouped form gets it in the learning-rate sweep where it pays."""
        return None

    # -- shared machinery ------------------------------------------------------------------
    @staticmethod
    @torch.no_grad()
    def loss_sum(
        model: nn.Module, split: Split, loss_sum: Callable[[Tensor, Tensor], Tensor], chunk: int = 1000
    ) -> float:
        """Sum of ``loss_sum(output, y)`` over a split in chunks, in eval mode (for metrics)."""
        was = model.training
        model.eval()
        total = sum(
            float(loss_sum(model(split.x[i : i + chunk]), split.y[i : i + chunk]))
            for i in range(0, len(split), chunk)
        )
        model.train(was)
        return total

    def model(self, seed: int, device: torch.device | str = "cpu") -> nn.Module:
        torch.manual_seed(int(seed))
        return self.build_model(int(seed)).to(device)

    def batches(self, data: TaskData, seed: int, batch_size: int | None = None) -> Batches:
        return Batches(data.train, batch_size or self.batch_size, seed=seed, augment=self.augmentation())

    def describe(self) -> str:
        return f"{self.name}: {self.description} ({self.metric.name}, {self.metric.direction})"
