"""Built-in plugin: the paper's ConvNet(base), a small MLP and the shifted sphere."""

from __future__ import annotations

from nosplug.hookspecs import hookimpl
from nosplug.tasks.surrogates import MLP, ConvNet, Sphere, SurrogateSpec, options_of

SURROGATES = (
    SurrogateSpec(
        "convnet",
        ConvNet,
        "spec §7 ConvNet: 3 conv+BN+swish, global pool, dropout, linear",
        options_of(ConvNet),
    ),
    SurrogateSpec("mlp", MLP, "fully connected classifier on flattened inputs", options_of(MLP)),
    SurrogateSpec("sphere", Sphere, "shifted sphere sum((x - shift)^2); ignores data", options_of(Sphere)),
)


@hookimpl
def nosplug_surrogates() -> list[SurrogateSpec]:
    return list(SURROGATES)
