"""Benchmark contenders: what optimizer a spec names, and which hyperparameters it may tune.

Spec strings (stored in the benchmark's study, resolved by each worker):

* ``adam``, ``opt6``, ``path/to/genome.json``: a genome, run by GraphOptimizer;
* ``study:NAME`` or ``study:NAME#k``: the k-th best genome of a search, as evaluated (sign flip
  applied);
* ``torch:Adam``, ``torch:SGD(momentum=0.9, nesterov=True)``: any ``torch.optim`` class with its
  arguments; ``module:Class(...)`` any importable ``torch.optim.Optimizer`` class
  (``pytorch_optimizer:Lion(betas=(0.9, 0.99))``); arguments are Python literals
  (:mod:`nosplug.refs`);
* ``student:PATH`` (a saved amalgamation student) or ``pretrained:NAME`` (a shipped one).

Every contender tunes the same things with the same budget: its learning rate (log-uniform) and
the base schedule's shape (the warm-up fraction of the warmup-hold-cosine schedule). An optimizer
class may also tune its betas and weight decay when the benchmark config lists them for it
(``extra_tuning``). A learned optimizer has no learning rate and no schedule: it tunes the rate
of its SGD warm-up (spec §1.3), the one scale it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import torch
from optuna.distributions import BaseDistribution, FloatDistribution

from nosplug.baselines.recipes import is_schedule_free
from nosplug.errors import UserError
from nosplug.optim.schedules import WarmupHoldCosine
from nosplug.quiet import quiet_optuna

#: Hyperparameters a ``torch:`` contender may tune besides the rate and schedule, and their ranges.
EXTRA_TUNING: dict[str, BaseDistribution] = {
    "beta1": FloatDistribution(0.5, 0.99),
    "beta2": FloatDistribution(0.9, 0.9999),
    "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
    "momentum": FloatDistribution(0.5, 0.99),
}


class ContenderError(UserError):
    """A contender spec names nothing nosplug can build."""


@dataclass
class Contender:
    """One optimizer of a benchmark: how to build it and what it tunes."""

    spec: str
    kind: str  # genome | torch | student
    genome: Any = None
    torch_class: type | None = None
    torch_kwargs: dict[str, Any] = field(default_factory=dict)
    student: Any = None  # a callable params -> Optimizer, taking warmup_lr
    extra: tuple[str, ...] = ()

    def space(self, lr_range: tuple[float, float], max_warmup: float) -> dict[str, BaseDistribution]:
        """The tuning space (Optuna distributions) of this contender."""
        if self.kind == "student":
            return {"warmup_lr": FloatDistribution(1e-3, 1.0, log=True)}
        out: dict[str, BaseDistribution] = {
            "lr": FloatDistribution(lr_range[0], lr_range[1], log=True),
            "warmup": FloatDistribution(0.0, max_warmup),
        }
        out.update({k: EXTRA_TUNING[k] for k in self.extra})
        return out

    def tuned_names(self) -> list[str]:
        return ["warmup_lr"] if self.kind == "student" else ["lr", "warmup", *self.extra]

    def build(self, params: Iterable[torch.Tensor], hp: Mapping[str, float], total_steps: int, seed: int = 0):
        """(optimizer, scheduler or None) for a run of ``total_steps`` with hyperparameters ``hp``."""
        params = list(params)
        if self.kind == "student":
            return self.student(params, float(hp["warmup_lr"])), None
        if self.kind == "genome":
            from nosplug.optim import GraphOptimizer

            opt = GraphOptimizer(
                params, self.genome, lr=hp["lr"], total_steps=total_steps, nonfinite="skip", seed=seed
            )
            cycle = True  # the paper's schedule cycles the momentum of genomes with momentum
        else:
            assert self.torch_class is not None
            kw = dict(self.torch_kwargs)
            kw["lr"] = hp["lr"]
            if "beta1" in hp or "beta2" in hp:
                # the class's own betas where only one is tuned (Lion's are (0.9, 0.99), SOAP's
                # (0.95, 0.95)); a third beta (AdEMAMix) is kept
                betas = list(kw.get("betas") or _default(self.torch_class, "betas", (0.9, 0.999)))
                betas[0], betas[1] = hp.get("beta1", betas[0]), hp.get("beta2", betas[1])
                kw["betas"] = tuple(betas)
            for k in ("weight_decay", "momentum"):
                if k in hp:
                    kw[k] = hp[k]
            opt = self.torch_class(params, **kw)
            cycle = False  # a torch optimizer keeps its own momentum / betas
        warmup = round(float(hp.get("warmup", 0.0)) * total_steps)
        # a schedule-free optimizer replaces the decay: the tuned warm-up, then a constant rate
        hold = total_steps - warmup if is_schedule_free(opt) else 0
        sched = WarmupHoldCosine(opt, total_steps, warmup, hold, cycle_momentum=cycle)
        return opt, sched


def _default(cls: type, name: str, fallback: Any) -> Any:
    """The default of ``cls``'s constructor argument ``name`` (``fallback`` when it has none)."""
    import inspect

    try:
        p = inspect.signature(cls.__init__).parameters.get(name)
    except (TypeError, ValueError):
        return fallback
    return fallback if p is None or p.default is inspect.Parameter.empty else p.default


