"""Optimizees for amalgamation (spec §3), adapted to the embedded datasets.

A problem is a small classifier plus a dataset. Its parameters live in one flat vector so that
student and teachers step flat tensors and the model runs functionally on any vector
(:func:`torch.func.functional_call`), which is what makes whole unrolls differentiable.

Training problems: ``mlp`` (784-20 sigmoid-10 on MNIST-5k, 15,910 parameters, the reference's
default problem) and ``conv_train`` (the paper's "Train" CNN, 18,122 parameters, on MNIST-5k).
The paper's evaluation problems that need no other data (spec §3.2), on MNIST-5k: ``conv_train``,
``conv_deeper`` (5 convolutions, 75,242), ``conv_wider`` (61,834), ``conv_smallbatch`` (Train CNN,
batch 32), ``conv_train_dp`` (Train CNN with DP-SGD gradients, :mod:`nosplug.amalgamation.dp`) and
``mlp``; ``PAPER_PROBLEMS`` lists them with the spec's parameter counts. Further transfer problems:
deeper, wider, other-activation MLPs and scikit-learn's digits. Images are scaled to [0, 1]
without normalisation, as in the reference.

Devices: a problem's data moves to the training device once (:func:`device_data`, cached), and a
fresh instance is initialised on the CPU from its seed and then moved (:func:`new_instance`), so
every device starts from the same weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import Tensor, nn

from nosplug.amalgamation.dp import DPSettings, dp_gradient
from nosplug.errors import UserError


def mlp(sizes: tuple[int, ...], act: type[nn.Module] = nn.Sigmoid) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            lin = nn.Linear(a, b)
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(act())
        return nn.Sequential(*layers)

    return build


def conv(c1: int, k1: int, c2: int, k2: int, in_hw: int = 28) -> Callable[[], nn.Module]:
    """Conv(c1, k1) -> MaxPool 2 -> Conv(c2, k2) -> MaxPool 2 -> Dense(10), ReLU, VALID padding."""

    def build() -> nn.Module:
        hw = ((in_hw - k1 + 1) // 2 - k2 + 1) // 2
        model = nn.Sequential(
            nn.Conv2d(1, c1, k1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, k2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(c2 * hw * hw, 10),
        )  # fmt: skip
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        return model

    return build


def conv_deeper() -> nn.Module:
    """The paper's Deeper CNN (``conv_deeper_pool``): Conv16-3, Conv32-3, Conv32-3, Pool 2, Conv64-3,
    Conv64-3, Pool 2, Dense 10; ReLU, VALID padding; 28 -> 26 -> 24 -> 22 -> 11 -> 9 -> 7 -> 3."""
    layers: list[nn.Module] = []
    chans = (1, 16, 32, 32, 64, 64)
    for i, (a, b) in enumerate(itertools.pairwise(chans)):
        layers += [nn.Conv2d(a, b, 3), nn.ReLU()]
        if i in (2, 4):
            layers.append(nn.MaxPool2d(2))
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 3 * 3, 10))
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


@dataclass(frozen=True)
class Problem:
    """A model, its data and batch size; ``dp`` makes the optimizer see DP-SGD gradients."""

    name: str
    build: Callable[[], nn.Module]
    dataset: str = "mnist5k"
    batch_size: int = 128
    description: str = ""
    dp: DPSettings | None = None


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem(
            "mlp", mlp((784, 20, 10)), description="MLP 784-20 (sigmoid)-10, MNIST-5k (training problem)"
        ),
        Problem(
            "conv_train", conv(16, 3, 32, 5), description="the paper's Train CNN, MNIST-5k (18,122 params)"
        ),
        Problem("mlp_deeper", mlp((784, 20, 20, 10)), description="deeper MLP 784-20-20-10"),
        Problem("mlp_wider", mlp((784, 64, 10)), description="wider MLP 784-64-10"),
        Problem("mlp_relu", mlp((784, 20, 10), nn.ReLU), description="MLP with ReLU instead of sigmoid"),
        Problem("mlp_smallbatch", mlp((784, 20, 10)), batch_size=32, description="MLP, batch 32"),
        Problem("conv_wider", conv(32, 3, 64, 5), description="the paper's Wider CNN, MNIST-5k (61,834)"),
        Problem("conv_deeper", conv_deeper, description="the paper's Deeper CNN, MNIST-5k (75,242)"),
        Problem(
            "conv_smallbatch",
            conv(16, 3, 32, 5),
            batch_size=32,
            description="the paper's Small Batch: Train CNN, batch 32",
        ),
        Problem(
            "conv_train_dp",
            conv(16, 3, 32, 5),
            description="the paper's MNIST-DP: Train CNN, per-example clip 1.0, noise 1.1 (evaluation only)",
            dp=DPSettings(clip=1.0, noise_multiplier=1.1),
        ),
        Problem("digits_mlp", mlp((64, 32, 10)), dataset="digits", description="MLP 64-32-10 on 8x8 digits"),
    )
}


#: The paper's evaluation problems available offline (spec §3.2) and their parameter counts.
PAPER_PROBLEMS: dict[str, int] = {
    "conv_train": 18_122,
    "conv_deeper": 75_242,
    "conv_wider": 61_834,
    "conv_smallbatch": 18_122,
    "conv_train_dp": 18_122,
    "mlp": 15_910,
}


def get_problem(name: str) -> Problem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise UserError(f"unknown amalgamation problem {name!r} (known: {', '.join(PROBLEMS)})") from None


@lru_cache(maxsize=4)
def problem_data(dataset: str, seed: int = 0):
    from nosplug.tasks.datasets import load_dataset

    return load_dataset(dataset, seed=seed, normalize=False)


def device_data(dataset: str, seed: int = 0, device: torch.device | str = "cpu"):
    """:func:`problem_data` on ``device``: moved once and kept, so minibatches are indexed where
    the model trains instead of being copied over at every step. On the CPU it is the same object."""
    return _device_data(dataset, seed, str(torch.device(device)))


@lru_cache(maxsize=4)
def _device_data(dataset: str, seed: int, device: str):
    data = problem_data(dataset, seed)
    if torch.device(device).type == "cpu":
        return data
    moved = {
        k: getattr(data, k).to(device)
        for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        if getattr(data, k) is not None
    }
    return replace(data, **moved)


class FlatModel:
    """A module evaluated on flat parameter vectors."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.device = next(module.parameters()).device
        self.names = [n for n, _ in module.named_parameters()]
        self.shapes = [p.shape for _, p in module.named_parameters()]
        self.sizes = [p.numel() for _, p in module.named_parameters()]
        self.n = sum(self.sizes)

    def vector(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])

    def ranks(self) -> Tensor:
        """Per coordinate, the number of dimensions of its tensor (on the model's device)."""
        return torch.cat(
            [torch.full((n,), float(len(s)), device=self.device) for n, s in zip(self.sizes, self.shapes)]
        )

    def params(self, theta: Tensor) -> dict[str, Tensor]:
        out, offset = {}, 0
        for name, shape, n in zip(self.names, self.shapes, self.sizes):
            out[name] = theta[offset : offset + n].view(shape)
            offset += n
        return out

    def loss(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        logits = torch.func.functional_call(self.module, self.params(theta), (x,))
        return nn.functional.cross_entropy(logits, y)


def gradient(
    problem: Problem,
    model: FlatModel,
    theta: Tensor,
    x: Tensor,
    y: Tensor,
    gen: torch.Generator | None = None,
) -> Tensor:
    """The gradient an optimizer sees on ``problem``: the minibatch gradient, or the privatised one
    (noise drawn from ``gen``) on a DP problem."""
    if problem.dp is not None:
        return dp_gradient(model.loss, theta, x, y, problem.dp, gen)
    t = theta.detach().requires_grad_(True)
    return torch.autograd.grad(model.loss(t, x, y), t)[0]


def new_instance(problem: Problem, seed: int, device: torch.device | str = "cpu") -> FlatModel:
    """A fresh model of ``problem`` initialised from ``seed`` on the CPU (the same weights on every
    device), then moved to ``device``."""
    torch.manual_seed(seed)
    return FlatModel(problem.build().to(device))
