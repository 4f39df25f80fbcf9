"""K copies of a surrogate trained as one model, for the learning-rate sweep.

Each copy is a *group*: convolutions use ``groups=K`` over K channel blocks, BatchNorm runs over
all K·C channels (so running statistics stay per copy), and heads are batched matmuls. Every
parameter's leading dimension splits into K contiguous blocks, one per copy, which is what
:class:`~nosplug.evaluation.batched.BatchedProgramOptimizer` relies on to give each copy its own
learning rate.

A grouped model is numerically the K single models run side by side on the same minibatch:
``from_models`` loads K single surrogates (matched by layer order) and ``export(k)`` writes copy
k back, so tests can compare against K separate runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class GroupedConvNet(nn.Module):
    """K ConvNet(base) copies (spec §7) side by side; logits shaped (batch, K, classes)."""

    def __init__(
        self,
        k: int,
        in_channels: int,
        num_classes: int,
        base: int = 32,
        dropout: float = 0.2,
        bn_momentum: float = 0.01,
        bn_eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.k, self.num_classes = k, num_classes
        widths = (base, 2 * base, 4 * base)
        strides = (1, 2, 2)
        convs, bns = [], []
        prev = in_channels
        for w, s in zip(widths, strides):
            convs.append(nn.Conv2d(k * prev, k * w, 3, stride=s, padding=1, groups=k, bias=True))
            bns.append(nn.BatchNorm2d(k * w, momentum=bn_momentum, eps=bn_eps))
            prev = w
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList(bns)
        self.dropout = nn.Dropout(dropout)
        self.convs.to(memory_format=torch.channels_last)
        self.head_weight = nn.Parameter(torch.empty(k, prev, num_classes))
        self.head_bias = nn.Parameter(torch.zeros(k, num_classes))
        nn.init.xavier_uniform_(self.head_weight)

    def forward(self, x: Tensor) -> Tensor:
        # the same minibatch for every copy; channels-last makes grouped convolutions several
        # times faster on CPU (oneDNN's NHWC grouped kernels), see docs/performance.md
        x = x.repeat(1, self.k, 1, 1).contiguous(memory_format=torch.channels_last)
        for conv, bn in zip(self.convs, self.bns):
            x = nn.functional.silu(bn(conv(x)))
        x = x.mean(dim=(2, 3)).view(x.shape[0], self.k, -1)
        x = self.dropout(x)
        return torch.einsum("bkf,kfc->bkc", x, self.head_weight) + self.head_bias

    @classmethod
    def from_models(cls, models: Sequence[nn.Module], num_classes: int, base: int, **kw) -> GroupedConvNet:
        first_conv = next(m for m in models[0].modules() if isinstance(m, nn.Conv2d))
        grouped = cls(len(models), first_conv.in_channels, num_classes, base, **kw)
        with torch.no_grad():
            for idx, model in enumerate(models):
                grouped._copy(idx, model, to_group=True)
        return grouped

    def export(self, idx: int, model: nn.Module) -> nn.Module:
        """Write copy ``idx`` into a single surrogate of the same architecture."""
        with torch.no_grad():
            self._copy(idx, model, to_group=False)
        return model

    def _copy(self, idx: int, model: nn.Module, to_group: bool) -> None:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        lin = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if len(convs) != 3 or len(bns) != 3 or len(lin) != 1:
            raise ValueError("from_models/export expect the paper's ConvNet (3 convs, 3 BNs, 1 linear)")

        def move(dst_block: Tensor, src: Tensor) -> None:
            if to_group:
                dst_block.copy_(src)
            else:
                src.copy_(dst_block)

        for gconv, conv in zip(self.convs, convs):
            n = conv.out_channels
            move(gconv.weight[idx * n : (idx + 1) * n], conv.weight)
            move(gconv.bias[idx * n : (idx + 1) * n], conv.bias)
        for gbn, bn in zip(self.bns, bns):
            n = bn.num_features
            for name in ("weight", "bias", "running_mean", "running_var"):
                move(getattr(gbn, name)[idx * n : (idx + 1) * n], getattr(bn, name))
        move(self.head_weight[idx], lin[0].weight.t())
        move(self.head_bias[idx], lin[0].bias)


class GroupedMLP(nn.Module):
    """K MLP copies as batched matmuls; logits shaped (batch, K, classes)."""

    def __init__(self, k: int, sizes: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        self.k = k
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(sizes):
            w = torch.empty(k, a, b)
            for i in range(k):
                nn.init.kaiming_uniform_(w[i].T, a=5**0.5)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(k, b)))
        self.act = getattr(nn.functional, activation)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1).unsqueeze(1).expand(-1, self.k, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.einsum("bki,kio->bko", h, w) + b
            if i < len(self.weights) - 1:
                h = self.act(h)
        return h
