"""Tabular regression: an MLP on scikit-learn's bundled diabetes data (442 patients, 10 features).

The data ships inside scikit-learn, so nothing is downloaded. A seeded permutation splits it
60 / 20 / 20 into train / validation / test; features and the target are standardised with the
training part's statistics, so the metric (mean squared error of the standardised target) reads
like 1 − R²: predicting the training mean scores about 1. Lower is better; gates compare the
training loss with the untrained model's.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from nosplug.tasks.base import LOSS, MINIMIZE, RELATIVE_LOSS_GATES, Metric, Split, Task, TaskData

MSE = Metric("mse", MINIMIZE)


def diabetes_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's diabetes features (already scaled by scikit-learn) and raw targets."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes()
    return d.data.astype(np.float32), d.target.astype(np.float32)


class DiabetesMLPTask(Task):
    """An MLP regressor; fitness: validation MSE of the standardised target."""

    metric = MSE
    train_metric = LOSS
    gates = RELATIVE_LOSS_GATES
    budget: ClassVar[dict[str, Any]] = {
        "batch_size": 32,
        "sweep_steps": 150,
        "sweep_epoch_steps": 30,
        "final_steps": 600,
        "final_epoch_steps": 60,
        "schedule_steps": 1200,
        "warmup_steps": 60,
    }

    def __init__(self, hidden: tuple[int, ...] | list[int] = (64, 64), name: str = "diabetes-mlp") -> None:
        self.hidden = tuple(int(h) for h in hidden)
        self.name = name
        self.description = f"MLP {self.hidden} regressor on scikit-learn's diabetes data (442 rows)"
        self.options = {"hidden": list(self.hidden)}

    def load(self, seed: int) -> TaskData:
        x, y = (torch.from_numpy(a) for a in diabetes_arrays())
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed)))
        a, b = int(0.6 * len(y)), int(0.8 * len(y))
        tr, va, te = order[:a], order[a:b], order[b:]
        mx, sx = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
        my, sy = y[tr].mean(), y[tr].std()

        def split(idx: Tensor) -> Split:
            return Split(((x[idx] - mx) / sx).contiguous(), ((y[idx] - my) / sy).unsqueeze(1).contiguous())

        return TaskData(split(tr), split(va), split(te), {"features": x.shape[1], "rows": len(y)})

    def build_model(self, seed: int) -> nn.Module:
        sizes = [10, *self.hidden, 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, y)

    def evaluate(self, model: nn.Module, split: Split, chunk: int = 4096) -> float:
        """Mean squared error per target value over the split."""
        err = self.loss_sum(
            model, split, lambda out, y: nn.functional.mse_loss(out, y, reduction="sum"), chunk
        )
        return err / max(1, split.y.numel())