def resolve(
    spec: str,
    extra_tuning: Sequence[str] = (),
    storage: str | None = None,
    genomes: Mapping[str, Any] | None = None,
) -> Contender:
    """The contender a spec names (see the module docstring); a bad spec is one clear error.
    ``genomes`` holds genomes already resolved for ``study:`` specs (a benchmark stores them)."""
    from nosplug.refs import RefError, parse_ref

    try:
        ref = parse_ref(spec)
    except RefError as exc:
        raise ContenderError(f"contender {exc}") from None
    spec = ref.text
    unknown = set(extra_tuning) - set(EXTRA_TUNING)
    if unknown:
        raise ContenderError(
            f"contender {spec!r}: cannot tune {sorted(unknown)} (tunable: {sorted(EXTRA_TUNING)})"
        )
    if ref.kind == "class":
        return _optimizer_class(ref, tuple(extra_tuning))
    if extra_tuning:
        raise ContenderError(
            f"contender {spec!r}: only optimizer classes (module:Class) tune {', '.join(extra_tuning)}"
        )
    if ref.kind in ("student", "pretrained"):
        return _student(ref)
    if ref.kwargs:
        raise ContenderError(
            f"contender {spec!r}: a genome takes no arguments here (its learning rate and schedule are tuned)"
        )
    if genomes and spec in genomes:
        from nosplug.genome.model import Genome

        return Contender(spec, "genome", genome=Genome.from_dict(dict(genomes[spec])))
    return Contender(spec, "genome", genome=_genome(ref, storage))


def _optimizer_class(ref, extra: tuple[str, ...]) -> Contender:
    """A contender from any ``torch.optim.Optimizer`` class (``torch:Adam``, ``module:Class``)
    with its literal arguments; it must build on a 2-D parameter (Muon accepts only those)."""
    import inspect

    from nosplug.refs import RefError

    spec = ref.text
    try:
        cls = ref.import_class()
    except RefError as exc:
        raise ContenderError(f"contender {exc}") from None
    kw = dict(ref.kwargs)
    if "lr" in kw:
        raise ContenderError(f"contender {spec!r}: the learning rate is tuned, do not fix it")
    try:
        cls([torch.zeros(2, 2, requires_grad=True)], lr=1e-3, **kw)
    except (TypeError, ValueError) as exc:
        raise ContenderError(f"contender {spec!r}: {exc}") from None
    accepted = set(inspect.signature(cls.__init__).parameters)
    for k in extra:
        probe = {"beta1": "betas", "beta2": "betas"}.get(k, k)
        if probe not in accepted:
            raise ContenderError(f"contender {spec!r}: {ref.class_path} has no {probe!r} to tune")
    return Contender(spec, "torch", torch_class=cls, torch_kwargs=kw, extra=extra)


def _genome(ref, storage: str | None):
    if ref.kind == "study":
        from nosplug.study.kinds import best_genomes

        top = best_genomes(ref.target, storage, n=ref.rank)
        if len(top) < ref.rank:
            raise ContenderError(
                f"contender {ref.text!r}: study {ref.target!r} has only {len(top)} finished genomes"
            )
        return top[ref.rank - 1][0]
    from nosplug import zoo

    try:
        return zoo.load(ref.target)
    except UserError as exc:
        raise ContenderError(
            f"contender {ref.text!r}: {exc}; or use torch:NAME(...), module:Class(...), study:NAME#k, "
            "pretrained:NAME"
        ) from None


def _student(ref) -> Contender:
    try:
        return _student_contender(ref.text, ref.kind, ref.target)
    except UserError as exc:
        raise ContenderError(f"contender {ref.text!r}: {exc}") from None


