"""A fast inference step for a trained RNNProp student (no autograd, fixed weights).

:class:`~nosplug.amalgamation.student.RNNProp` is written for meta-training: a pure function of
its weights on ``[coordinates, features]`` tensors, allocating every intermediate. Applying a
*trained* student as an optimizer needs none of that, and the step is bound by memory traffic
over ``coordinates × 80`` gate values per layer, so this module runs the same arithmetic with:

* **transposed layout**: states are ``[hidden, coordinates]``; one GEMM per weight block gives the
  gates as contiguous row blocks, so every element-wise op reads and writes contiguous memory
  (column slices of ``[coordinates, 80]`` are strided);
* **gate order i, f, o, c**: the three sigmoid gates are one contiguous block (no sigmoid wasted
  on the cell candidate, as the training code has to do);
* **preallocated buffers and in-place ops** (``out=``, ``addcmul_``): no allocation per step;
* ``tanh(x) = 2·sigmoid(2x) − 1`` with the factor 2 folded into the candidate gate's weights:
  one sigmoid over all four gates (torch's CPU ``tanh`` costs several times its ``sigmoid``);
It computes what ``RNNProp.forward`` computes up to float rounding (reassociated GEMMs, tanh
through sigmoid): tested to max |Δ| ≤ 1e-5 (0.01 % of the largest step, 0.1) over 200 steps
with saturating weights.
Measured and rejected (``docs/performance.md``): ``torch.compile`` of the training module (slower:
its tanh stays), bfloat16 GEMMs (7 % faster here, updates off by up to 7e-4).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _reorder(w: Tensor, hidden: int) -> Tensor:
    """Gate blocks (i, f, c, o) -> (i, f, o, c) along the last dimension."""
    i, f, c, o = w.split(hidden, dim=-1)
    return torch.cat([i, f, o, c], dim=-1)


class FastRNNProp:
    """The inference step of a trained :class:`RNNProp` for one flat vector of ``n`` coordinates,
    on ``device`` (default: where the learned weights are)."""

    def __init__(self, learned: torch.nn.Module, n: int, device: torch.device | str | None = None) -> None:
        dev = torch.device(device) if device is not None else learned.w1.device
        h = learned.hidden
        self.n, self.hidden = n, h
        self.beta1, self.beta2, self.eps, self.alpha = (
            learned.beta1,
            learned.beta2,
            learned.eps,
            learned.alpha,
        )
        # tanh(x) = 2·sigmoid(2x) − 1: the candidate rows get weights and bias ×2, so one sigmoid
        # covers all four gates (torch's CPU tanh costs several times its sigmoid)
        scale = torch.ones(4 * h, device=dev)
        scale[3 * h :] = 2.0
        f32 = torch.float32
        kw = {"dtype": f32, "device": dev}

        def weight(w: Tensor) -> Tensor:
            return w.detach().to(**kw)

        with torch.no_grad():
            w1 = _reorder(weight(learned.w1), h) * scale  # [2 + H, 4H]
            w2 = _reorder(weight(learned.w2), h) * scale  # [2H, 4H]
            self.w1, self.w2 = w1.t().contiguous(), w2.t().contiguous()  # [4H, in]
            self.b1 = (_reorder(weight(learned.b1), h) * scale).unsqueeze(1).contiguous()
            self.b2 = (_reorder(weight(learned.b2), h) * scale).unsqueeze(1).contiguous()
            self.wd = weight(learned.wd).t().contiguous()  # [1, H]
            self.bd = weight(learned.bd).unsqueeze(1)
        self.m, self.v = torch.zeros(n, **kw), torch.zeros(n, **kw)
        # one buffer [x (2); h1 (H); h2 (H)]: layer 1 reads rows 0..2+H, layer 2 rows 2..2+2H,
        # each one GEMM on contiguous rows, and each layer writes its h in place
        self.s = torch.zeros(2 + 2 * h, n, **kw)
        self.c1, self.c2 = torch.zeros(h, n, **kw), torch.zeros(h, n, **kw)
        self.z = torch.empty(4 * h, n, **kw)
        self.tmp = torch.empty(h, n, **kw)
        self.denom = torch.empty(n, **kw)
        self.delta = torch.empty(1, n, **kw)

    def moments(self, g: Tensor) -> None:
        """Feed one gradient into m and v only (the warm-up: recurrent state frozen)."""
        self.m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
        self.v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)

    def _cell(self, w: Tensor, inp: Tensor, b: Tensor, c: Tensor, h_out: Tensor) -> None:
        hid, z = self.hidden, self.z
        torch.sigmoid(torch.addmm(b, w, inp, out=z), out=z)
        cand = z[3 * hid :].mul_(2.0).sub_(1.0)  # tanh of the candidate
        c.mul_(z[hid : 2 * hid]).addcmul_(z[:hid], cand)  # c = f·c + i·tanh(ĉ)
        torch.sigmoid(torch.mul(c, 2.0, out=self.tmp), out=self.tmp)
        self.tmp.mul_(2.0).sub_(1.0)  # tanh(c)
        torch.mul(z[2 * hid : 3 * hid], self.tmp, out=h_out)  # h = o·tanh(c)

    def step(self, g: Tensor) -> Tensor:
        """The update for gradient ``g`` (parameters move by minus it); advances the state."""
        hid, s = self.hidden, self.s
        self.moments(g)
        torch.sqrt(self.v.div(1 - self.beta2).add_(self.eps), out=self.denom)
        torch.div(self.m, self.denom, out=s[0]).div_(1 - self.beta1)
        torch.div(g, self.denom, out=s[1])
        self._cell(self.w1, s[: 2 + hid], self.b1, self.c1, s[2 : 2 + hid])
        self._cell(self.w2, s[2:], self.b2, self.c2, s[2 + hid :])
        torch.addmm(self.bd, self.wd, s[2 + hid :], out=self.delta)
        return self.delta[0].tanh_().mul_(self.alpha)
