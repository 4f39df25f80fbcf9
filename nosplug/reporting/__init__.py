"""Study reports: figures, best genomes, learned schedules and baselines from the storage alone.

Layering: this package reads studies (:mod:`nosplug.study`) and runs evaluations, genomes and
optimizers; nothing but the ``nosplug report`` command imports it, so matplotlib is loaded only
when a report is built. Entry point: :func:`build_report`.
"""

from nosplug.reporting.build import DEFAULT_BASELINES, Report, ReportError, build_report

__all__ = ["DEFAULT_BASELINES", "Report", "ReportError", "build_report"]
