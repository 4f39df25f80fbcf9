"""Image classification: a dataset plugin × a surrogate plugin, the paper's setting (spec §7).

Fitness is the best validation accuracy; the gates are the paper's absolute training accuracies
(25 % pre-screen, 40 % sweep and final-run floor). The surrogate, its options and the paper's
augmentation are evaluation-stage settings (each search stage of the paper trains another
ConvNet width), so they arrive with each stage; the dataset and its splits are the task's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nosplug.tasks.base import ACCURACY, Gates, Split, Task, TaskData, TaskError


@dataclass(frozen=True)
class ModelSettings:
    """Which surrogate a classification task trains (the stage's choice)."""

    surrogate: str = "convnet"
    options: Mapping[str, Any] = field(default_factory=lambda: {"base": 48})
    augment: bool = False


class ClassificationTask(Task):
    """A dataset plugin's images and labels, a surrogate plugin's model, cross entropy, accuracy."""

    metric = ACCURACY
    train_metric = ACCURACY
    gates = Gates(prescreen=0.25, sweep=0.40, run=0.25, final_floor=0.40)

    def __init__(
        self,
        dataset: str = "mnist5k",
        *,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        limit: int = 0,
        root: str = "",
        model: ModelSettings | None = None,
        name: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.limit = int(limit)
        self.root = str(root)
        self.settings = model or ModelSettings()
        self.name = name or f"classification({dataset})"
        self.description = f"{dataset} images, {self.settings.surrogate} surrogate, cross entropy"
        self.options = {
            "dataset": dataset,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "limit": self.limit,
            "root": self.root,
        }
        self._shape: tuple[tuple[int, ...], int] | None = None

    def with_model(self, settings: ModelSettings) -> ClassificationTask:
        """The same data with another surrogate (an evaluation stage's model)."""
        task = ClassificationTask(
            self.dataset,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            limit=self.limit,
            root=self.root,
            model=settings,
            name=self.name,
        )
        task._shape = self._shape
        return task

    # -- data --------------------------------------------------------------------------
    def spec_shape(self) -> tuple[tuple[int, ...], int]:
        """(input shape, classes) as the dataset plugin declares them (no data is read)."""
        from nosplug.primitives.registry import registry

        try:
            spec = registry().get("datasets", self.dataset)
        except Exception as exc:
            raise TaskError(f"task {self.name}: {exc}") from None
        return tuple(spec.input_shape), int(spec.num_classes)

    def load(self, seed: int) -> TaskData:
        from nosplug.tasks.datasets import load_dataset

        d = load_dataset(
            self.dataset,
            seed=seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            limit=self.limit or None,
            root=self.root or None,
        )
        self._shape = (tuple(d.input_shape), d.num_classes)
        empty = (d.train_x[:0], d.train_y[:0])
        test = (d.test_x, d.test_y) if d.test_x is not None else empty
        return TaskData(
            Split(d.train_x, d.train_y),
            Split(d.val_x, d.val_y),
            Split(*test),
            {"input_shape": d.input_shape, "num_classes": d.num_classes, "mean": d.mean, "std": d.std},
        )

    # -- model -------------------------------------------------------------------------
    def build_model(self, seed: int) -> nn.Module:
        from nosplug.tasks.surrogates import build_surrogate

        shape, classes = self._shape or self.spec_shape()
        return build_surrogate(self.settings.surrogate, shape, classes, **dict(self.settings.options))

    def augmentation(self):
        from nosplug.tasks.datasets import Augment

        return Augment.paper() if self.settings.augment else None

    def grouped_model(self, model: nn.Module, k: int) -> nn.Module | None:
        """ConvNet and MLP surrogates have grouped forms (K copies as one model)."""
        from nosplug.tasks.grouped import GroupedConvNet, GroupedMLP

        _shape, classes = self._shape or self.spec_shape()
        opts = self.settings.options
        if self.settings.surrogate == "convnet":
            bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
            drop = next((m.p for m in model.modules() if isinstance(m, nn.Dropout)), 0.2)
            return GroupedConvNet.from_models(
                [model] * k, classes, int(opts.get("base", 32)), dropout=drop, bn_momentum=bn.momentum,
                bn_eps=bn.eps,
            ).to(next(model.parameters()).device)  # fmt: skip
        if self.settings.surrogate == "mlp":
            linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
            sizes = [linears[0].in_features] + [m.out_features for m in linears]
            ref = linears[0].weight
            grouped = GroupedMLP(k, sizes, activation=opts.get("activation", "relu")).to(ref.device)
            with torch.no_grad():
                for w, b, lin in zip(grouped.weights, grouped.biases, linears):
                    w.copy_(lin.weight.t().unsqueeze(0).expand_as(w))
                    b.copy_(lin.bias.unsqueeze(0).expand_as(b))
            return grouped
        return None
