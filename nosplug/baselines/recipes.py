"""The recipes some baselines need to be run the way their authors run them.

* :class:`MuonAdamW`: Muon is an optimizer for 2-D weight matrices (``torch.optim.Muon`` refuses
  anything else); its standard recipe trains every other parameter (biases, norms, convolution
  kernels) with AdamW. Which matrices count as "hidden" depends on the model; this class splits
  by shape alone, as torch's Muon documentation does (``p.ndim == 2``), so a model's embeddings
  and output layer go to Muon too. One ``torch.optim.Optimizer`` holds both, so a
  benchmark tunes one learning rate and one schedule for it: Muon's update is scaled to AdamW's
  RMS (``adjust_lr_fn="match_rms_adamw"``, Moonshot's rule), so one rate and one weight decay
  fit both halves.
* Schedule-Free optimizers (Defazio et al. 2024: ``pytorch_optimizer.ScheduleFreeAdamW``,
  ``schedulefree.AdamWScheduleFree``, ...) replace the decay schedule and keep two sequences of
  weights: they must be put in ``train()`` mode to train and in ``eval()`` mode to be evaluated
  (the averaged weights). :func:`is_schedule_free` recognises them by those two methods (a
  ``torch.optim.Optimizer`` has neither), :func:`evaluation_mode` wraps an evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from nosplug.errors import UserError

__all__ = [
    "MUON_RECIPE",
    "SCHEDULE_FREE_RECIPE",
    "MuonAdamW",
    "evaluation_mode",
    "is_schedule_free",
    "training_mode",
]


SCHEDULE_FREE_RECIPE = (
    "schedule-free: the tuned warm-up, then a constant rate (no decay); trained in train() mode, "
    "evaluated in eval() mode (the averaged weights)"
)
MUON_RECIPE = (
    "Muon (torch.optim.Muon) on every 2-D parameter (the split of torch's Muon documentation; "
    "embeddings and the output layer included), AdamW on every other parameter, one learning "
    "rate and weight decay for both (Muon's update scaled to AdamW's RMS, match_rms_adamw); "
    "warm-up, then cosine decay to 0"
)


def is_schedule_free(optimizer: Any) -> bool:
    """Whether ``optimizer`` (an instance or a class) is schedule-free: it has ``train()`` and
    ``eval()`` methods, which ``torch.optim.Optimizer`` does not."""
    if isinstance(optimizer, torch.nn.Module) or (
        isinstance(optimizer, type) and issubclass(optimizer, torch.nn.Module)
    ):
        return False
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


def training_mode(optimizer: Any) -> None:
    """Put a schedule-free optimizer into train() mode (nothing for any other)."""
    if is_schedule_free(optimizer):
        optimizer.train()


@contextlib.contextmanager
def evaluation_mode(optimizer: Any) -> Iterator[None]:
    """Evaluate a schedule-free optimizer's model at its averaged weights (``eval()``), then go
    back to training (``train()``); any other optimizer is left alone."""
    if not is_schedule_free(optimizer):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the 2-D weight matrices, AdamW on every other parameter (Muon's standard recipe),
    as one optimizer with one learning rate.

    ``param_groups`` are the two inner optimizers' groups themselves, so a learning-rate scheduler
    drives both; ``state_dict()`` holds both inner states. Needs ``torch.optim.Muon`` (torch >= 2.9).

    Args:
        params: parameters or parameter groups; each group is split by dimension.
        lr: the learning rate of both halves (Muon's update is scaled to AdamW's RMS).
        weight_decay: decoupled weight decay of both halves.
        momentum, nesterov, ns_steps: Muon's momentum, Nesterov form and Newton–Schulz steps.
        betas, eps: AdamW's.
        adjust_lr_fn: Muon's learning-rate adjustment (``match_rms_adamw`` by default).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        momentum: float = 0.95,
        nesterov: bool = True,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        ns_steps: int = 5,
        adjust_lr_fn: str = "match_rms_adamw",
    ) -> None:
        muon_cls = getattr(torch.optim, "Muon", None)
        if muon_cls is None:
            raise UserError(
                f"MuonAdamW needs torch.optim.Muon (torch >= 2.9); this is torch {torch.__version__}"
            )
        given = list(params)
        groups = given if given and isinstance(given[0], dict) else [{"params": given}]
        muon_groups, adamw_groups = [], []
        for g in groups:
            ps = list(g["params"])
            opts = {k: v for k, v in g.items() if k != "params"}
            matrices = [p for p in ps if p.ndim == 2]
            rest = [p for p in ps if p.ndim != 2]
            if matrices:
                muon_groups.append({"params": matrices, **opts})
            if rest:
                adamw_groups.append({"params": rest, **opts})
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov, betas=betas,
                        eps=eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)  # fmt: skip
        super().__init__([dict(g) for g in [*muon_groups, *adamw_groups]], defaults)
        self.muon = (
            muon_cls(muon_groups, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                     ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
            if muon_groups else None
        )  # fmt: skip
        self.adamw = (
            torch.optim.AdamW(adamw_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
            if adamw_groups
            else None
        )
        self.param_groups = [g for opt in self._inner() for g in opt.param_groups]

    def _inner(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.muon, self.adamw) if opt is not None]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._inner():
            opt.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "muon": None if self.muon is None else self.muon.state_dict(),
            "adamw": None if self.adamw is None else self.adamw.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        for name, opt in (("muon", self.muon), ("adamw", self.adamw)):
            if (opt is None) != (state_dict.get(name) is None):
                raise ValueError(f"MuonAdamW state has {'no ' if opt is not None else ''}{name} half here")
            if opt is not None:
                opt.load_state_dict(state_dict[name])
        self.param_groups = [g for opt in self._inner() for g in opt.param_groups]
