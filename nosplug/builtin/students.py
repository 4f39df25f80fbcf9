"""Built-in plugin: the RNNProp student (spec §1), the choice optimizer (spec §4.6) and the "Original"
learned-optimizer baseline (spec §6.1)."""

from __future__ import annotations

from nosplug.amalgamation.student import ChoiceOptimizer, DMOptimizer, RNNProp, StudentSpec
from nosplug.hookspecs import hookimpl


@hookimpl
def nosplug_students() -> list[StudentSpec]:
    return [
        StudentSpec(
            "rnnprop", RNNProp, "coordinate-wise 2-layer LSTM(20) on Adam-like features (5,141 weights)"
        ),
        StudentSpec("choice", ChoiceOptimizer, "soft per-coordinate choice among analytical optimizers"),
        StudentSpec(
            "original",
            DMOptimizer,
            "baseline: Andrychowicz et al. 2016, LSTM(20) x 2 on the raw gradient, x 0.1 (5,061 weights)",
        ),
    ]
