"""Teacher optimizers for amalgamation, as functions on flat parameter vectors.

A teacher maps a gradient to an update ``delta`` (parameters move by ``-delta``) and carries its
own state; it is never differentiated through (spec §4.2), so any optimizer can teach:

* the analytical rules of spec §2.2 with the learning rates of §2.3 (``adam``, ``rmsprop``,
  ``sgd``, ``momentum``, ``addsign``, ``powersign``), their sign forms (``addsign_sign``,
  ``powersign_sign``, Bello et al.'s published definitions) and standard bias-corrected Adam
  (``adam_std``);
* any ``torch.optim`` optimizer: ``torch:Adagrad(lr=0.01)``, or any importable optimizer class:
  ``module:Class(...)``;
* any genome: ``genome:opt6`` (zoo name or JSON file), ``study:NAME`` or ``study:NAME#3`` (the
  best, or third best, genome of a nosplug search study), run by :class:`~nosplug.GraphOptimizer`.

A reference ``name(key=value, ...)`` overrides hyperparameters: ``adam(lr=0.01)``. References are
parsed by :func:`nosplug.refs.parse_ref`, the parser contenders and the command line share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from nosplug.errors import UserError

State = dict[str, Any]
EPS = 1e-10


class TeacherError(ValueError, UserError):
    """A teacher reference cannot be resolved."""


class Teacher:
    """One optimizer on one flat parameter vector: ``delta, state = step(g, state)``."""

    name: str = "teacher"
    lr: float = 0.0

    def init(self, theta: Tensor) -> State:
        return {}

    def init_layout(self, theta: Tensor, ranks: Tensor) -> State:
        """State at a problem reset, knowing the model's layout: ``ranks[j]`` is the number of
        dimensions of the tensor coordinate j belongs to. Rules that act on single coordinates
        ignore it (the default calls :meth:`init`); a learned teacher reads its rank features here."""
        return self.init(theta)

    def step(self, g: Tensor, state: State, theta: Tensor) -> tuple[Tensor, State]:
        raise NotImplementedError

    def warmup(self, g: Tensor, state: State, theta: Tensor) -> State:
        """Feed one gradient of the shared warm-up into the state; the update is not applied
        (spec §4.2). A learned teacher overrides it to keep its recurrent state frozen."""
        return self.step(g, state, theta)[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, lr={self.lr:g})"


@dataclass(repr=False)
class SGD(Teacher):
    lr: float = 0.2
    name: str = "sgd"

    def step(self, g, state, theta):
        return self.lr * g, state


@dataclass(repr=False)
class MomentumEMA(Teacher):
    """EMA-form momentum: m <- b m + (1-b) g, delta = lr m (lr 0.5 is heavy-ball SGD at 0.05)."""

    lr: float = 0.5
    beta: float = 0.9
    name: str = "momentum"

    def init(self, theta):
        return {"m": torch.zeros_like(theta)}

    def step(self, g, state, theta):
        m = self.beta * state["m"] + (1 - self.beta) * g
        return self.lr * m, {"m": m}


@dataclass(repr=False)
class RMSProp(Teacher):
    lr: float = 5e-3
    rho: float = 0.9
    eps: float = EPS
    name: str = "rmsprop"

    def init(self, theta):
        return {"s": torch.zeros_like(theta)}

    def step(self, g, state, theta):
        s = self.rho * state["s"] + (1 - self.rho) * g * g
        return self.lr * g / torch.sqrt(s + self.eps), {"s": s}


class _Moments(Teacher):
    beta1: float
    beta2: float

    def init(self, theta):
        return {"m": torch.zeros_like(theta), "v": torch.zeros_like(theta), "t": 0}

    def _moments(self, g: Tensor, state: State) -> tuple[Tensor, Tensor, int]:
        m = self.beta1 * state["m"] + (1 - self.beta1) * g
        v = self.beta2 * state["v"] + (1 - self.beta2) * g * g
        return m, v, state["t"] + 1


@dataclass(repr=False)
class AdamConst(_Moments):
    """The reference's Adam: constant de-biasing m/(1-b1), v/(1-b2), eps inside the root (spec §2.2)."""

    lr: float = 5e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = EPS
    name: str = "adam"

    def step(self, g, state, theta):
        m, v, t = self._moments(g, state)
        d = self.lr * (m / (1 - self.beta1)) / torch.sqrt(v / (1 - self.beta2) + self.eps)
        return d, {"m": m, "v": v, "t": t}


