"""Built-in plugin: the paper's ConvNet(base), a small MLP, the shifted sphere, and the paper's
EfficientNetV2-S and ResNet-9 (trained from scratch; tiny widths for tests)."""

from __future__ import annotations

from nosplug.hookspecs import hookimpl
from nosplug.tasks.surrogates import (
    MLP,
    ConvNet,
    ResNet9,
    Sphere,
    SurrogateSpec,
    efficientnet_v2_s,
    options_of,
)

SURROGATES = (
    SurrogateSpec(
        "convnet",
        ConvNet,
        "spec §7 ConvNet: 3 conv+BN+swish, global pool, dropout, linear",
        options_of(ConvNet),
    ),
    SurrogateSpec("mlp", MLP, "fully connected classifier on flattened inputs", options_of(MLP)),
    SurrogateSpec("sphere", Sphere, "shifted sphere sum((x - shift)^2); ignores data", options_of(Sphere)),
    SurrogateSpec(
        "efficientnet_v2_s",
        efficientnet_v2_s,
        "EfficientNetV2-S from scratch (torchvision blocks; width/depth shrink it), the transfer model",
        options_of(efficientnet_v2_s),
    ),
    SurrogateSpec(
        "resnet9", ResNet9, "ResNet-9 (the paper's TinyImageNet net); width scales it", options_of(ResNet9)
    ),
)


@hookimpl
def nosplug_surrogates() -> list[SurrogateSpec]:
    return list(SURROGATES)
