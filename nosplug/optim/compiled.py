"""``GraphOptimizer(compile=True)``: one ``torch.compile``d function per genome and step.

The compiled function is the reference interpreter's step (:meth:`Program.delta_and_momentum`)
traced on a chunk's flat buffers, so inductor fuses the genome's element-wise ops, the EMA
updates, the momentum terms and the finiteness sum into a few loops. Around it, the workspace's
buffers (:mod:`nosplug.optim.chunks`) serve as inputs and outputs: the gradients are gathered
with one multi-tensor copy (or read in place when the chunk lies within one parameter), the update
and the next momentum are written into buffers the function receives (inductor stores into them
directly), and the guard (:class:`~nosplug.optim.chunks.Guard`) commits them, so a step
allocates nothing large and holds no more than the eager step.

Everything that changes from step to step (step, decay values, lr, momentum) is a tensor
argument, so schedulers never cause a recompilation. Compiled graphs are cached on disk by
inductor (its FX graph cache, on by default, under ``TORCHINDUCTOR_CACHE_DIR`` or
``/tmp/torchinductor_$USER``): a second process compiling the same genome for the same shapes
skips code generation and the C++ compiler (see docs/performance.md for what that saves).
"""

from __future__ import annotations

import types
from collections.abc import Callable

import torch
from torch import Tensor

from nosplug.optim.chunks import Chunk, Guard, Workspace
from nosplug.optim.program import MOMENTUM_KEY, Program
from nosplug.primitives.base import ExecContext

CompiledStep = Callable[..., Tensor]


def compile_program(program: Program) -> CompiledStep:
    """The compiled step of ``program``: writes the update into ``out`` and the next momentum
    into ``next_out`` (None without momentum), advances EMA and node state in place, and
    returns the update's sum in float64 (for the finiteness guard, computed in the same loops)."""

    betas = program.correction_betas()

    def step_fn(
        state, w, g, step, decays, corrections, lr, momentum, segment_ids, num_segments, out, next_out
    ):
        ctx = ExecContext(numel=g.numel(), segment_ids=segment_ids, num_segments=num_segments)
        delta, nxt = program.delta_and_momentum(
            state,
            w,
            g,
            step=step,
            lr=lr,
            momentum=momentum,
            ctx=ctx,
            decays=decays,
            corrections=dict(zip(betas, corrections.unbind())),
        )
        out.copy_(delta)  # a constant (0-d) delta broadcasts
        if nxt is not None:
            next_out.copy_(nxt)
        return out.sum(dtype=torch.float64 if out.device.type != "mps" else None)  # MPS: no float64

    # torch.compile caches compiled graphs per code object, so every optimizer of the process
    # would share (and keep re-guarding) one cache; a code object of its own per program keeps
    # each genome's graph separate and the recompilation limit out of reach.
    own = types.FunctionType(
        step_fn.__code__.replace(co_name=f"graph_step_{program.genome.canonical_hash()[:12]}"),
        step_fn.__globals__,
        closure=step_fn.__closure__,
    )
    return torch.compile(own, dynamic=None)


def compiled_step(
    fused: CompiledStep,
    program: Program,
    chunk: Chunk,
    ws: Workspace,
    ctx: ExecContext,
    guard: Guard,
    *,
    step: int,
    total_steps: int | None,
    lr: float | Tensor,
    momentum: float | Tensor,
    tag: object = None,
) -> bool | None:
    """One step through the compiled function; same contract as
    :func:`~nosplug.optim.executor.eager_step` (the guard's outcome)."""
    f64 = torch.float64
    g = chunk.gradient(chunk.scratch(ws, "grad") if not chunk.single else None)  # type: ignore[arg-type]
    w = None
    if program.needs_weight:
        w = chunk.weight(chunk.scratch(ws, "weight") if not chunk.single else None)  # type: ignore[arg-type]
    decays = program.decay_column(step, total_steps) if program.decays else torch.empty(0, dtype=f64)
    out = chunk.scratch(ws, "delta")
    next_out = chunk.scratch(ws, "next_momentum") if program.momentum != "none" else None
    segment_ids = None
    if program.needs_segments and not chunk.single:  # made per step: not memory kept between steps
        index = torch.arange(len(chunk.sizes), device=g.device)
        segment_ids = torch.repeat_interleave(index, chunk.sizes_tensor(g.device), output_size=chunk.numel)
    total = fused(
        chunk.state,
        w,  # None unless the genome reads weights (an alias of g would cost a recompilation)
        g,
        torch.tensor(step, dtype=f64),
        decays,
        torch.tensor([1.0 - b ** (step + 1) for b in program.correction_betas()], dtype=f64),
        torch.as_tensor(lr, dtype=f64),
        torch.as_tensor(momentum, dtype=f64),
        segment_ids,
        len(chunk.sizes),
        out,
        next_out,
    )
    return guard.commit(chunk, out, next_out, chunk.state.get(MOMENTUM_KEY), tag=tag, total=total)
