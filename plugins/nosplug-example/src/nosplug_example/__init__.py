"""An example nosplug plugin: one operand, one decay schedule, one surrogate.

nosplug finds this module through the entry point ``example = "nosplug_example"`` in the group
``nosplug`` and calls the hook functions below, exactly as it does for its built-in plugins.
"""

from __future__ import annotations

import torch
from torch import nn

from nosplug.hookspecs import hookimpl
from nosplug.primitives import EMASpec, Operand, Schedule
from nosplug.tasks.surrogates import SurrogateSpec

V999 = EMASpec(power=2, beta=0.999)
TAGS = frozenset({"example"})


def _g_rms(ctx) -> torch.Tensor:
    # ema_hat is the bias-corrected EMA that nosplug keeps for every EMASpec in `requires`
    return ctx.g / torch.sqrt(ctx.ema_hat(V999) + 1e-8)


def _step3(t: torch.Tensor, T: int) -> torch.Tensor:
    return 0.1 ** torch.floor(3 * t / T).clamp(max=2)


class TinyMLP(nn.Module):
    def __init__(self, input_shape, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        n = 1
        for s in input_shape:
            n *= int(s)
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@hookimpl
def nosplug_operands() -> list[Operand]:
    return [
        Operand(
            "g_rms",
            _g_rms,
            "g/sqrt(v_0.999)",
            r"\frac{g}{\sqrt{\hat v_{0.999}}}",
            requires=(V999,),
            tags=TAGS,
        )
    ]


@hookimpl
def nosplug_schedules() -> list[Schedule]:
    return [Schedule("step3", _step3, "step3", r"0.1^{\lfloor 3t/T \rfloor}", tags=TAGS)]


@hookimpl
def nosplug_surrogates() -> list[SurrogateSpec]:
    return [SurrogateSpec("tiny_mlp", TinyMLP, "one hidden layer of 16 units", ("hidden",), TAGS)]
