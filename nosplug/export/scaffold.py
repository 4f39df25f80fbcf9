"""The parts of an exported module that do not depend on the genome, as source text.

They restate, for a module that cannot import nosplug, what GraphOptimizer does: the per-chunk
partition of a param group, lazily created per-parameter state and the finiteness check. The
paper's warmup-hold-cosine schedule is :mod:`nosplug.optim.schedules`'s own source
(:func:`~nosplug.optim.schedules.schedule_source`), followed by ``RECOMMENDED_SCHEDULER``;
tests/test_export.py checks the exported schedule against nosplug's.
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

RECOMMENDED_SCHEDULER = '''\
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