def _student_contender(spec: str, kind: str, ref: str) -> Contender:
    from nosplug import amalgamation

    if kind == "pretrained":
        amalgamation.pretrained_info(ref)  # an unknown name fails here

        def make(params, warmup_lr: float):
            return amalgamation.pretrained(ref, params, warmup_lr=warmup_lr)
    else:
        amalgamation.load(ref)  # a missing or foreign file fails here

        def make(params, warmup_lr: float):
            return amalgamation.load(ref, params, warmup_lr=warmup_lr)

    return Contender(spec, "student", student=make)


def default_params(space: Mapping[str, BaseDistribution]) -> dict[str, float]:
    """A point in the middle of a space (geometric mean for log scales), for smoke checks."""
    out = {}
    for k, d in space.items():
        assert isinstance(d, FloatDistribution)
        out[k] = math.sqrt(d.low * d.high) if d.log else (d.low + d.high) / 2
    return out


def suggest(
    space: Mapping[str, BaseDistribution],
    history: Sequence[tuple[dict[str, float], float | None]],
    direction: str,
    seed: int,
    sampler: str = "tpe",
) -> dict[str, float]:
    """The next hyperparameters to try, from the finished tuning trials ``history`` (params,
    value or None for a run without a value), deterministically: a fresh sampler, seeded by
    ``seed`` and the number of trials so far (else its random start-up draws would repeat the
    first point), replays the history, so any worker, a resume or a rerun asks for the same point.
    Samplers that ignore the values (``qmc``, ``random``) give :func:`suggest_blind`'s point."""
    if sampler != "tpe":
        return suggest_blind(space, len(history), seed, sampler)
    sam = optuna.samplers.TPESampler(seed=(int(seed) * 1_000_003 + len(history)) % 2**31)
    with quiet_optuna():  # a throw-away study: nothing for the user's console
        study = optuna.create_study(
            storage=optuna.storages.InMemoryStorage(), sampler=sam, direction=direction
        )
    for params, value in history:
        state = (
            optuna.trial.TrialState.COMPLETE
            if value is not None and math.isfinite(value)
            else optuna.trial.TrialState.FAIL
        )
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                params=dict(params),
                distributions=dict(space),
                value=value if state.name == "COMPLETE" else None,
            )
        )
    trial = study.ask(dict(space))
    return dict(trial.params)


def suggest_blind(
    space: Mapping[str, BaseDistribution], index: int, seed: int, sampler: str
) -> dict[str, float]:
    """Tuning trial ``index``'s point for a sampler that never looks at results: ``qmc``, point
    ``index`` of :func:`quasi_random`; ``random``, a draw of a random sampler seeded by ``seed``
    and ``index``. Known in advance, so every tuning trial can be planned at once."""
    if sampler == "qmc":
        return quasi_random(space, index, seed)
    sam = optuna.samplers.RandomSampler(seed=(int(seed) * 1_000_003 + index) % 2**31)
    with quiet_optuna():
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sam)
    return dict(study.ask(dict(space)).params)


_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29)


def quasi_random(space: Mapping[str, BaseDistribution], index: int, seed: int) -> dict[str, float]:
    """Point ``index`` of a randomly shifted Halton sequence (dimension j: base ``_PRIMES[j]``,
    shifted modulo 1 by a draw seeded with ``seed``), mapped onto ``space`` (log scales in log space).

    Quasi-random search (Bousquet et al. 2017; how AlgoPerf tunes its baselines): with a budget of a
    few trials, random draws leave wide gaps (8 log-uniform draws over six decades can miss two
    decades in a row), while the first 2^k points of this sequence are 2^k learning rates evenly
    spaced over the (log) range, shifted. With the same ``seed`` every contender gets the same points."""
    shift = np.random.default_rng(int(seed)).random(len(space))
    out = {}
    for j, (name, dist) in enumerate(space.items()):
        assert isinstance(dist, FloatDistribution)
        base, i, f, u = _PRIMES[j], index, 1.0, 0.0
        while i:  # radical inverse of ``index`` in base ``base``
            f /= base
            u += f * (i % base)
            i //= base
        u = (u + shift[j]) % 1.0
        if dist.log:
            out[name] = math.exp(math.log(dist.low) + u * (math.log(dist.high) - math.log(dist.low)))
        else:
            out[name] = dist.low + u * (dist.high - dist.low)
    return out
