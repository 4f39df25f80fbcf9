"""Surrogate models as plugins: the paper's ConvNet(base), a small MLP, the shifted sphere.

Registered by :mod:`nosplug.builtin.surrogates` through ``nosplug_surrogates``. A surrogate is a
cheap model whose trained accuracy stands in for how well an optimizer would do on a big one.
"""

from __future__ import annotations

import inspect
import itertools
import math
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


# ----------------------------------------------------------------------------- the paper's big models
#: EfficientNetV2-S's stages (torchvision's efficientnet_v2_s): (fused?, expand, kernel, stride,
#: in, out, layers); ``width`` scales the channels and ``depth`` the layers, for tiny test models.
_V2S = (
    (True, 1, 3, 1, 24, 24, 2),
    (True, 4, 3, 2, 24, 48, 4),
    (True, 4, 3, 2, 48, 64, 4),
    (False, 4, 3, 2, 64, 128, 6),
    (False, 6, 3, 1, 128, 160, 9),
    (False, 6, 3, 2, 160, 256, 15),
)


def efficientnet_v2_s(
    input_shape: Sequence[int],
    num_classes: int,
    width: float = 1.0,
    depth: float = 1.0,
    dropout: float = 0.2,
    stochastic_depth: float = 0.2,
) -> nn.Module:
    """EfficientNetV2-S (the paper's transfer model, 20.2 M parameters for 10 classes), trained
    from scratch, built from torchvision's public blocks so ``width`` / ``depth`` can shrink it
    for tests; ``width = depth = 1`` is torchvision's ``efficientnet_v2_s`` exactly. Any number of
    input channels (the stem is rebuilt for grey images)."""
    from nosplug.tasks.vision import import_torchvision

    eff = import_torchvision("torchvision.models.efficientnet")
    EfficientNet, FusedMBConvConfig, MBConvConfig = eff.EfficientNet, eff.FusedMBConvConfig, eff.MBConvConfig

    if width <= 0 or depth <= 0:
        raise UserError("efficientnet_v2_s: width and depth must be positive")

    def ch(c: int) -> int:
        return max(8, round(c * width / 8) * 8) if width != 1.0 else c

    def n(k: int) -> int:
        return max(1, math.ceil(k * depth))

    setting = [
        (FusedMBConvConfig if fused else MBConvConfig)(e, k, s, ch(i), ch(o), n(layers))
        for fused, e, k, s, i, o, layers in _V2S
    ]
    model = EfficientNet(setting, dropout, stochastic_depth, num_classes=num_classes, last_channel=ch(1280))
    stem = model.features[0][0]
    if int(input_shape[0]) != stem.in_channels:
        model.features[0][0] = nn.Conv2d(
            int(input_shape[0]), stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False
        )
    return model


class ResNet9(nn.Module):
    """The ResNet-9 of the paper's TinyImageNet runs (Page's DAWNBench net, 6.57 M parameters at
    width 64 and 10 classes): prep conv, three stages (two with a residual pair), max pooling,
    a linear head. ``width`` scales every layer for tests."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        if width < 1:
            raise UserError(f"resnet9: width must be positive, got {width}")

        def block(a: int, b: int, pool: bool = False) -> nn.Sequential:
            layers = [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))

        c = int(input_shape[0])
        self.prep = block(c, width)
        self.layer1 = block(width, 2 * width, pool=True)
        self.res1 = nn.Sequential(block(2 * width, 2 * width), block(2 * width, 2 * width))
        self.layer2 = block(2 * width, 4 * width, pool=True)
        self.layer3 = block(4 * width, 8 * width, pool=True)
        self.res3 = nn.Sequential(block(8 * width, 8 * width), block(8 * width, 8 * width))
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer1(self.prep(x))
        x = x + self.res1(x)
        x = self.layer3(self.layer2(x))
        x = x + self.res3(x)
        return self.head(torch.amax(x, dim=(2, 3)))
