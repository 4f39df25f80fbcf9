"""Built-in plugin: the mean, min-max and choice amalgamation losses (spec §4.1)."""

from __future__ import annotations

from nosplug.amalgamation.losses import AmalgamationLoss, builtin_losses
from nosplug.hookspecs import hookimpl


@hookimpl
def nosplug_amalgamation_losses() -> list[AmalgamationLoss]:
    return builtin_losses()
