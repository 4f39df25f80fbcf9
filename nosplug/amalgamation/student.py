"""Learned optimizers: the RNNProp student (spec §1), the choice optimizer (spec §4.6) and the
"Original" baseline (Andrychowicz et al. 2016, spec §6.1).

Both are coordinate-wise: every scalar parameter is one row of a batch, with shared weights and
its own recurrent state, so a whole model's parameters run as one batch of two fused LSTM cells
(one ``[in + hidden, 4·hidden]`` GEMM per cell). They act on flat vectors: ``forward(g, state)``
returns the update ``delta`` (parameters move by ``-delta``) and the new state, and is a pure
function of its weights, so meta-training can differentiate through whole unrolls and evaluate
perturbed weights with :func:`torch.func.functional_call`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nosplug.amalgamation.teachers import CHOICE_LRS, Teacher, TorchTeacher, resolve_teacher
from nosplug.errors import UserError

State = dict[str, Any]


@dataclass(frozen=True)
class StudentSpec:
    """A learned-optimizer plugin record: ``build(**config) -> nn.Module`` with ``init_state``/``forward``."""

    name: str
    build: Callable[..., nn.Module]
    description: str
    tags: frozenset[str] = field(default_factory=frozenset)


def _lstm_params(n_in: int, hidden: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Keras LSTMCell initialisation: Glorot-uniform kernel, orthogonal recurrent kernel, zero bias
    with forget-gate bias 1 (gate order i, f, c, o)."""
    kernel = torch.empty(n_in, 4 * hidden)
    nn.init.xavier_uniform_(kernel)
    recurrent = torch.empty(4 * hidden, hidden)
    nn.init.orthogonal_(recurrent)
    w = torch.cat([kernel, recurrent.t()], dim=0)
    b = torch.zeros(4 * hidden)
    b[hidden : 2 * hidden] = 1.0
    return nn.Parameter(w), nn.Parameter(b)


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step for a batch of coordinates; ``w`` stacks the input and recurrent kernels.

    The sigmoid runs once over all four contiguous gate blocks (element-wise ops on strided
    slices are several times slower on CPU; the wasted quarter costs less than that).
    """
    n_in = x.shape[1]
    z = (
        torch.addmm(b, x, w[:n_in]).addmm_(h, w[n_in:])
        if not torch.is_grad_enabled()
        else (torch.addmm(torch.addmm(b, x, w[:n_in]), h, w[n_in:]))
    )
    sig = torch.sigmoid(z)
    hidden = h.shape[1]
    i, f, o = sig[:, :hidden], sig[:, hidden : 2 * hidden], sig[:, 3 * hidden :]
    c = f * c + i * torch.tanh(z[:, 2 * hidden : 3 * hidden])
    return o * torch.tanh(c), c


class RNNProp(nn.Module):
    """Spec §1: inputs [m̃, g̃] from constant-de-biased moments, LSTM(20) -> LSTM(20) -> Dense(1, tanh),
    update ``alpha · u`` with alpha = 0.1. 5,141 weights."""

    kind = "rnnprop"

    def __init__(
        self,
        hidden: int = 20,
        alpha: float = 0.1,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-10,
    ) -> None:
        super().__init__()
        self.hidden, self.alpha, self.beta1, self.beta2, self.eps = hidden, alpha, beta1, beta2, eps
        self.w1, self.b1 = _lstm_params(2, hidden)
        self.w2, self.b2 = _lstm_params(hidden, hidden)
        wd = torch.empty(hidden, 1)
        nn.init.xavier_uniform_(wd)
        self.wd, self.bd = nn.Parameter(wd), nn.Parameter(torch.zeros(1))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden": self.hidden, "alpha": self.alpha, "beta1": self.beta1,
                "beta2": self.beta2, "eps": self.eps}  # fmt: skip

    def init_state(self, n: int, like: Tensor) -> State:
        z = like.new_zeros(n)
        zh = like.new_zeros(n, self.hidden)
        return {"m": z, "v": z.clone(), "h1": zh, "c1": zh.clone(), "h2": zh.clone(), "c2": zh.clone()}

    def forward(self, g: Tensor, state: State, frozen: bool = False) -> tuple[Tensor, State]:
        m = self.beta1 * state["m"] + (1 - self.beta1) * g
        v = self.beta2 * state["v"] + (1 - self.beta2) * g * g
        if frozen:  # warm-up: moments follow the gradients, the LSTM state stays put
            return g.new_zeros(g.shape), {**state, "m": m, "v": v}
        denom = torch.sqrt(v / (1 - self.beta2) + self.eps)
        x = torch.stack([(m / (1 - self.beta1)) / denom, g / denom], dim=1)
        h1, c1 = lstm_cell(x, state["h1"], state["c1"], self.w1, self.b1)
        h2, c2 = lstm_cell(h1, state["h2"], state["c2"], self.w2, self.b2)
        u = torch.tanh(torch.addmm(self.bd, h2, self.wd)).squeeze(1)
        return self.alpha * u, {"m": m, "v": v, "h1": h1, "c1": c1, "h2": h2, "c2": c2}


class DMOptimizer(nn.Module):
    """The "Original" learned optimizer (Andrychowicz et al. 2016; the reference's ``DMOptimizer``,
    spec §6.1): the raw gradient -> LSTM(20) -> LSTM(20) -> Dense(1), update ``alpha · u`` with
    alpha = 0.1 and no output squashing. 5,061 weights. A learned-optimizer baseline: it is
    meta-trained by the same code as RNNProp, with the meta loss alone."""

    kind = "original"

    def __init__(self, hidden: int = 20, alpha: float = 0.1) -> None:
        super().__init__()
        self.hidden, self.alpha = hidden, alpha
        self.w1, self.b1 = _lstm_params(1, hidden)
        self.w2, self.b2 = _lstm_params(hidden, hidden)
        wd = torch.empty(hidden, 1)
        nn.init.xavier_uniform_(wd)
        self.wd, self.bd = nn.Parameter(wd), nn.Parameter(torch.zeros(1))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "hidden": self.hidden, "alpha": self.alpha}

    def init_state(self, n: int, like: Tensor) -> State:
        zh = like.new_zeros(n, self.hidden)
        return {"h1": zh, "c1": zh.clone(), "h2": zh.clone(), "c2": zh.clone()}

    def forward(self, g: Tensor, state: State, frozen: bool = False) -> tuple[Tensor, State]:
        if frozen:  # warm-up: nothing to accumulate, the recurrent state stays put
            return g.new_zeros(g.shape), state
        h1, c1 = lstm_cell(g.unsqueeze(1), state["h1"], state["c1"], self.w1, self.b1)
        h2, c2 = lstm_cell(h1, state["h2"], state["c2"], self.w2, self.b2)
        u = torch.addmm(self.bd, h2, self.wd).squeeze(1)
        return self.alpha * u, {"h1": h1, "c1": c1, "h2": h2, "c2": c2}


class ChoiceOptimizer(nn.Module):
    """Spec §4.6: soft choice among a pool of analytical optimizers, per coordinate and step.

    Inputs: the K pool updates, the time feature t/2000 (the reference's unclipped one) and three
    tensor-rank indicators (rank 1, 2, 3; conv kernels get none, as in the reference).
    LSTM(20) -> LSTM(20) -> Dense(K) -> softmax weights w; update = sum_k w_k u_k.
    """

    kind = "choice"

    def __init__(
        self, pool: Sequence[str] = ("rmsprop", "adam"), hidden: int = 20, lrs: dict | None = None
    ) -> None:
        super().__init__()
        self.pool_refs = list(pool)
        lrs = {**CHOICE_LRS, **(lrs or {})}
        self.pool: list[Teacher] = []
        for ref in self.pool_refs:
            t = resolve_teacher(ref if "(" in ref or ref not in lrs else f"{ref}(lr={lrs[ref]})")
            if isinstance(t, TorchTeacher):
                raise UserError(f"choice pool member {ref!r} must be an analytical teacher (differentiable)")
            self.pool.append(t)
        k = len(self.pool)
        self.hidden = hidden
        self.w1, self.b1 = _lstm_params(k + 4, hidden)
        self.w2, self.b2 = _lstm_params(hidden, hidden)
        wd = torch.empty(hidden, k)
        nn.init.xavier_uniform_(wd)
        self.wd, self.bd = nn.Parameter(wd), nn.Parameter(torch.zeros(k))

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "pool": self.pool_refs, "hidden": self.hidden,
                "lrs": {t.name: t.lr for t in self.pool}}  # fmt: skip

    def init_state(self, n: int, like: Tensor) -> State:
        zh = like.new_zeros(n, self.hidden)
        theta = like.new_zeros(n)
        return {"pool": [t.init(theta) for t in self.pool], "h1": zh, "c1": zh.clone(), "h2": zh.clone(),
                "c2": zh.clone(), "t": 0, "rank": like.new_zeros(n)}  # fmt: skip

    def forward(self, g: Tensor, state: State, frozen: bool = False) -> tuple[Tensor, State]:
        updates, pool_states = [], []
        for t, st in zip(self.pool, state["pool"]):
            u, st = t.step(g, st, g)
            updates.append(u)
            pool_states.append(st)
        step = state["t"] + 1
        if frozen:
            return g.new_zeros(g.shape), {**state, "pool": pool_states, "t": step}
        rank = state["rank"]
        u = torch.stack(updates, dim=1)
        feats = [rank == 1, rank == 2, rank == 3]
        time_f = g.new_full(g.shape, state["t"] / 2000.0)
        x = torch.cat([u, torch.stack([time_f, *(f.to(g.dtype) for f in feats)], dim=1)], dim=1)
        h1, c1 = lstm_cell(x, state["h1"], state["c1"], self.w1, self.b1)
        h2, c2 = lstm_cell(h1, state["h2"], state["c2"], self.w2, self.b2)
        z = torch.addmm(self.bd, h2, self.wd)
        e = torch.exp(z - z.max(dim=1, keepdim=True).values)
        w = e / (e.sum(dim=1, keepdim=True) + 1e-10)
        delta = (w * u).sum(dim=1)
        return delta, {"pool": pool_states, "h1": h1, "c1": c1, "h2": h2, "c2": c2, "t": step, "rank": rank}


def learned_state(learned: nn.Module, like: Tensor, ranks: Tensor) -> State:
    """A learned optimizer's fresh state for a flat vector like ``like`` whose coordinate j belongs
    to a tensor of rank ``ranks[j]``: the one place the choice optimizer's rank features are
    filled, so training, teaching and :class:`StudentOptimizer` all give it the same ones."""
    st = learned.init_state(like.numel(), like)
    if "rank" in st:
        st["rank"] = ranks.to(like.dtype)
    return st


class LearnedTeacher(Teacher):
    """A trained learned optimizer (the choice optimizer) used as a teacher; never differentiated.

    It runs as in its own meta-training: rank features from the model's layout, and frozen
    recurrent state during the shared warm-up (which still advances its time feature)."""

    def __init__(self, learned: nn.Module, name: str = "choice") -> None:
        self.learned, self.name, self.lr = learned.requires_grad_(False), name, 1.0

    def init(self, theta: Tensor) -> State:
        return self.learned.init_state(theta.numel(), theta)

    def init_layout(self, theta: Tensor, ranks: Tensor) -> State:
        return learned_state(self.learned, theta, ranks)

    def step(self, g: Tensor, state: State, theta: Tensor) -> tuple[Tensor, State]:
        with torch.no_grad():
            return self.learned(g, state)

    def warmup(self, g: Tensor, state: State, theta: Tensor) -> State:
        with torch.no_grad():
            return self.learned(g, state, frozen=True)[1]


def build_learned(config: dict[str, Any]) -> nn.Module:
    """A learned optimizer from its JSON config (the ``students`` plugin registry knows the kinds)."""
    from nosplug.primitives.registry import registry

    kw = dict(config)
    kind = kw.pop("kind", "rnnprop")
    spec = registry().get("students", kind)
    if kind == "choice":
        kw.pop("lrs", None)
    return spec.build(**kw)


class StudentOptimizer(torch.optim.Optimizer):
    """A trained learned optimizer as a ``torch.optim.Optimizer``.

    All parameters with gradients run as one batch per step. The first ``warmup`` steps are plain
    SGD at ``warmup_lr`` while the moments follow the gradients and the recurrent state stays
    frozen, as in the reference's evaluation (spec §1.3: 100 steps at 0.05). An RNNProp student
    runs through :class:`~nosplug.amalgamation.fast.FastRNNProp` (same updates up to float
    rounding, several times faster); ``fast=False`` runs the training module instead. The learned
    optimizer and its state live on the parameters' device (moved there at the first step).
    """

    def __init__(
        self, params, learned: nn.Module, warmup: int = 100, warmup_lr: float = 0.05, fast: bool = True
    ) -> None:
        super().__init__(params, {"warmup": warmup, "warmup_lr": warmup_lr})
        self.learned = learned.eval().requires_grad_(False)
        self.fast = fast and isinstance(learned, RNNProp)
        self._flat: State | None = None
        self._steps = 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for grp in self.param_groups for p in grp["params"] if p.grad is not None]
        if not params:
            return loss
        g = torch.cat([p.grad.reshape(-1) for p in params]).to(torch.float32)
        if self._flat is None or self._flat["n"] != g.numel():
            self._flat = {"n": g.numel()}
            self.learned.to(g.device)
            if self.fast:
                from nosplug.amalgamation.fast import FastRNNProp

                self._flat["fast"] = FastRNNProp(self.learned, g.numel(), g.device)
            else:
                ranks = torch.cat([g.new_full((p.numel(),), float(p.dim())) for p in params])
                self._flat["state"] = learned_state(self.learned, g, ranks)
        grp = self.param_groups[0]
        frozen = self._steps < grp["warmup"]
        fast = self._flat.get("fast")
        if fast is not None:
            if frozen:
                fast.moments(g)
            delta = grp["warmup_lr"] * g if frozen else fast.step(g)
        else:
            delta, self._flat["state"] = self.learned(g, self._flat["state"], frozen=frozen)
            if frozen:
                delta = grp["warmup_lr"] * g
        updates = [d.view_as(p) for d, p in zip(delta.split([p.numel() for p in params]), params)]
        if all(p.dtype == torch.float32 for p in params):
            torch._foreach_sub_(params, updates)
        else:
            for p, u in zip(params, updates):
                p.sub_(u.to(p.dtype))
        self._steps += 1
        return loss


# ----------------------------------------------------------------------------- files
def save(learned: nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``PATH.pt`` (a plain state dict of tensors) and ``PATH.json`` (the config); no pickled code."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in learned.state_dict().items()}, path.with_suffix(".pt"))
    meta = {"format": "nosplug-learned-optimizer", "version": 1, "config": learned.config(), **(extra or {})}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def load(path: str | Path, params=None, **optimizer_kw):
    """The learned optimizer saved at ``path``; with ``params``, a ready :class:`StudentOptimizer`."""
    path = Path(path).with_suffix("")
    cfg_file = path.with_suffix(".json")
    if not cfg_file.is_file():
        raise UserError(
            f"{cfg_file}: no learned optimizer here (expected {path.name}.json and {path.name}.pt)"
        )
    meta = json.loads(cfg_file.read_text())
    if meta.get("format") != "nosplug-learned-optimizer":
        raise UserError(f"{cfg_file}: not a nosplug learned optimizer")
    learned = build_learned(meta["config"])
    # map_location: a file written on any device loads here; the module starts on the CPU and
    # whoever trains with it moves it (StudentOptimizer, MetaTrainer, the evaluation steppers)
    learned.load_state_dict(torch.load(path.with_suffix(".pt"), weights_only=True, map_location="cpu"))
    if params is None:
        return learned
    return StudentOptimizer(params, learned, **optimizer_kw)
