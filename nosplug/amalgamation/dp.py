"""DP-SGD-style gradients for the paper's MNIST-DP problem (spec §3.2, ``conv_train_dp``).

The reference's DP fit loop hands the optimizer, instead of the minibatch gradient,

    g = (Σ_i clip(g_i) + N(0, (C·σ)² I)) / B,    clip(g_i) = g_i · min(1, C / ‖g_i‖₂),

with per-example gradients g_i, clip norm C = 1.0, noise multiplier σ = 1.1 and batch size B.
Per-example gradients come from ``torch.func.vmap(torch.func.grad(...))`` over the examples of
the batch (one vectorised backward instead of B). The Gaussian draw is an argument, so callers
own the random stream and a test can replay the same draw against a per-example Python loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DPSettings:
    """Clip norm C and noise multiplier σ (noise std C·σ on the summed gradient)."""

    clip: float = 1.0
    noise_multiplier: float = 1.1


def per_example_grads(loss: Callable[[Tensor, Tensor, Tensor], Tensor], theta: Tensor, x: Tensor, y: Tensor):
    """[B, n] gradients of ``loss(theta, x_i[None], y_i[None])`` for every example i."""

    def one(t: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
        return loss(t, xi.unsqueeze(0), yi.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(theta, x, y)


def privatise(per_example: Tensor, settings: DPSettings, noise: Tensor) -> Tensor:
    """Clip each row to L2 norm ≤ C, sum, add C·σ·``noise`` (a standard normal draw), divide by B."""
    norms = per_example.norm(dim=1, keepdim=True)
    clip = torch.as_tensor(settings.clip, dtype=per_example.dtype, device=per_example.device)
    factor = clip / torch.maximum(norms, clip)  # min(1, C/‖g_i‖) without dividing by a zero norm
    total = (per_example * factor).sum(dim=0) + settings.clip * settings.noise_multiplier * noise
    return total / per_example.shape[0]


def dp_gradient(
    loss: Callable[[Tensor, Tensor, Tensor], Tensor],
    theta: Tensor,
    x: Tensor,
    y: Tensor,
    settings: DPSettings,
    gen: torch.Generator | None = None,
) -> Tensor:
    """The privatised gradient at ``theta``; the noise is drawn from ``gen``, a CPU generator, and
    moved to the gradients' device, so a seeded run draws the same noise on every device."""
    grads = per_example_grads(loss, theta.detach(), x, y)
    noise = torch.randn(grads.shape[1], generator=gen, dtype=grads.dtype).to(grads.device)
    return privatise(grads, settings, noise)