@dataclass(repr=False)
class AdamStd(_Moments):
    """Standard bias-corrected Adam (torch.optim.Adam's update)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: str = "adam_std"

    def step(self, g, state, theta):
        m, v, t = self._moments(g, state)
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return self.lr * m_hat / (torch.sqrt(v_hat) + self.eps), {"m": m, "v": v, "t": t}


@dataclass(repr=False)
class SignRule(_Moments):
    """AddSign / PowerSign. ``smooth`` is the reference's differentiable form (tanh(g/r)·tanh(m/r)
    with r = sqrt(v + eps)); otherwise Bello et al.'s sign(g)·sign(m) with m an EMA of g."""

    kind: str = "addsign"
    smooth: bool = True
    lr: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = EPS
    alpha: float = 1.0
    name: str = "addsign"

    def step(self, g, state, theta):
        m, v, t = self._moments(g, state)
        if self.smooth:
            r = torch.sqrt(v + self.eps)
            agree = torch.tanh(g / r) * torch.tanh(m / r)
        else:
            agree = torch.sign(g) * torch.sign(m)
        scale = (self.alpha + agree) if self.kind == "addsign" else torch.exp(agree)
        return self.lr * scale * g, {"m": m, "v": v, "t": t}


class TorchTeacher(Teacher):
    """Any ``torch.optim.Optimizer`` (GraphOptimizer included) on its own copy of the parameters."""

    def __init__(
        self, name: str, factory: Callable[[list[Tensor]], torch.optim.Optimizer], lr: float
    ) -> None:
        self.name, self.factory, self.lr = name, factory, lr

    def init(self, theta):
        p = theta.detach().clone().requires_grad_(True)
        return {"p": p, "opt": self.factory([p])}

    def step(self, g, state, theta):
        p: Tensor = state["p"]
        with torch.no_grad():
            p.copy_(theta)
        p.grad = g.detach().clone()
        state["opt"].step()
        with torch.no_grad():
            return theta.detach() - p.detach(), state


# ----------------------------------------------------------------------------- registry records
@dataclass(frozen=True)
class TeacherSpec:
    """A teacher plugin record: ``make(**overrides) -> Teacher``."""

    name: str
    make: Callable[..., Teacher]
    description: str
    pools: tuple[str, ...] = ()
    tags: frozenset[str] = field(default_factory=frozenset)


#: Learning rates of the choice-optimizer pools (spec §2.5, the reference's final values).
CHOICE_LRS = {"sgd": 2.0, "momentum": 2.0, "rmsprop": 5e-3, "adam": 2e-2, "powersign": 1.0, "addsign": 1.0}


def _teacher_specs() -> list[TeacherSpec]:
    from nosplug.primitives.registry import registry

    return list(registry().items["teachers"].values())


def pool_names() -> list[str]:
    """Every pool some registered teacher lists (built-ins: ``small``, ``large``)."""
    return sorted({pool for spec in _teacher_specs() for pool in spec.pools})


def pool_members(pool: str) -> list[str]:
    """The teachers whose records list ``pool``, in registration order (built-ins first): the
    paper's small = adam, rmsprop; large = + sgd, momentum, addsign, powersign; and any plugin
    teacher that names the pool."""
    members = [spec.name for spec in _teacher_specs() if pool in spec.pools]
    if not members:
        raise TeacherError(f"unknown pool {pool!r} (known: {', '.join(pool_names())})")
    return members


def builtin_teachers() -> list[TeacherSpec]:
    def sign(kind: str, smooth: bool, name: str) -> Callable[..., Teacher]:
        return lambda **kw: SignRule(kind=kind, smooth=smooth, name=name, **kw)

    return [
        TeacherSpec(
            "adam",
            lambda **kw: AdamConst(**kw),
            "reference Adam (constant de-biasing), lr 5e-3",
            ("small", "large"),
        ),
        TeacherSpec("rmsprop", lambda **kw: RMSProp(**kw), "RMSProp rho 0.9, lr 5e-3", ("small", "large")),
        TeacherSpec("sgd", lambda **kw: SGD(**kw), "SGD, lr 0.2", ("large",)),
        TeacherSpec("momentum", lambda **kw: MomentumEMA(**kw), "EMA momentum beta 0.9, lr 0.5", ("large",)),
        TeacherSpec("addsign", sign("addsign", True, "addsign"), "(1 + tanh·tanh) g, lr 0.1", ("large",)),
        TeacherSpec(
            "powersign", sign("powersign", True, "powersign"), "exp(tanh·tanh) g, lr 0.1", ("large",)
        ),
        TeacherSpec(
            "addsign_sign", sign("addsign", False, "addsign_sign"), "Bello et al.: (1 + sign(g)sign(m)) g"
        ),
        TeacherSpec(
            "powersign_sign", sign("powersign", False, "powersign_sign"), "Bello et al.: e^(sign(g)sign(m)) g"
        ),
        TeacherSpec("adam_std", lambda **kw: AdamStd(**kw), "standard bias-corrected Adam, lr 1e-3"),
    ]


