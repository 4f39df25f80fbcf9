"""How an optimizer step lays out its parameters: parts, chunks and one workspace.

* A **part** is the set of parameters of a param group that have a gradient and share device,
  dtype and step count. Its state is one flat buffer per state slot, the parameters laid end to
  end; each parameter's state entries (what ``state_dict()`` saves) are views into it.
* A **chunk** is a contiguous range of a part of at most ``chunk_size`` elements: whole small
  parameters packed together, or a slice of one large parameter. A step runs the genome chunk by
  chunk on flat tensors (one op per primitive and chunk, however many tensors it holds); the
  gradient is gathered into a scratch buffer unless the chunk lies within one parameter; a
  non-finite update skips its chunk; stochastic ops draw once per chunk.
* The **workspace** holds the scratch buffers of one chunk and is shared by all chunks of a
  device and dtype: it is what the optimizer holds beyond torch's own state for the same update
  (at most a few buffers of ``chunk_size`` elements, however large the model).

A parameter is only split across chunks when it is contiguous and the genome has no per-tensor
op (clip by norm reduces over whole tensors); such a parameter larger than ``chunk_size`` is a
chunk of its own.

The non-finite guard lives here too (:class:`Guard`): on the CPU each chunk's check is read at
once; on an accelerator it stays on the device (the update zeroed and the momentum kept where the
check fails) and the step reads all checks with one synchronisation at its end. So does the direct
step of genomes whose update is the gradient itself (:func:`direct_sgd`).

This module imports only torch: nosplug's GraphOptimizer uses it, and an exported optimizer embeds
its source (``nosplug genome export``), so both lay out, guard and step parameters alike (the same
chunks, hence the same random draws and the same skipped chunks).
"""

import torch

#: Where the non-finite guard is decided: None picks by device ("host" on the CPU, "device"
#: elsewhere); tests set "device" to run the accelerators' path on the CPU.
GUARD = None

#: Elements per chunk on the CPU and on accelerators. Larger there: every chunk costs a kernel
#: launch per op, which a chunk must outlast on the device; 10M elements keep a 200M-parameter
#: model's largest tensors (up to 10M elements) whole while Adam's four scratch buffers (160 MB in
#: float32) stay within a tenth of its state.
CHUNK_SIZE = {"cpu": 2**22, "other": 10_000_000}


def chunk_size_for(device: torch.device) -> int:
    """The default number of elements per chunk on ``device``."""
    return CHUNK_SIZE["cpu" if device.type == "cpu" else "other"]


def partition(params: list[torch.Tensor], state: dict) -> list[list[torch.Tensor]]:
    """The parameters with a gradient, split into parts by device, dtype and step count."""
    parts: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise RuntimeError("sparse gradients are not supported")
        step = state[p].get("step", 0) if p in state else 0
        parts.setdefault((p.device, p.dtype, int(step)), []).append(p)
    return list(parts.values())


