"""GraphOptimizer: a ``torch.optim.Optimizer`` that executes any genome.

Parameters of a group are processed as flat *parts* (those with a gradient that share device,
dtype and step count), each stepped in *chunks* of at most ``chunk_size`` elements
(:mod:`nosplug.optim.chunks`), so a genome costs one tensor op per primitive per chunk instead
of one per parameter tensor, and the optimizer holds its state plus one workspace of a chunk's
scratch buffers per device and dtype. Per-parameter state (what ``state_dict()`` saves) consists
of views into the part's flat buffers; after ``load_state_dict`` the flat buffers are rebuilt
from the loaded per-parameter tensors.

The eager step runs the genome lowered (:mod:`nosplug.optim.lowering`: scalars folded into the
tensor ops, preallocated buffers) through :mod:`nosplug.optim.executor`; the reference
interpreter (:meth:`Program.delta`) serves tensor-valued learning rates or momenta, and
``compile=True`` traces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from nosplug.errors import UserError
from nosplug.genome.model import Genome
from nosplug.optim.chunks import Chunk, Guard, Part, Workspace, chunk_size_for, partition
from nosplug.optim.compiled import compile_program, compiled_step
from nosplug.optim.executor import SgdCheck, eager_step, sgd_step
from nosplug.optim.lowering import Plan
from nosplug.optim.program import MOMENTUM_KEY, Program, compile_genome
from nosplug.primitives.base import ExecContext
from nosplug.primitives.registry import Registry

NONFINITE_POLICIES = ("raise", "skip")


class NonFiniteUpdateError(FloatingPointError):
    """The genome produced a NaN or inf update; the weights were left untouched."""


@dataclass
class _Part:
    """A part of a param group (:class:`~nosplug.optim.chunks.Part`) with what its chunks run
    with: one execution context per chunk (segments, generator)."""

    layout: Part
    contexts: list[ExecContext]
    generation: int
    key: tuple[int, ...] = field(default_factory=tuple)


class GraphOptimizer(Optimizer):
    """Run ``genome`` as a drop-in optimizer.

    Args:
        params: parameters or param-group dicts, as for any ``torch.optim.Optimizer``.
        genome: a :class:`~nosplug.Genome`, or a zoo name such as ``"adam"``.
        lr: base learning rate (per group overridable); default from the genome's metadata.
        momentum: momentum coefficient mu for genomes with momentum (a scheduler such as
            :class:`~nosplug.optim.WarmupHoldCosine` may cycle it, as the paper does).
        total_steps: length of the run; required when the genome has decay functions,
            which depend on t / total_steps.
        nonfinite: ``"raise"`` raises :class:`NonFiniteUpdateError`, ``"skip"`` skips the
            update of that chunk and counts it in :attr:`nonfinite_steps`. Either way a NaN/inf
            is never written into the weights. (EMA state has already seen the gradient.)
        seed: seeds the generators of stochastic ops (dropout nodes): one per device, made on that
            device, so every draw comes from a generator on the parameters' own device (a
            rerun on the same device draws the same numbers; devices differ in their streams).
        compile: run each step's arithmetic as one ``torch.compile``d function, which fuses the
            genome's element-wise ops into one loop (:mod:`nosplug.optim.compiled`; close to
            torch's fused Adam kernel, see docs/performance.md). The first step pays the
            compilation (about ten seconds on CPU; a second process finds it in inductor's disk
            cache and pays about two), so it pays for long training runs, not for short search
            evaluations. Step-dependent values (step, decays, lr, momentum) enter as tensors,
            so schedulers never trigger a recompilation. Genomes with stochastic ops (dropout)
            always run eagerly; :attr:`compiled` tells which path is in use.
        exact: the eager step computes exactly the reference interpreter's float operations
            (bit-identical to :meth:`Program.delta` and to the exported optimizer), only without
            allocations and copies. ``exact=False`` also folds per-step scalars (bias corrections,
            decay values, constants, weight factors, the learning rate) into the tensor ops,
            which saves a pass over the parameters per folded scalar but rounds differently:
            results then differ from the exported optimizer in the last bits, which genomes with
            cancellations amplify.
        chunk_size: elements per chunk (default :func:`nosplug.optim.chunks.chunk_size_for` the
            device: 2**22 on the CPU, 10**7 elsewhere). The optimizer's memory beyond torch's for
            the same update is one workspace: a few buffers of one chunk's size per device and
            dtype. A non-finite update skips its chunk; dropout draws once per chunk. Parts no
            larger than a chunk (models up to 4M parameters on the CPU) are one chunk.

    Non-finite updates are checked per chunk. On the CPU each check is read at once; on an
    accelerator it stays on the device (the update applied only where finite) and the step reads
    all checks with one synchronisation at its end, where ``nonfinite="raise"`` then raises.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        genome: Genome | str,
        lr: float | None = None,
        momentum: float | None = None,
        total_steps: int | None = None,
        *,
        nonfinite: str = "raise",
        seed: int | None = None,
        registry: Registry | None = None,
        compile: bool = False,
        exact: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        if isinstance(genome, str):
            from nosplug import zoo

            genome = zoo.load(genome)
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        lr = genome.default_lr if lr is None else float(lr)
        momentum = genome.default("momentum", 0.9) if momentum is None else float(momentum)
        if lr < 0:
            raise ValueError(f"invalid learning rate: {lr}")
        if total_steps is not None and total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if chunk_size is not None and chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.genome = genome
        self.program: Program = compile_genome(genome, registry)
        if self.program.decays and total_steps is None:
            raise UserError(
                "this genome has decay functions, which depend on the run length: "
                "pass total_steps=... to GraphOptimizer"
            )
        self.total_steps = total_steps
        self.nonfinite = nonfinite
        self.nonfinite_steps = 0
        self.last_step_nonfinite = False
        self.chunk_size = chunk_size
        self._generation = 0
        self._parts: dict[tuple, _Part] = {}
        # group index -> (params list, its length, which grads were None, generation, parts)
        self._partitions: dict[int, tuple[list[Tensor], int, tuple[bool, ...], int, list[_Part]]] = {}
        self._workspaces: dict[tuple[torch.device, torch.dtype], Workspace] = {}
        self._sgd_checks: dict[torch.device, SgdCheck] = {}
        self._seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self.compiled = bool(compile) and not self.program.stochastic
        self._fused = compile_program(self.program) if self.compiled else None
        self.exact = bool(exact)
        self._plan = Plan(self.program, exact=self.exact)
        super().__init__(params, {"lr": lr, "momentum": momentum})

    # -- torch.optim contract -------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_step_nonfinite = False
        guards: dict[str, Guard] = {}
        for gi, group in enumerate(self.param_groups):
            for part in self._group_parts(gi, group):
                kind = part.layout.device.type
                guard = guards.get(kind)
                if guard is None:
                    guard = guards[kind] = Guard.for_device(part.layout.device)
                self._step_part(group, part, guard)
        bad = [tag for guard in guards.values() for tag in guard.settle()]  # one sync per device
        if bad:
            self._nonfinite(len(bad), bad[0])  # type: ignore[arg-type]
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        meta = state_dict.get("nosplug")
        if meta is not None and meta.get("genome_hash") not in (None, self.genome.canonical_hash()):
            raise UserError(
                f"optimizer state was saved for genome {meta.get('genome_hash')} but this optimizer runs "
                f"genome {self.genome.canonical_hash()}"
            )
        super().load_state_dict(state_dict)
        if meta is not None:
            self.nonfinite_steps = int(meta.get("nonfinite_steps", 0))
        self._generation += 1
        self._parts.clear()

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["nosplug"] = {
            "genome_hash": self.genome.canonical_hash(),
            "total_steps": self.total_steps,
            "nonfinite_steps": self.nonfinite_steps,
        }
        return sd

    # -- internals ------------------------------------------------------------------------
    def _group_parts(self, gi: int, group: dict[str, Any]) -> list[_Part]:
        """The group's parts, recomputed only when the set of parameters with a gradient changes
        (part members share their step count, and only steps without a gradient split them)."""
        params = group["params"]
        missing = tuple(p.grad is None for p in params)
        cached = self._partitions.get(gi)
        if (
            cached is not None
            and cached[0] is params
            and cached[1] == len(params)
            and cached[2] == missing
            and cached[3] == self._generation
        ):
            return cached[4]
        parts = [self._part(gi, ps) for ps in partition(params, self.state)]
        self._partitions[gi] = (params, len(params), missing, self._generation, parts)
        return parts

    def _part(self, gi: int, params: list[Tensor]) -> _Part:
        key = (gi, *(id(p) for p in params))
        part = self._parts.get(key)
        if part is not None and part.generation == self._generation:
            return part
        prog, ref = self.program, params[0]
        size = self.chunk_size or chunk_size_for(ref.device)
        states = [self.state[p] for p in params]
        layout = Part(params, states, prog.state_keys(), size, split=not prog.needs_segments)
        gen = self._generator(ref.device)
        contexts = [
            ExecContext(numel=c.numel, generator=gen, segment_sizes=c.sizes if prog.needs_segments else None)
            for c in layout.chunks
        ]
        self._workspace(ref).reserve(max(c.numel for c in layout.chunks))
        # drop parts of the same group that these params no longer belong to
        for other in [k for k in self._parts if k[0] == gi and set(k[1:]) & set(key[1:])]:
            del self._parts[other]
        part = _Part(layout, contexts, self._generation, key)
        self._parts[key] = part
        return part

    def _workspace(self, ref: Tensor) -> Workspace:
        ws = self._workspaces.get((ref.device, ref.dtype))
        if ws is None:
            ws = self._workspaces[(ref.device, ref.dtype)] = Workspace(ref.dtype, ref.device)
        return ws

    def _generator(self, device: torch.device) -> torch.Generator | None:
        """The seeded generator of ``device`` (None without a seed: torch's default generator)."""
        if self._seed is None:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device).manual_seed(self._seed)
        return gen

    def _step_part(self, group: dict[str, Any], part: _Part, guard: Guard) -> None:
        prog, layout = self.program, part.layout
        lr, mu = group["lr"], group["momentum"]
        step = layout.step
        ws = self._workspace(layout.params[0])
        tensor_valued = isinstance(lr, Tensor) or isinstance(mu, Tensor)
        if (
            self._fused is None
            and not tensor_valued
            and self._plan.gradient_only
            and prog.momentum == "none"
            and len(layout.params) > 1
            and sgd_step(prog, self._plan, layout.params, float(lr), guard, self._sgd_check(layout), step)
        ):
            layout.advance(step)
            return
        decays = prog.decay_values(step, self.total_steps) if prog.decays and not tensor_valued else ()
        for chunk, ctx in zip(layout.chunks, part.contexts):
            if self._fused is not None:
                finite = compiled_step(
                    self._fused,
                    prog,
                    chunk,
                    ws,
                    ctx,
                    guard,
                    step=step,
                    total_steps=self.total_steps,
                    lr=lr,
                    momentum=mu,
                    tag=step,
                )
            elif not tensor_valued:
                finite = eager_step(
                    prog,
                    self._plan,
                    chunk,
                    ws,
                    ctx,
                    guard,
                    step=step,
                    decays=decays,
                    lr=float(lr),
                    momentum=float(mu),
                    tag=step,
                )
            else:  # tensor-valued lr or momentum: the reference interpreter
                finite = self._step_reference(chunk, ws, ctx, guard, step, lr, mu)
            if finite is False:
                self._nonfinite(1, step)
        layout.advance(step)

    def _sgd_check(self, layout: Part) -> SgdCheck:
        device = layout.device
        check = self._sgd_checks.get(device)
        if check is None:
            check = self._sgd_checks[device] = SgdCheck(
                torch.zeros(1, device=device), torch.ones(1, device=device)
            )
        return check

    def _step_reference(
        self, chunk: Chunk, ws: Workspace, ctx: ExecContext, guard: Guard, step: int, lr, mu
    ) -> bool | None:
        prog = self.program
        g = chunk.gradient(chunk.scratch(ws, "grad") if not chunk.single else None)  # type: ignore[arg-type]
        w = g
        if prog.needs_weight:
            w = chunk.weight(chunk.scratch(ws, "weight") if not chunk.single else None)  # type: ignore[arg-type]
        state = dict(chunk.state)
        delta = prog.delta(
            state,
            w,
            g,
            step=step,
            total_steps=self.total_steps,
            lr=lr,
            momentum=mu,
            ctx=ctx,
            commit_momentum=False,
        )
        nxt = state.pop("_momentum_next", None)
        if delta.dim() == 0 or delta.numel() != g.numel():
            delta = delta.expand(g.numel()).contiguous()
        return guard.commit(chunk, delta, nxt, chunk.state.get(MOMENTUM_KEY), tag=step)

    def _nonfinite(self, count: int, step: int) -> None:
        """Count ``count`` skipped chunks (their weights were not touched) or raise."""
        self.last_step_nonfinite = True
        self.nonfinite_steps += count
        if self.nonfinite == "raise":
            raise NonFiniteUpdateError(
                f"genome {self.genome.canonical_hash()} produced a non-finite update at step {step + 1}; "
                "the weights were not changed where it was not finite"
            )
