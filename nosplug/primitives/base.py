"""The primitive types a search space is made of.

Every operand, operation and decay schedule is a small frozen record: a name, a tensor
function, and the text/LaTeX templates used by :meth:`nosplug.Genome.formula`. Plugins
(built-in ones included) return these records from the hooks in :mod:`nosplug.hookspecs`;
:class:`nosplug.primitives.registry.Registry` collects them.

Templates use ``$0`` and ``$1`` for the arguments (``str.format`` braces would clash with
LaTeX). ``infix=True`` tells the renderer to parenthesise compound arguments.

A record owns every form of its primitive, so each layer finds what it runs on the record itself
and a plugin's primitive gets every path a built-in one gets:

* ``fn`` (``compute`` for operands): the reference function, what the interpreter, the integrity
  check and ``compile=True`` run; the one field every record needs;
* ``kernel`` (ops): the allocation-free form of GraphOptimizer's lowered plan, a
  :data:`~nosplug.primitives.kernel.Lowering` (see :mod:`nosplug.primitives.kernel`); operands
  declare theirs with ``form``. Without one the plan calls ``fn``;
* ``batched`` (stochastic ops): the op given its random draws, with which the batched integrity
  check replays the single check's random stream; without it, genomes using the op are checked
  one at a time (deterministic ops need nothing: the batched check calls ``fn``);
* ``source`` (all): a :class:`SourceForm`, the same computation as Python source over ``torch`` and
  ``math``, which :mod:`nosplug.export` copies into a standalone optimizer module. A primitive
  without one works everywhere in nosplug but cannot be exported.

A copy made with ``dataclasses.replace`` and another function must reset ``kernel``, ``batched``
and ``source`` (or ``form``): each must equal the function it sits next to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

#: A record's ``kernel`` field: ``(KernelRequest) -> Kernel | None``, see
#: :data:`nosplug.primitives.kernel.Lowering` (named loosely here, which the kernel module imports).
Lowering = Callable[[Any], Any]

#: Tags that put a primitive into the paper's default search space.
PAPER = "paper"

Value = Tensor | float


@dataclass(frozen=True)
class SourceForm:
    """A primitive written as Python source, for optimizers exported as plain PyTorch.

    It is a field of the primitive's record (not a separate hook) so that the source sits next to
    the function it must equal, and so that records made by factories (operand families such as
    ``ema(power, beta)``, ``dropout(p)``, a plugin's ``lion_interp_op(beta1, beta2)``) carry the
    source of exactly the parameters they were built with. The export's tests check every
    built-in source form against its record's function.

    Templates are Python expressions that may use only ``torch``, ``math`` and the functions in
    ``helpers``; ``$name`` placeholders are replaced by variables of the exported step:

    * unary and binary ops: ``$0``, ``$1`` (tensors; 0-d tensors for constants); stochastic ops
      also ``$rng`` (a ``torch.Generator`` or None); state-holding ops ``$0``, ``$state`` (the
      node's state tensor, updated in place) and ``$step`` (1-based step number);
    * operands: ``$g`` (gradient), ``$w`` (weight), ``$step`` (1-based) and ``$ema0``, ``$ema1``,
      ... (the raw buffers of the operand's ``requires``, already advanced this step);
    * schedules: ``$t`` (float64 tensor of 0-based steps) and ``$T`` (total steps); decay ops:
      ``$0``, ``$1``.

    The exported optimizer runs a genome the way GraphOptimizer does: on the flat buffers of a
    chunk of parameters (one 1-d tensor per value, the parameters of a chunk laid end to end), so
    ``expr`` is applied to flat tensors; per-tensor ops (``needs_ctx`` without ``stochastic``) get
    each parameter's slice of the chunk in turn.

    Attributes:
        expr: the computation for single tensors (and flat chunks).
        foreach: the same over lists of tensors (one per parameter, equal lengths), returning a new
            list, ideally with ``torch._foreach_*`` ops. Optional: the export uses it (with
            one-element lists) only when ``expr`` is None.
        helpers: module-level source (functions) the templates call; copied once into the module.
        scalar: operands only: ``expr`` is a number, the same for every element (a constant).
        out: optional statements that write the value into the flat buffer ``$out`` instead of
            allocating it, with ``$tmp`` a scratch buffer of the same size; the placeholders of
            ``expr``, except that constant arguments arrive expanded to full (stride-0) tensors.
            ``$out`` may be the buffer of ``$0`` (never of ``$1``), as for a kernel's out-form.
            It must perform ``expr``'s float operations in the same order. With it an exported
            step allocates nothing for this primitive; without it the export evaluates ``expr``.
        out_nonneg: unary ops: the out form for an argument known to be +0 or more (or NaN) in
            every element, where an op can skip work (``sqrt(|x|)`` is ``sqrt(x)``) with the same
            results; exactly ``$0`` makes the value the argument itself. GraphOptimizer's kernels
            skip the same work, so the export keeps its bit-identical results.
    """

    expr: str | None
    foreach: str | None = None
    helpers: str = ""
    scalar: bool = False
    out: str | None = None
    out_nonneg: str | None = None


@dataclass(frozen=True)
class EMASpec:
    """An exponential moving average of ``g**power`` with decay ``beta``.

    Operands that read the same EMA share one state slot per parameter, so the paper's
    v, s and lambda buffers are stored once however many operands use them.
    """

    power: int
    beta: float

    @property
    def key(self) -> str:
        return f"ema_g{self.power}_b{self.beta!r}"

    def update(self, buf: Tensor, g: Tensor) -> None:
        """``buf <- beta * buf + (1 - beta) * g**power`` in place, with the reference's float
        operations (the interpreter and the batched integrity check must round alike)."""
        if self.power == 1:
            buf.lerp_(g, 1.0 - self.beta)
        elif self.power == 2:
            buf.mul_(self.beta).addcmul_(g, g, value=1.0 - self.beta)
        else:
            buf.mul_(self.beta).add_(g.pow(self.power), alpha=1.0 - self.beta)


@dataclass(frozen=True)
class Operand:
    """A leaf of the update graph, computed from the gradient, the weight and optimizer state.

    ``compute(ctx)`` returns a tensor shaped like the parameters, or a Python float for
    constants (kept scalar so they cost nothing). ``requires`` lists the EMA slots it reads.
    """

    name: str
    compute: Callable[[OperandContext], Value]
    text: str
    latex: str
    requires: tuple[EMASpec, ...] = ()
    tags: frozenset[str] = frozenset({PAPER})
    description: str = ""
    #: True if ``compute`` reads the weight (the optimizer then gathers weights for it).
    uses_weight: bool = False
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None
    #: What ``compute`` is, for the optimizer's allocation-free lowering (nosplug.optim.lowering):
    #: ``("grad", power)``, ``("ema", EMASpec, bias_correction)``, ``("const", value)``,
    #: ``("weight", scale)``, ``("sign_grad",)``, ``("sign_ema", EMASpec)``,
    #: ``("qh", power, EMASpec, nu)``, ``("aggmo", power, EMASpec, c)``. Empty: only ``compute``
    #: is known and the optimizer calls it (what a plugin's operand gets unless it says more;
    #: a copy made with ``dataclasses.replace`` and another ``compute`` must reset it).
    form: tuple[Any, ...] = ()


@dataclass(frozen=True)
class OperandFamily:
    """A parameterised operand, referenced in genomes as ``name(key=value, ...)``.

    ``build(**params)`` returns the concrete :class:`Operand`; ``defaults`` documents the
    accepted parameters and their default values (unknown parameters are rejected).
    """

    name: str
    build: Callable[..., Operand]
    defaults: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class UnaryOp:
    """A scalar (elementwise) unary operation.

    ``per_tensor`` ops (for example clip-by-norm) reduce over each parameter tensor and
    receive the :class:`ExecContext` as second argument; so do ``stochastic`` ones (dropout),
    which draw from ``ctx.rng(x)``, a generator on the input's device (:func:`stochastic_unary`
    builds such an op from its ``batched`` form).
    """

    name: str
    fn: Callable[..., Tensor]
    text: str
    latex: str
    tags: frozenset[str] = frozenset({PAPER})
    needs_ctx: bool = False
    stochastic: bool = False
    description: str = ""
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None
    #: GraphOptimizer's allocation-free form (nosplug.primitives.kernel); None: it calls ``fn``.
    kernel: Lowering | None = None
    #: Stochastic ops: ``batched(x, u)`` is the op given ``u``, its uniform draws shaped like
    #: ``x`` (``fn`` must draw exactly ``torch.rand(x.shape, generator=ctx.rng(x), dtype=x.dtype,
    #: device=x.device)`` once and return ``batched(x, u)``). None: not replayable, so the
    #: batched integrity check leaves genomes using it to the single check.
    batched: Callable[[Tensor, Tensor], Tensor] | None = None


@dataclass(frozen=True)
class StatefulOp:
    """A unary operation that keeps one state tensor per node instance and parameter.

    ``fn(x, state, ctx)`` reads and updates ``state`` in place and returns the output.
    The state starts as zeros shaped like the parameters.
    """

    name: str
    fn: Callable[[Tensor, Tensor, ExecContext], Tensor]
    text: str
    latex: str
    tags: frozenset[str] = frozenset({PAPER})
    description: str = ""
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None
    #: GraphOptimizer's allocation-free form (its request carries the node's ``state_key``).
    kernel: Lowering | None = None


@dataclass(frozen=True)
class BinaryOp:
    """A binary elementwise operation; ``commutative`` lets the canonical hash sort its inputs."""

    name: str
    fn: Callable[[Value, Value], Value]
    text: str
    latex: str
    commutative: bool = False
    infix: bool = False
    tags: frozenset[str] = frozenset({PAPER})
    description: str = ""
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None
    #: GraphOptimizer's allocation-free form (nosplug.primitives.kernel); None: it calls ``fn``.
    kernel: Lowering | None = None


@dataclass(frozen=True)
class Schedule:
    """A normalised-time schedule ``f(t, T)`` for decay graphs; ``t`` is a float tensor of steps."""

    name: str
    fn: Callable[[Tensor, int], Tensor]
    text: str
    latex: str
    tags: frozenset[str] = frozenset({PAPER})
    description: str = ""
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None


@dataclass(frozen=True)
class DecayUnaryOp:
    """A unary op allowed inside decay graphs (it should map [0, 1] into [0, 1])."""

    name: str
    fn: Callable[[Tensor], Tensor]
    text: str
    latex: str
    tags: frozenset[str] = frozenset({PAPER})
    description: str = ""
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None


@dataclass(frozen=True)
class DecayBinaryOp:
    """A binary op allowed inside decay graphs."""

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    text: str
    latex: str
    commutative: bool = False
    infix: bool = False
    tags: frozenset[str] = frozenset({PAPER})
    description: str = ""
    #: How the export writes this primitive; None: it cannot be exported.
    source: SourceForm | None = None


@dataclass
class ExecContext:
    """What per-tensor and stochastic ops need while a compiled genome runs.

    The parameters of one chunk are executed as one flat vector; per-tensor reductions stay per
    tensor through either ``segment_sizes`` (the tensors' sizes, laid end to end: what
    GraphOptimizer and the exported optimizer use) or ``segment_ids`` (every element's tensor:
    what the integrity checks use).

    ``generator`` seeds the draws of stochastic ops; they take it through :meth:`rng`, which
    hands out a generator on the device of the tensor being drawn for.
    """

    numel: int
    segment_ids: Tensor | None = None
    num_segments: int = 1
    generator: torch.Generator | None = None
    _cache: dict[str, Any] = field(default_factory=dict)
    segment_sizes: tuple[int, ...] | None = None

    def segment_sum(self, x: Tensor) -> Tensor:
        """Sum of ``x`` within each parameter tensor, broadcast back to every element."""
        if self.segment_sizes is not None:
            if len(self.segment_sizes) == 1:
                return x.sum().expand_as(x)
            sums = torch.stack([s.sum() for s in x.split(self.segment_sizes)])
            key = ("segment_sizes", x.device)
            sizes = self._cache.get(key)
            if sizes is None:
                sizes = self._cache[key] = torch.tensor(self.segment_sizes, device=x.device)
            return sums.repeat_interleave(sizes, output_size=x.numel())
        if self.segment_ids is None or self.num_segments == 1:
            return x.sum().expand_as(x)
        sums = torch.zeros(self.num_segments, dtype=x.dtype, device=x.device)
        sums.index_add_(0, self.segment_ids, x)
        return sums[self.segment_ids]

    def rng(self, like: Tensor) -> torch.Generator | None:
        """The generator to draw random numbers for ``like`` with: :attr:`generator` when it lives
        on ``like``'s device (None: torch's default generator of that device), else one made on
        that device from the same seed, kept for later draws (a generator can only fill tensors
        of its own device)."""
        return generator_on(self.generator, like.device, self._cache)

    def full(self, x: Value, like: Tensor | None = None) -> Tensor:
        """``x`` as a full flat tensor (constants are expanded)."""
        if isinstance(x, Tensor) and x.dim() == 1 and x.numel() == self.numel:
            return x
        ref = like
        if ref is None:
            raise ValueError("a reference tensor is needed to expand a constant")
        return torch.as_tensor(x, dtype=ref.dtype, device=ref.device).expand(self.numel).clone()


@dataclass
class OperandContext:
    """Inputs for :attr:`Operand.compute`: gradient, weight, 1-based step and EMA slots.

    EMA slots are updated before operands are computed, so ``ema()`` returns the value after
    this step's update (the paper's operands 17-19 rely on that).
    """

    g: Tensor
    w: Tensor
    step: int
    emas: Mapping[str, Tensor]
    _pow_cache: dict[int, Tensor] = field(default_factory=dict)
    #: ``1 - beta**step`` by beta, precomputed (a compiled step passes these as inputs: computed
    #: from a step tensor inside the fused loop, the power would be recomputed per element).
    corrections: Mapping[float, Tensor] | None = None

    def gpow(self, power: int) -> Tensor:
        if power == 1:
            return self.g
        cached = self._pow_cache.get(power)
        if cached is None:
            cached = self.g.pow(power) if power != 2 else self.g * self.g
            self._pow_cache[power] = cached
        return cached

    def ema(self, spec: EMASpec) -> Tensor:
        return self.emas[spec.key]

    def ema_hat(self, spec: EMASpec) -> Tensor:
        """Bias-corrected EMA, ``ema / (1 - beta**step)``."""
        return self.emas[spec.key] / bias_correction(spec.beta, self.step, self.corrections)


def bias_correction(beta: float, step: int | Tensor, corrections: Mapping[float, Tensor] | None) -> Any:
    """``1 - beta**step``, from ``corrections`` when the caller precomputed it."""
    if corrections is not None and beta in corrections:
        return corrections[beta]
    return 1.0 - beta**step


def generator_on(
    gen: torch.Generator | None, device: torch.device, cache: dict[str, Any] | None = None
) -> torch.Generator | None:
    """``gen`` if it lives on ``device`` (or is None), else a generator on ``device`` seeded with
    ``gen``'s seed: the same draws on a rerun, each device its own stream. ``cache`` keeps the
    ones made, so repeated calls continue one stream instead of restarting it."""
    if gen is None or _same_device(gen.device, device):
        return gen
    key = f"generator:{device}"
    made = cache.get(key) if cache is not None else None
    if made is None:
        made = torch.Generator(device=device).manual_seed(gen.initial_seed())
        if cache is not None:
            cache[key] = made
    return made


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cpu" or a.index == b.index:
        return True
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (current if a.index is None else a.index) == (current if b.index is None else b.index)


def stochastic_unary(
    name: str,
    batched: Callable[[Tensor, Tensor], Tensor],
    text: str,
    latex: str,
    **fields: Any,
) -> UnaryOp:
    """A stochastic unary op defined by ``batched(x, u)``, the op given its uniform draws ``u``
    (shaped like ``x``): its function draws ``u`` from ``ctx.rng(x)`` (a generator on x's device)
    and applies ``batched``, so the batched integrity check can replay it. ``fields`` are further
    :class:`UnaryOp` fields (tags, description, source, kernel)."""

    def fn(x: Tensor, ctx: ExecContext) -> Tensor:
        x = ctx.full(x, like=x)
        u = torch.rand(x.shape, generator=ctx.rng(x), dtype=x.dtype, device=x.device)
        return batched(x, u)

    return UnaryOp(name, fn, text, latex, needs_ctx=True, stochastic=True, batched=batched, **fields)


def tagged(tags: frozenset[str] | set[str] | None) -> frozenset[str]:
    return frozenset(tags or ())
