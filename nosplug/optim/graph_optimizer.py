"""GraphOptimizer: a ``torch.optim.Optimizer`` that executes any genome.

Parameters of a group are processed as flat chunks (one per device/dtype/step), so a genome
costs one tensor op per primitive per chunk instead of one per parameter tensor. Per-parameter
state (what ``state_dict()`` saves) consists of views into the chunk's flat buffers; after
``load_state_dict`` the flat buffers are rebuilt from the loaded per-parameter tensors.

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
from nosplug.optim.compiled import compile_program, compiled_step
from nosplug.optim.executor import EagerChunk, add_update, all_finite, eager_step
from nosplug.optim.lowering import Plan
from nosplug.optim.program import MOMENTUM_KEY, Program, compile_genome
from nosplug.primitives.base import ExecContext
from nosplug.primitives.registry import Registry

NONFINITE_POLICIES = ("raise", "skip")


class NonFiniteUpdateError(FloatingPointError):
    """The genome produced a NaN or inf update; the weights were left untouched."""


@dataclass
class _Chunk:
    params: list[Tensor]
    sizes: list[int]
    state: dict[str, Tensor]
    ctx: ExecContext
    generation: int
    key: tuple[int, ...] = field(default_factory=tuple)
    eager: EagerChunk | None = None  # buffers of the lowered eager step, made on first use
    states: list[dict[str, Any]] = field(default_factory=list)  # optimizer.state[p] of each param

    def advance(self, step: int) -> None:
        for st in self.states:
            st["step"] = step + 1


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
    ) -> None:
        if isinstance(genome, str):
            from nosplug import zoo

            genome = zoo.load(genome)
        if nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {nonfinite!r}")
        defaults_meta = genome.meta.get("defaults", {}) if isinstance(genome.meta, dict) else {}
        lr = float(defaults_meta.get("lr", 1e-3)) if lr is None else float(lr)
        momentum = float(defaults_meta.get("momentum", 0.9)) if momentum is None else float(momentum)
        if lr < 0:
            raise ValueError(f"invalid learning rate: {lr}")
        if total_steps is not None and total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
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
        self._generation = 0
        self._chunks: dict[tuple, _Chunk] = {}
        # group index -> (params list, its length, which grads were None, generation, chunks)
        self._partitions: dict[int, tuple[list[Tensor], int, tuple[bool, ...], int, list[_Chunk]]] = {}
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
        for gi, group in enumerate(self.param_groups):
            for chunk in self._group_chunks(gi, group):
                self._step_chunk(group, chunk)
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
        self._chunks.clear()

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["nosplug"] = {
            "genome_hash": self.genome.canonical_hash(),
            "total_steps": self.total_steps,
            "nonfinite_steps": self.nonfinite_steps,
        }
        return sd

    # -- internals ------------------------------------------------------------------------
    def _group_chunks(self, gi: int, group: dict[str, Any]) -> list[_Chunk]:
        """The group's chunks, recomputed only when the set of parameters with a gradient changes
        (chunk members share their step count, and only steps without a gradient split them)."""
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
        chunks = [self._chunk(gi, ps) for ps in self._partition(group)]
        self._partitions[gi] = (params, len(params), missing, self._generation, chunks)
        return chunks

    def _partition(self, group: dict[str, Any]) -> list[list[Tensor]]:
        parts: dict[tuple, list[Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("GraphOptimizer does not support sparse gradients")
            step = self.state[p].get("step", 0) if p in self.state else 0
            parts.setdefault((p.device, p.dtype, int(step)), []).append(p)
        return list(parts.values())

    def _chunk(self, gi: int, params: list[Tensor]) -> _Chunk:
        key = (gi, *(id(p) for p in params))
        chunk = self._chunks.get(key)
        if chunk is not None and chunk.generation == self._generation:
            return chunk
        prog = self.program
        sizes = [p.numel() for p in params]
        ref = params[0]
        n = sum(sizes)
        flat_state: dict[str, Tensor] = {}
        for k in prog.state_keys():
            parts = []
            for p in params:
                st = self.state[p]
                parts.append(
                    st[k].reshape(-1) if k in st else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                )
            flat_state[k] = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
        # per-parameter state entries become views into the flat buffers
        offset = 0
        for p, size in zip(params, sizes):
            st = self.state[p]
            st.setdefault("step", 0)
            for k, buf in flat_state.items():
                st[k] = buf[offset : offset + size].view_as(p)
            offset += size
        seg_ids = None
        if prog.needs_segments and len(params) > 1:
            seg_ids = torch.repeat_interleave(
                torch.arange(len(params), device=ref.device), torch.tensor(sizes, device=ref.device)
            )
        ctx = ExecContext(
            numel=n, segment_ids=seg_ids, num_segments=len(params), generator=self._generator(ref.device)
        )
        # drop chunks of the same group that these params no longer belong to
        for other in [k for k in self._chunks if k[0] == gi and set(k[1:]) & set(key[1:])]:
            del self._chunks[other]
        chunk = _Chunk(params, sizes, flat_state, ctx, self._generation, key)
        chunk.states = [self.state[p] for p in params]
        self._chunks[key] = chunk
        return chunk

    def _generator(self, device: torch.device) -> torch.Generator | None:
        """The seeded generator of ``device`` (None without a seed: torch's default generator)."""
        if self._seed is None:
            return None
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device).manual_seed(self._seed)
        return gen

    def _step_chunk(self, group: dict[str, Any], chunk: _Chunk) -> None:
        prog, params = self.program, chunk.params
        lr, mu = group["lr"], group["momentum"]
        step = int(chunk.states[0]["step"])
        if chunk.eager is None:
            chunk.eager = EagerChunk.create(params, self._plan, chunk.state)
        if self._fused is not None:
            finite, nxt = compiled_step(
                self._fused,
                prog,
                chunk.eager,
                chunk.state,
                chunk.ctx,
                step=step,
                total_steps=self.total_steps,
                lr=lr,
                momentum=mu,
            )
        elif not isinstance(lr, Tensor) and not isinstance(mu, Tensor):
            decays = prog.decay_values(step, self.total_steps) if prog.decays else ()
            finite, nxt = eager_step(
                prog,
                self._plan,
                chunk.eager,
                chunk.state,
                chunk.ctx,
                step=step,
                decays=decays,
                lr=float(lr),
                momentum=float(mu),
            )
        else:  # tensor-valued lr or momentum: the reference interpreter
            finite, nxt = self._step_reference(chunk, step, lr, mu)
        if not finite:
            self._nonfinite(chunk, step)
            return
        if nxt is not None:  # swap the written momentum buffer in; the old one is the next spare
            chunk.eager.spare = chunk.state[MOMENTUM_KEY]
            chunk.state[MOMENTUM_KEY] = nxt
            for st, view in zip(chunk.states, chunk.eager.views(nxt)):
                st[MOMENTUM_KEY] = view
        chunk.advance(step)

    def _step_reference(
        self, chunk: _Chunk, step: int, lr: float | Tensor, mu: float | Tensor
    ) -> tuple[bool, Tensor | None]:
        prog, eager = self.program, chunk.eager
        assert eager is not None
        g, w = eager.gather(prog.needs_weight)
        delta = prog.delta(
            chunk.state,
            w if w is not None else g,
            g,
            step=step,
            total_steps=self.total_steps,
            lr=lr,
            momentum=mu,
            ctx=chunk.ctx,
            commit_momentum=False,
        )
        nxt = chunk.state.pop("_momentum_next", None)
        if not all_finite(delta):
            return False, None
        if delta.dim() == 0 or delta.numel() != g.numel():
            delta = delta.expand(g.numel()).contiguous()
        add_update(eager, delta)
        if nxt is None:
            return True, None
        return True, eager.own("spare").copy_(nxt)

    def _nonfinite(self, chunk: _Chunk, step: int) -> None:
        """Count a skipped step (the weights were not touched) or raise."""
        self.last_step_nonfinite = True
        self.nonfinite_steps += 1
        if self.nonfinite == "raise":
            raise NonFiniteUpdateError(
                f"genome {self.genome.canonical_hash()} produced a non-finite update at step {step + 1}; "
                "the weights were not changed"
            )
        chunk.advance(step)
