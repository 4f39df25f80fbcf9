"""The paper's base learning-rate schedule as a standard ``torch.optim.lr_scheduler``.

Linear warmup from 0 over ``warmup_steps``, hold at the peak for ``hold_steps``, then cosine
decay to 0 at ``total_steps`` (spec §4). With ``cycle_momentum`` the momentum coefficient runs
the inverse cycle (0.95 -> 0.85 during warmup, 0.85 while holding, back to 0.95), as in Smith's
one-cycle policy; it sets ``group['momentum']`` or the first of ``group['betas']``, so it works
with GraphOptimizer, SGD and Adam alike.

The exported optimizers (:mod:`nosplug.export`) carry these three definitions as their own source
(:func:`schedule_source`), so they are written with ``torch`` and ``math`` only, and without
``from __future__ import annotations`` (an exported module may import nothing else).
"""

import inspect
import math

import torch


def warmup_hold_cosine_factor(t: int, total_steps: int, warmup_steps: int, hold_steps: int) -> float:
    """Multiplier of the peak learning rate at 0-based step ``t``: linear warmup from 0, hold, cosine to 0."""
    if t < warmup_steps:
        return t / warmup_steps
    if t <= warmup_steps + hold_steps:
        return 1.0
    decay_len = max(1, total_steps - warmup_steps - hold_steps)
    progress = min(1.0, (t - warmup_steps - hold_steps) / decay_len)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cycled_momentum(
    t: int, total_steps: int, warmup_steps: int, hold_steps: int, low: float = 0.85, high: float = 0.95
) -> float:
    """The momentum coefficient at step ``t``: high -> low during warmup, low while holding, back to high."""
    if t < warmup_steps:
        return high - (high - low) * t / warmup_steps
    if t < warmup_steps + hold_steps:
        return low
    rest = max(1, total_steps - warmup_steps - hold_steps)
    return low + (high - low) * min(1.0, (t - warmup_steps - hold_steps) / rest)


class WarmupHoldCosine(torch.optim.lr_scheduler.LRScheduler):
    """The paper's base learning-rate schedule: linear warmup from 0, hold at the peak, cosine decay to 0.

    With ``cycle_momentum`` the momentum coefficient runs the inverse cycle (0.95 -> 0.85 during warmup,
    0.85 while holding, back to 0.95), as in Smith's one-cycle policy; it sets ``group["momentum"]``
    or the first of ``group["betas"]``, so it also drives torch's SGD and Adam. Call ``step()`` after
    every optimizer step.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        hold_steps: int = 0,
        *,
        cycle_momentum: bool = False,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        last_epoch: int = -1,
    ) -> None:
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if warmup_steps < 0 or hold_steps < 0 or warmup_steps + hold_steps > total_steps:
            raise ValueError(
                f"need 0 <= warmup_steps + hold_steps <= total_steps, got {warmup_steps} + {hold_steps} "
                f"> {total_steps}"
            )
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.hold_steps = int(hold_steps)
        self.cycle_momentum = cycle_momentum
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        super().__init__(optimizer, last_epoch)

    @classmethod
    def from_fractions(
        cls,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup: float = 0.0,
        hold: float = 0.0,
        **kwargs,
    ) -> "WarmupHoldCosine":
        """Warmup and hold given as fractions of ``total_steps`` (how zoo genomes store them)."""
        return cls(optimizer, total_steps, round(warmup * total_steps), round(hold * total_steps), **kwargs)

    def get_lr(self) -> list[float]:
        t = self.last_epoch
        factor = warmup_hold_cosine_factor(t, self.total_steps, self.warmup_steps, self.hold_steps)
        if self.cycle_momentum:
            mu = cycled_momentum(
                t, self.total_steps, self.warmup_steps, self.hold_steps, self.base_momentum, self.max_momentum
            )
            for group in self.optimizer.param_groups:
                if "momentum" in group:
                    group["momentum"] = mu
                elif "betas" in group:
                    group["betas"] = (mu, *tuple(group["betas"])[1:])
        return [base * factor for base in self.base_lrs]


def schedule_source() -> str:
    """The source of the three definitions above, as an exported module embeds them (read when a
    genome is exported, not at import)."""
    return "\n\n".join(
        inspect.getsource(obj) for obj in (warmup_hold_cosine_factor, cycled_momentum, WarmupHoldCosine)
    )
