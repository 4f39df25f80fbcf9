"""The amalgamation study kinds: an amalgamation run and an amalgamation protocol.

Their work is one sequential chain that cannot be handed out to several workers: every
curriculum period of a run continues the weights the last one left, and a protocol meta-trains
its replicates one after the other before evaluating them. So these kinds drive their own trials
(:meth:`~nosplug.study.kinds.KindStudy.run`) instead of planning; they still store one trial per
period or evaluation in the same storage, resume from it after a kill, and share the study
layer's storage, artifacts and kill-safety.
"""

from __future__ import annotations

from typing import Any

import optuna

from nosplug.amalgamation import protocol as amprotocol
from nosplug.amalgamation import run as amrun
from nosplug.study.kinds import KindStudy


class AmalgamationRunStudy(KindStudy):
    queued = False

    def run(self, storage: str, **options: Any) -> dict[str, Any]:
        """Train (or resume) the run: :func:`nosplug.amalgamation.run.run`'s options."""
        return amrun.run(self.name, storage, **options)


class AmalgamationRunKind:
    name = amrun.KIND
    aliases: tuple[str, ...] = ()
    description = "a student meta-trained to amalgamate teacher optimizers (nosplug amalgamate run)"

    def open(self, study: optuna.Study) -> AmalgamationRunStudy:
        return AmalgamationRunStudy(study, self.name)


class ProtocolStudy(KindStudy):
    queued = False

    def run(self, storage: str, **options: Any) -> dict[str, Any]:
        """Meta-train and evaluate what is missing: :func:`~nosplug.amalgamation.protocol.run_protocol`."""
        return amprotocol.run_protocol(self.study, storage, **options)


class ProtocolKind:
    name = amprotocol.KIND
    aliases: tuple[str, ...] = ()
    description = "amalgamation methods compared over replicates (nosplug amalgamate protocol)"

    def open(self, study: optuna.Study) -> ProtocolStudy:
        return ProtocolStudy(study, self.name)
