"""Built-in plugin: the RNNProp student (spec §1) and the choice optimizer (spec §4.6)."""

from __future__ import annotations

from nosplug.amalgamation.student import ChoiceOptimizer, RNNProp, StudentSpec
from nosplug.hookspecs import hookimpl


@hookimpl
def nosplug_students() -> list[StudentSpec]:
    return [
        StudentSpec(
            "rnnprop", RNNProp, "coordinate-wise 2-layer LSTM(20) on Adam-like features (5,141 weights)"
        ),
        StudentSpec("choice", ChoiceOptimizer, "soft per-coordinate choice among analytical optimizers"),
    ]
