"""The search for optimizers, as study kinds on the generic work queue of :mod:`nosplug.study`.

``nosplug.search(task, ...)`` runs one (:func:`nosplug.search.api.search`); the package is callable.

* :mod:`~nosplug.search.config` -- what a search is (task, space, planner, stages, elimination,
  next round, verdict), parsed once;
* :mod:`~nosplug.search.planners` -- what to evaluate next: the particle GA of the paper and the
  other planners, registered through the hook ``nosplug_planners``;
* :mod:`~nosplug.search.kind` -- the kinds ``search`` and ``elimination``: preflight, evaluation,
  ranking (:mod:`~nosplug.search.ranking`), artifacts, and the verdict that follows a search
  (:mod:`~nosplug.search.verdict`);
* :mod:`~nosplug.search.elimination` and :mod:`~nosplug.search.rounds` -- the elimination
  protocol and the second round it seeds;
* :mod:`~nosplug.search.api` -- ``nosplug.search(...)``.
"""

from nosplug.callable_package import make_callable

make_callable(__name__, "nosplug.search.api:search")
