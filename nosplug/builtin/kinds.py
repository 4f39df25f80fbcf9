"""Built-in plugin: the study kinds nosplug ships (searches, eliminations, benchmarks,
amalgamation runs and protocols), registered through the same hook a third party's kind uses."""

from __future__ import annotations

from nosplug.hookspecs import hookimpl


@hookimpl
def nosplug_study_kinds():
    from nosplug.amalgamation.kinds import AmalgamationRunKind, ProtocolKind
    from nosplug.benchmark.study import BenchmarkKind
    from nosplug.search.kind import EliminationKind, SearchKind

    return [SearchKind(), EliminationKind(), BenchmarkKind(), AmalgamationRunKind(), ProtocolKind()]
