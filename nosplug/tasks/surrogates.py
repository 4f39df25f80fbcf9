"""Surrogate models as plugins: the paper's ConvNet(base), a small MLP, the shifted sphere.

Registered by :mod:`nosplug.builtin.surrogates` through ``nosplug_surrogates``. A surrogate is a
cheap model whose trained accuracy stands in for how well an optimizer would do on a big one.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from nosplug.errors import UserError


@dataclass(frozen=True)
class SurrogateSpec:
    """A surrogate plugin record: ``build(input_shape, num_classes, **options) -> nn.Module``."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    options: tuple[str, ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)


def build_surrogate(name: str, input_shape: Sequence[int], num_classes: int, **options) -> nn.Module:
    """Build surrogate ``name`` for inputs of ``input_shape`` (C, H, W) and ``num_classes``."""
    from nosplug.primitives.registry import registry

    spec: SurrogateSpec = registry().get("surrogates", name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise UserError(f"surrogate {name!r}: unknown option(s) {', '.join(unknown)} (allowed: {allowed})")
    return spec.build(tuple(input_shape), num_classes, **options)


def options_of(fn: Callable) -> tuple[str, ...]:
    """Keyword options of a builder, for :class:`SurrogateSpec` (everything after the two positionals)."""
    return tuple(list(inspect.signature(fn).parameters)[2:])


class ConvNet(nn.Module):
    """Spec §7: three 3x3 convs (base, 2·base, 4·base; strides 1, 2, 2) with BatchNorm and swish,
    global average pooling, dropout 0.2 and a linear head.

    BatchNorm uses Keras' defaults as the reference did (momentum 0.99 -> PyTorch 0.01, eps 1e-3).
    Short runs want ``bn_momentum=0.1``: with 0.01 the running statistics trail the weights by
    about 100 steps, which spoils validation accuracy in runs of a few hundred steps.
    Any input size works thanks to global pooling. Parameter counts including BN running
    statistics match the paper's table for 32x32x3 input (95 434 for base 32).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        base: int = 32,
        dropout: float = 0.2,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if base < 1:
            raise UserError(f"convnet: base must be positive, got {base}")
        if not 0 <= dropout < 1:
            raise UserError(f"convnet: dropout must lie in [0, 1), got {dropout}")
        c = int(input_shape[0])
        layers: list[nn.Module] = []
        for width, stride in ((base, 1), (2 * base, 2), (4 * base, 2)):
            layers += [
                nn.Conv2d(c, width, 3, stride=stride, padding=1, bias=True),
                nn.BatchNorm2d(width, momentum=bn_momentum, eps=1e-3),
                nn.SiLU(),
            ]
            c = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, num_classes)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x).mean(dim=(2, 3))))


class MLP(nn.Module):
    """A small fully connected classifier on flattened inputs."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if not hasattr(nn.functional, activation):
            raise UserError(f"mlp: unknown activation {activation!r} (use a torch.nn.functional name)")
        sizes = [int(torch.tensor(input_shape).prod()), *map(int, hidden), num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = getattr(nn.functional, activation)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)


# spec §6: the integrity check's problem (kept here too so surrogates need not import the genome layer)
SPHERE_START = (1.1, 0.9, 1.1, 0.9, 1.0)
SPHERE_SHIFT = (0.5, 1.5, -0.3, -1.2, 0.75)


class Sphere(nn.Module):
    """The shifted sphere f(x) = sum((x - shift)^2) as a module whose only parameter is x.

    ``forward`` ignores any data it is given and returns the loss itself (a scalar), so an
    optimizer can be run on the integrity-check problem through ordinary training code. The
    defaults are spec §6's 5-variable problem (f = 7.1525 at the start); for other dimensions
    the spec's start and shift vectors repeat cyclically.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (),
        num_classes: int = 0,
        dim: int = 5,
        start: Sequence[float] | None = None,
        shift: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise UserError(f"sphere: dim must be positive, got {dim}")
        start = list(start) if start is not None else [SPHERE_START[i % 5] for i in range(dim)]
        shift = list(shift) if shift is not None else [SPHERE_SHIFT[i % 5] for i in range(dim)]
        if len(start) != dim or len(shift) != dim:
            raise UserError(f"sphere: start and shift need {dim} values each")
        self.x = nn.Parameter(torch.tensor(start, dtype=torch.float32))
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32))

    def forward(self, _data: Tensor | None = None) -> Tensor:
        return (self.x - self.shift).pow(2).sum()


def parameter_count(model: nn.Module, include_buffers: bool = True) -> int:
    """Trainable parameters plus (optionally) float buffers such as BN running statistics.

    The paper counts Keras weights, which include BatchNorm's moving mean and variance but have
    no equivalent of PyTorch's integer ``num_batches_tracked``; float buffers are what matches.
    """
    n = sum(p.numel() for p in model.parameters())
    if include_buffers:
        n += sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return n
