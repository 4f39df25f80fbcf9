"""The parts of an exported module that do not depend on the genome, as source text.

The layout, guard and direct step are nosplug's own code (:func:`nosplug.optim.chunks.layout_source`,
embedded verbatim); what is here restates, for a module that cannot import nosplug, what
GraphOptimizer does around it: the step loop over parts and chunks, the cached partition, the
workspace, constants on the device, the dropout generators. The paper's warmup-hold-cosine
schedule is :mod:`nosplug.optim.schedules`'s own source
(:func:`~nosplug.optim.schedules.schedule_source`), followed by ``RECOMMENDED_SCHEDULER``;
tests/test_export.py checks the exported schedule against nosplug's.
"""

from __future__ import annotations

#: The step loop; ``{direct}`` is the direct step's line for gradient-only genomes, else empty.
STEP = '''\
    @torch.no_grad()
    def step(self, closure=None):
        """Update every parameter that has a gradient; returns the closure's loss, if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.last_step_nonfinite = False
        guards: dict = {{}}
        for gi, group in enumerate(self.param_groups):
            for part in self._parts_of(gi, group):
                guard = guards.get(part.device.type)
                if guard is None:
                    guard = guards[part.device.type] = Guard.for_device(part.device)
                step = part.step
{direct}                ws = self._workspace(part)
                for chunk in part.chunks:
                    if self._update(group, chunk, step, ws, guard) is False:
                        self._skipped(1)
                part.advance(step)
        self._skipped(sum(len(guard.settle()) for guard in guards.values()))  # accelerators: one read
        return loss

    def state_dict(self) -> dict:
        """The standard optimizer state dict, plus the genome's hash (checked when loading)."""
        state_dict = super().state_dict()
        state_dict["genome_hash"] = GENOME_HASH
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict of this class, or of nosplug's GraphOptimizer running the same genome
        (the state keys are the same, so a run started with nosplug can continue here)."""
        saved = state_dict.get("genome_hash") or (state_dict.get("nosplug") or {{}}).get("genome_hash")
        if saved is not None and saved != GENOME_HASH:
            raise ValueError(f"this state was saved for genome {{saved}}, not for {{GENOME_HASH}}")
        super().load_state_dict(state_dict)
        self._parts.clear()  # the loaded per-parameter state goes into new flat buffers

    def _parts_of(self, gi: int, group: dict) -> list:
        """The group's parts (its parameters with a gradient that share device, dtype and step
        count) with their flat state and chunks, rebuilt only when that set of parameters changes."""
        params = group["params"]
        missing = tuple(p.grad is None for p in params)
        cached = self._parts.get(gi)
        if cached is not None and cached[0] is params and cached[1] == missing:
            return cached[2]
        parts = []
        for members in partition(params, self.state):
            size = self.chunk_size or chunk_size_for(members[0].device)
            part = Part(members, [self.state[p] for p in members], STATE_KEYS, size, SPLIT_TENSORS)
            self._workspace(part).reserve(max(c.numel for c in part.chunks))
            parts.append(part)
        self._parts[gi] = (params, missing, parts)
        return parts

    def _workspace(self, part) -> Workspace:
        """The scratch buffers of the chunks of ``part``'s device and dtype (one chunk's worth)."""
        key = (part.device, part.dtype)
        ws = self._workspaces.get(key)
        if ws is None:
            ws = self._workspaces[key] = Workspace(part.dtype, part.device)
        return ws

    def _constant(self, value: float, like: torch.Tensor) -> torch.Tensor:
        """``value`` as a 0-d tensor of ``like``'s dtype on its device (filled there, so no copy
        from the host waits for the device), kept for later steps."""
        key = (value, like.dtype, like.device)
        c = self._constants.get(key)
        if c is None:
            if len(self._constants) > 64:
                self._constants.clear()
            c = self._constants[key] = torch.full((), value, dtype=like.dtype, device=like.device)
        return c

    def _skipped(self, n: int) -> None:
        if n:
            self.nonfinite_steps += n
            self.last_step_nonfinite = True
'''

DIRECT_LINE = """\
                if self._direct(group, part, guard):
                    part.advance(step)
                    continue
"""

DIRECT = '''
    def _direct(self, group: dict, part, guard) -> bool:
        """U is the gradient itself: ``p += c g`` straight from the gradients (see direct_sgd)."""
        if len(part.params) < 2:
            return False
        checks = self._checks.get(part.device)
        if checks is None:
            found, one = torch.zeros(1, device=part.device), torch.ones(1, device=part.device)
            checks = self._checks[part.device] = (found, one)
        return direct_sgd(part.params, {c_sign!r} * group["lr"], guard, *checks)
'''

RNG = '''
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