class Workspace:
    """Named flat scratch buffers of one device and dtype, each as large as the largest chunk
    that has used the workspace; chunks take views of their own size (:meth:`Chunk.scratch`)."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype, self.device = dtype, device
        self.buffers: dict[str, torch.Tensor] = {}
        self.capacity = 0
        self.generation = 0  # bumped when the buffers are reallocated (cached views expire)

    def reserve(self, numel: int) -> None:
        """Make every buffer (those made later too) hold at least ``numel`` elements."""
        if numel > self.capacity:
            self.capacity = numel
            self.buffers = {}
            self.generation += 1

    def buffer(self, name: str) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = torch.empty(self.capacity, dtype=self.dtype, device=self.device)
        return buf

    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers.values())


class Chunk:
    """A contiguous range ``[start, stop)`` of a part's flat layout and the parameters it covers:
    ``members`` holds (parameter, lo, hi), the range of the parameter's flat elements. A chunk of
    several members holds whole parameters; a slice of a parameter is a chunk of its own."""

    def __init__(self, members: list[tuple[torch.Tensor, int, int]], start: int, flat: dict) -> None:
        self.members = members
        self.start, self.numel = start, sum(hi - lo for _, lo, hi in members)
        self.stop = start + self.numel
        self.sizes = tuple(hi - lo for _, lo, hi in members)
        self.single = len(members) == 1
        self.whole = [lo == 0 and hi == q.numel() for q, lo, hi in members]
        self.state = {key: buf[self.start : self.stop] for key, buf in flat.items()}
        #: where the update is added: the parameters, or the slice of the one parameter
        self.targets = [q if w else q.view(-1)[lo:hi] for (q, lo, hi), w in zip(members, self.whole)]
        self._views: dict[int, list[torch.Tensor]] = {}
        self._scratch: dict[str, torch.Tensor] = {}
        self._scratch_sizes: dict = {}
        self._generation = -1

    def scratch(self, ws: Workspace, name: str) -> torch.Tensor:
        """Workspace buffer ``name`` cut to this chunk's size (the view is cached)."""
        if self._generation != ws.generation:
            self._scratch, self._views, self._generation = {}, {}, ws.generation
        view = self._scratch.get(name)
        if view is None:
            ws.reserve(self.numel)
            if self._generation != ws.generation:  # reserving reallocated the buffers
                self._scratch, self._views, self._generation = {}, {}, ws.generation
            view = self._scratch[name] = ws.buffer(name)[: self.numel]
        return view

    def sizes_tensor(self, device: torch.device) -> torch.Tensor:
        """The members' sizes as a tensor on ``device`` (made once: a few numbers)."""
        got = self._scratch_sizes.get(device)
        if got is None:
            got = self._scratch_sizes[device] = torch.tensor(self.sizes, device=device)
        return got

    def is_scratch(self, t: torch.Tensor) -> bool:
        """Whether ``t`` is one of this chunk's workspace views (never state or user tensors)."""
        return any(t is v for v in self._scratch.values())

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``flat`` (the chunk's size) split into tensors shaped like the members (cached for the
        chunk's scratch buffers)."""
        got = self._views.get(id(flat))
        if got is None:
            got = [
                v.view_as(q) if w else v
                for v, (q, _, _), w in zip(flat.split(self.sizes), self.members, self.whole)
            ]
            if any(flat is s for s in self._scratch.values()):
                self._views[id(flat)] = got
        return got

    def _flat(self, tensors: list[torch.Tensor], buf: torch.Tensor) -> torch.Tensor:
        if self.single:
            t = tensors[0]
            if self.whole[0]:
                return t.reshape(-1)
            _, lo, hi = self.members[0]
            return t.view(-1)[lo:hi] if t.is_contiguous() else t.reshape(-1)[lo:hi]
        torch._foreach_copy_(self.views(buf), tensors)
        return buf

    def gradient(self, buf: torch.Tensor) -> torch.Tensor:
        """The chunk's gradient as one flat tensor: a view when the chunk lies within one
        parameter, else gathered into ``buf`` with one multi-tensor copy."""
        return self._flat([q.grad for q, _, _ in self.members], buf)

    def weight(self, buf: torch.Tensor) -> torch.Tensor:
        """The chunk's weights as one flat tensor (a view, or gathered into ``buf``)."""
        return self._flat([q for q, _, _ in self.members], buf)

    def add_(self, delta: torch.Tensor, alpha: float = 1.0) -> None:
        """``weights += alpha * delta`` (``delta`` flat over the chunk)."""
        if self.single:
            target = self.targets[0]
            target.add_(delta.view_as(target), alpha=alpha)
        else:
            torch._foreach_add_(self.targets, self.views(delta), alpha=alpha)


class Part:
    """Parameters of one group sharing device, dtype and step count, their flat state, chunks.

    ``states`` are the parameters' state dicts (``optimizer.state[p]``); ``keys`` the state slots
    the update uses. Existing entries (a loaded state dict) are copied into the flat buffers, new
    ones start at zero; afterwards every entry is a view into its flat buffer. ``split``: whether
    a parameter may be cut across chunks.
    """

    def __init__(
        self, params: list[torch.Tensor], states: list[dict], keys, chunk_size: int, split: bool
    ) -> None:
        self.params, self.states = params, states
        ref = params[0]
        self.flat: dict[str, torch.Tensor] = {}
        for key in keys:
            pieces = [
                st[key].reshape(-1) if key in st else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                for p, st in zip(params, states)
            ]
            self.flat[key] = torch.cat(pieces) if len(pieces) > 1 else pieces[0].clone()
        offset = 0
        for p, st in zip(params, states):
            st.setdefault("step", 0)
            for key, buf in self.flat.items():
                st[key] = buf[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self.numel = offset
        self.device, self.dtype = ref.device, ref.dtype
        self.chunks = [Chunk(m, s, self.flat) for m, s in _layout(params, chunk_size, split)]

    @property
    def step(self) -> int:
        """Steps already taken: the 0-based index of this one."""
        return int(self.states[0]["step"])

    def advance(self, step: int) -> None:
        for st in self.states:
            st["step"] = step + 1


def _layout(params: list[torch.Tensor], chunk_size: int, split: bool) -> list[tuple[list, int]]:
    """(members, start) of each chunk: parameters packed in order while they fit in
    ``chunk_size``; a splittable parameter larger than that is cut into chunks of its own."""
    chunks: list[tuple[list, int]] = []
    current: list[tuple[torch.Tensor, int, int]] = []
    start = filled = offset = 0
    for p in params:
        n = p.numel()
        if n > chunk_size and split and p.is_contiguous():
            if current:
                chunks.append((current, start))
                current, filled = [], 0
            for lo in range(0, n, chunk_size):
                chunks.append(([(p, lo, min(n, lo + chunk_size))], offset + lo))
            offset += n
            start = offset
            continue
        if current and filled + n > chunk_size:
            chunks.append((current, start))
            current, filled, start = [], 0, offset
        current.append((p, 0, n))
        filled += n
        offset += n
    if current:
        chunks.append((current, start))
    return chunks


class Guard:
    """Where one step's finiteness checks are decided.

    On the host (``device_side`` False) :meth:`commit` reads each chunk's check at once and returns
    it. On the device it records a 0-d flag per chunk, applies the update and the momentum only
    where the flag holds (the update zeroed, the momentum kept), and :meth:`settle` reads all flags
    with one synchronisation at the end of the step.
    """

    def __init__(self, device_side: bool) -> None:
        self.device_side = device_side
        self.pending: list = []
        self._zeros: dict = {}

    @classmethod
    def for_device(cls, device: torch.device) -> "Guard":
        mode = GUARD or ("host" if device.type == "cpu" else "device")
        return cls(mode == "device")

    def commit(self, chunk, delta, nxt=None, momentum=None, alpha=1.0, tag=None, total=None):
        """``weights += alpha * delta`` and ``momentum <- nxt`` (the chunk's momentum buffer) if
        ``delta`` is finite. Returns the outcome on the host, None when it is decided on the
        device (``tag`` comes back from :meth:`settle` for a chunk that was skipped). ``total``:
        ``delta``'s sum in float64, if the caller computed it already."""
        if not self.device_side:
            if not all_finite(delta, total):
                return False
            chunk.add_(delta, alpha)
            if nxt is not None:
                momentum.copy_(nxt)
            return True
        flag = finite_flag(delta) if total is None else torch.isfinite(total)
        torch.where(flag, delta, self._zero(delta), out=delta)
        chunk.add_(delta, alpha)
        if nxt is not None:
            torch.where(flag, nxt, momentum, out=momentum)
        self.pending.append((flag, tag))
        return None

    def flag(self, flag: torch.Tensor, tag=None) -> None:
        """Record a flag computed elsewhere (the direct step's gradient check)."""
        self.pending.append((flag, tag))

    def settle(self) -> list:
        """The tags of the chunks whose update was not finite, read with one synchronisation per
        device; empties the pending flags."""
        bad = []
        by_device: dict = {}
        for flag, tag in self.pending:
            by_device.setdefault(flag.device, []).append((flag, tag))
        for items in by_device.values():
            ok = torch.stack([f for f, _ in items]).tolist()
            bad += [tag for (_, tag), good in zip(items, ok) if not good]
        self.pending.clear()
        return bad

    def _zero(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        z = self._zeros.get(key)
        if z is None:
            z = self._zeros[key] = torch.zeros((), dtype=like.dtype, device=like.device)
        return z


def direct_sgd(
    params: list, c: float, guard: Guard, found: torch.Tensor, one: torch.Tensor, tag=None
) -> bool:
    """``p += c g`` straight from the gradients, for an update that is the gradient itself without
    momentum: one multiply-add per element, as ``torch.optim.SGD(foreach=True)`` does, no
    workspace. The check reads the gradients once with the multi-tensor finiteness check of AMP's
    grad scaler (``found`` and ``one``: 1-element buffers on the device; scale 1, so every value
    is written back unchanged); finite g and |c| <= 1 make every c g finite. On the device the
    update is torch's fused SGD kernel, which skips itself (all of ``params``) when the check found
    a non-finite gradient, without a synchronisation; on the host a non-finite gradient returns
    False. False (nothing written) also when the direct step cannot be taken: the caller then
    takes the general path, which checks the update chunk by chunk."""
    if not abs(c) <= 1.0:
        return False
    grads = [p.grad for p in params]
    if any(g.requires_grad for g in grads):
        return False
    found.zero_()
    try:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
    except RuntimeError:  # e.g. an expanded gradient that cannot be written back
        return False
    if guard.device_side:
        try:
            torch._fused_sgd_(
                params,
                grads,
                [],
                weight_decay=0.0,
                momentum=0.0,
                lr=abs(c),
                dampening=0.0,
                nesterov=False,
                maximize=c > 0,
                is_first_step=False,
                found_inf=found,
            )
        except (RuntimeError, TypeError, AttributeError):  # no fused SGD for this device or dtype
            return False
        guard.flag(found[0] == 0, tag)
        return True
    if found.item() != 0.0:
        return False
    torch._foreach_add_(params, grads, alpha=c)
    return True


def finite_flag(delta: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor on ``delta``'s device: True if no element is NaN or inf (its sum, in
    float64 for narrower dtypes, is finite exactly when every element is; MPS has no float64, so
    there a float32 sum that overflows skips a finite update). Computed without synchronising the
    device, unlike ``bool(...)``."""
    wide = delta.dtype != torch.float64 and delta.device.type != "mps"
    return torch.isfinite(delta.sum(dtype=torch.float64 if wide else None))


def all_finite(x: torch.Tensor, total: torch.Tensor | None = None) -> bool:
    """True if no element is NaN/inf. A sum is ~10x cheaper than ``isfinite().all()`` and is
    finite whenever all elements are (barring float overflow of the sum itself, which the
    exact check below then rules in or out). ``total`` is ``x.sum()`` if the caller has it."""
    if bool(torch.isfinite(x.sum() if total is None else total)):
        return True
    return bool(torch.isfinite(x).all())


def layout_source() -> str:
    """This module's code without its docstring and imports, as an exported optimizer embeds it
    (read when a genome is exported, not at import)."""
    import inspect
    import sys

    text = inspect.getsource(sys.modules[__name__])
    body = text.split('"""', 2)[2].split("\ndef layout_source(", 1)[0]
    return "\n".join(line for line in body.split("\n") if line != "import torch").strip("\n") + "\n"
