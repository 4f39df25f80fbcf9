"""The parts of an exported module that do not depend on the genome, as source text.

They restate, for a module that cannot import nosplug, what GraphOptimizer and
:mod:`nosplug.optim.schedules` do: the per-chunk partition of a param group, lazily created
per-parameter state, the finiteness check, and the paper's warmup-hold-cosine schedule with
cycled momentum. tests/test_export.py checks the exported schedule against nosplug's.
"""

from __future__ import annotations

ALL_FINITE = '''\
def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """True if no element is NaN or inf (cheap: a sum per tensor; exact only when the total is not finite)."""
    if bool(torch.isfinite(torch.stack([t.sum() for t in tensors]).sum())):
        return True
    return all(bool(torch.isfinite(t).all()) for t in tensors)
'''

STEP = '''\
    @torch.no_grad()
    def step(self, closure=None):
        """Update every parameter that has a gradient; returns the closure's loss, if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_step_nonfinite = False
        for group in self.param_groups:
            for params in self._partition(group):
                self._update(group, params)
        return loss

    def state_dict(self) -> dict:
        """The standard optimizer state dict, plus the genome's hash (checked when loading)."""
        state_dict = super().state_dict()
        state_dict["genome_hash"] = GENOME_HASH
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict of this class, or of nosplug's GraphOptimizer running the same genome
        (the state keys are the same, so a run started with nosplug can continue here)."""
        saved = state_dict.get("genome_hash") or (state_dict.get("nosplug") or {}).get("genome_hash")
        if saved is not None and saved != GENOME_HASH:
            raise ValueError(f"this state was saved for genome {saved}, not for {GENOME_HASH}")
        super().load_state_dict(state_dict)

    def _partition(self, group: dict) -> list[list[torch.Tensor]]:
        """The group's parameters that have a gradient, split by device, dtype and step count.

        Each part is updated with multi-tensor (foreach) ops and skipped as a whole if its update
        is not finite; these are the chunks nosplug's GraphOptimizer uses.
        """
        parts: dict[tuple, list[torch.Tensor]] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            step = self.state[p].get("step", 0) if p in self.state else 0
            parts.setdefault((p.device, p.dtype, int(step)), []).append(p)
        return list(parts.values())

    def _state(self, p: torch.Tensor) -> dict:
        """The state of parameter ``p``, its slots created as zeros on first use."""
        state = self.state[p]
        state.setdefault("step", 0)
        for key in STATE_KEYS:
            if key not in state:
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state
'''

RNG = '''\

    def _rng(self, device: torch.device) -> torch.Generator | None:
        """The dropout generator of ``device`` (seeded), or None for torch's global generator."""
        if self._seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[device]
'''

SCHEDULE = '''\
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
            raise ValueError(f"need 0 <= warmup + hold <= total_steps, got {warmup_steps} + {hold_steps}")
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
        """Warmup and hold given as fractions of ``total_steps``."""
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


def recommended_scheduler(optimizer: torch.optim.Optimizer, total_steps: int) -> WarmupHoldCosine | None:
    """The schedule the genome was evaluated with (see ``SCHEDULE``), or None for a constant learning rate."""
    if SCHEDULE is None:
        return None
    return WarmupHoldCosine.from_fractions(
        optimizer,
        total_steps,
        warmup=SCHEDULE["warmup"],
        hold=SCHEDULE["hold"],
        cycle_momentum=SCHEDULE["cycle_momentum"],
    )
'''