def resolve_teacher(ref: str, *, total_steps: int | None = None, storage: str | None = None) -> Teacher:
    """A teacher from a reference string (see the module docstring; parsed by
    :func:`nosplug.refs.parse_ref`); ``study:NAME`` is looked up in ``storage`` (the amalgamation
    run's own storage; else $NOSPLUG_STORAGE or the default)."""
    from nosplug.refs import RefError, parse_ref

    try:
        parsed = parse_ref(ref)
    except RefError as exc:
        raise TeacherError(f"teacher {exc}") from None
    if parsed.kind == "class":
        return _class_teacher(parsed)
    if parsed.kind in ("genome", "study"):
        return _genome_teacher(parsed, total_steps, storage)
    if parsed.kind != "bare":
        raise TeacherError(
            f"teacher {parsed.text!r}: a {parsed.kind} is not a teacher (use a teacher name, "
            "torch:NAME(...), module:Class(...), genome:NAME or study:NAME)"
        )
    from nosplug.primitives.registry import UnknownPrimitiveError, registry

    try:
        spec: TeacherSpec = registry().get("teachers", parsed.target)
    except UnknownPrimitiveError as exc:
        raise TeacherError(
            f"{exc}; or use torch:NAME(...), module:Class(...), genome:NAME, study:NAME"
        ) from None
    try:
        return spec.make(**parsed.kwargs)
    except TypeError as exc:
        raise TeacherError(f"teacher {parsed.text!r}: {exc}") from None


def _class_teacher(ref) -> Teacher:
    """Any ``torch.optim.Optimizer`` class with its arguments (``torch:Adagrad(lr=0.01)``)."""
    from nosplug.refs import RefError

    try:
        cls = ref.import_class()
    except RefError as exc:
        raise TeacherError(f"teacher {exc}") from None
    kw = dict(ref.kwargs)
    try:
        cls([torch.zeros(2, 2, requires_grad=True)], **kw)
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"teacher {ref.text!r}: {exc}") from None
    return TorchTeacher(ref.text, lambda ps: cls(ps, **kw), float(kw.get("lr", math.nan)))


def _genome_teacher(ref, total_steps: int | None, storage: str | None = None) -> Teacher:
    from nosplug import zoo
    from nosplug.optim import GraphOptimizer

    if ref.kind == "study":
        from nosplug.study.kinds import best_genomes

        top = best_genomes(ref.target, storage, n=ref.rank)
        if len(top) < ref.rank:
            raise TeacherError(
                f"teacher {ref.text!r}: study {ref.target!r} has only {len(top)} finished genomes"
            )
        genome, _fit = top[ref.rank - 1]
    else:
        genome = zoo.load(ref.target)
    kw = dict(ref.kwargs)
    lr = kw.pop("lr", None)
    given_steps = kw.pop("total_steps", None)
    if kw:
        raise TeacherError(
            f"teacher {ref.text!r}: unknown option(s) {', '.join(kw)} (a genome takes lr, total_steps)"
        )
    lr = float(lr if lr is not None else genome.default_lr)
    decays = any(e.decay is not None for _n, _i, e in genome.edges())
    # decay functions depend on t / T: an explicit total_steps wins, else the caller's run length
    steps = int(given_steps if given_steps is not None else total_steps or 0) if decays else None
    if decays and not steps:
        raise TeacherError(
            f"teacher {ref.text!r}: the genome has decay functions; give the run length "
            f"({ref.without_args()}(total_steps=N))"
        )
    return TorchTeacher(ref.text, lambda ps: GraphOptimizer(ps, genome, lr=lr, total_steps=steps), lr)
