"""The sweep's rates trained side by side in one model: a task's grouped model or ``vmap``.

K copies of one freshly initialised model (every copy starts from the same weights) train at K
learning rates at once: a task's grouped model (K copies as grouped convolutions or batched
matrix products) or the parameters stacked K times and run under ``torch.func.vmap``. One
:class:`~nosplug.evaluation.batched.BatchedProgramOptimizer` steps every copy at its own rate;
a copy that diverges or misses the run gate is frozen while the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from nosplug.evaluation.batched import BatchedProgramOptimizer
from nosplug.evaluation.runs import RunSetup, SweepResult, passes_gate
from nosplug.genome.model import Genome
from nosplug.optim.program import compile_genome


class _Copies:
    """K copies of one freshly initialised model: per-copy losses and training-metric sums."""

    def __init__(self, s: RunSetup, seed: int, k: int, mode: str) -> None:
        self.task, self.k = s.task, k
        model = s.task.model(seed, s.device)
        if mode == "grouped":
            self.grouped = s.task.grouped_model(model, k)
            if self.grouped is None:
                raise ValueError(f"task {s.task.name} has no grouped model")
            self.params = [q for q in self.grouped.parameters() if q.requires_grad]
            return
        from torch.func import functional_call, vmap

        self.grouped = None
        self.stacked = {n: q.detach().expand(k, *q.shape).clone().requires_grad_(q.requires_grad)
                        for n, q in model.named_parameters()}  # fmt: skip
        self.buffers = {n: b.expand(k, *b.shape).clone() for n, b in model.named_buffers()}
        self.params = [q for q in self.stacked.values() if q.requires_grad]

        def one(params, buffers, x, y):
            out = functional_call(model, (params, buffers), (x,))
            loss = self.task.loss(out, y)
            return loss, self.task.batch_train_metric(out, y, loss).float()

        self._vmapped = vmap(one, in_dims=(0, 0, None, None), randomness="different")

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.grouped is not None:
            out = self.grouped(x)  # (batch, K, ...)
            losses = torch.stack([self.task.loss(out[:, i], y) for i in range(self.k)])
            sums = torch.stack(
                [
                    self.task.batch_train_metric(out[:, i].detach(), y, losses[i].detach()).float()
                    for i in range(self.k)
                ]
            )
            return losses, sums
        losses, sums = self._vmapped(self.stacked, self.buffers, x, y)
        return losses, sums.detach()


def plain_probe(s: RunSetup, seed: int) -> None:
    """One forward and backward of the task's model itself on a minibatch: what it raises is the
    model's own failure (a crash to report), not something ``vmap`` cannot do."""
    model = s.task.model(seed, s.device)
    x, y = s.task.batches(s.data, seed, s.preset.batch_size).next()
    with s.autocast():
        loss = s.task.loss(model(x), y)
    loss.backward()


def vmap_probe(s: RunSetup, seed: int) -> None:
    """One forward and backward of two stacked copies of the task's model under ``vmap`` on a
    minibatch of its training data; raises whatever ``vmap`` cannot do with this model (a
    recurrent layer without a batching rule, a custom autograd function without a vmap rule,
    in-place updates of a captured tensor, control flow that depends on the data)."""
    copies = _Copies(s, seed, 2, "vmap")
    x, y = s.task.batches(s.data, seed, s.preset.batch_size).next()
    with s.autocast():
        losses, _ = copies.forward(x, y)
    losses.sum().backward()
    if any(q.grad is None for q in copies.params):
        raise RuntimeError("vmap gave no gradient for some parameters")


def sweep_batched(
    s: RunSetup, genome: Genome, lrs: Sequence[float], seed: int, progress, mode: str
) -> SweepResult:
    p, k = s.preset, len(lrs)
    copies = _Copies(s, seed, k, mode)
    gen = torch.Generator(device=s.device).manual_seed(seed)  # dropout draws on the data's device
    opt = BatchedProgramOptimizer(copies.params, compile_genome(genome), lrs, p.schedule_steps, gen)
    batches = s.task.batches(s.data, seed, p.batch_size)
    best: list[float | None] = [None] * k
    stopped, diverged = [False] * k, [False] * k
    totals = torch.zeros(k, device=s.device)
    count = 0
    torch.manual_seed(seed + 1)  # dropout masks
    for t in range(p.sweep_steps):
        x, y = batches.next()
        with s.autocast():
            losses, sums = copies.forward(x, y)
        bad = ~torch.isfinite(losses) & opt.alive
        for i in torch.nonzero(bad).flatten().tolist():
            diverged[i] = True
        finite = torch.isfinite(losses) & opt.alive
        opt.zero_grad()
        torch.where(finite, losses, torch.zeros_like(losses)).sum().backward()
        totals += torch.where(finite, sums, torch.zeros_like(sums))
        count += len(y)
        for i in torch.nonzero(~finite).flatten().tolist():
            opt.freeze(i)
        alive_before = opt.alive.clone()
        opt.step(*s.schedule(t))
        for i in torch.nonzero(alive_before & ~opt.alive).flatten().tolist():
            diverged[i] = True  # the step froze it: its update turned non-finite
        if (t + 1) % p.sweep_epoch_steps and t + 1 != p.sweep_steps:
            continue
        epoch = t // p.sweep_epoch_steps
        values = (totals / max(1, count)).tolist()
        totals.zero_()
        count = 0
        for i in range(k):
            if stopped[i]:
                continue
            if not bool(opt.alive[i]):
                stopped[i] = True
                continue
            if best[i] is None or s.task.train_metric.better(values[i], best[i]):  # type: ignore[arg-type]
                best[i] = values[i]
            if epoch >= p.run_gate_from_epoch and not passes_gate(s, s.gates.run, values[i]):
                stopped[i] = True
                opt.freeze(i)
        if progress:
            progress("sweep_epoch", {"lrs": list(lrs), "values": values, "epoch": epoch})
        if all(stopped):
            break
    worst = s.task.train_metric.worst
    return SweepResult([worst if b is None else b for b in best], diverged, mode)
