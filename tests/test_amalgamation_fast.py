"""The fast inference step computes what the training module computes (tolerance 1e-5 absolute on
updates bounded by 0.1), inside StudentOptimizer and the evaluation stepper."""

from __future__ import annotations

import torch
from torch import nn

from nosplug.amalgamation.fast import FastRNNProp
from nosplug.amalgamation.student import RNNProp, StudentOptimizer

TOLERANCE = 1e-5  # absolute, on updates bounded by 0.1: 0.01 % of the largest step


def _trained_like(seed: int = 0) -> RNNProp:
    """Random weights scaled up, so gates saturate and cells grow as in a trained student."""
    torch.manual_seed(seed)
    r = RNNProp()
    with torch.no_grad():
        for p in r.parameters():
            p.mul_(2.0).add_(0.1 * torch.randn_like(p))
    return r.requires_grad_(False)


def test_fast_step_matches_the_module_over_many_steps() -> None:
    r = _trained_like()
    n = 3000
    gen = torch.Generator().manual_seed(1)
    grads = [
        torch.randn(n, generator=gen) * 10 ** float(torch.empty(1).uniform_(-4, 1, generator=gen))
        for _ in range(60)
    ]
    state = r.init_state(n, grads[0])
    fast = FastRNNProp(r, n)
    worst = 0.0
    for i in range(200):
        g = grads[i % len(grads)]
        if i < 10:  # warm-up: moments only
            _, state = r(g, state, frozen=True)
            fast.moments(g)
            continue
        d, state = r(g, state)
        worst = max(worst, float((fast.step(g) - d).abs().max()))
    assert worst <= TOLERANCE, worst
    assert torch.allclose(fast.c2.t(), state["c2"], rtol=1e-4, atol=1e-4), "cell states agree too"


def _train(fast: bool) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Sigmoid(), nn.Linear(32, 3))
    opt = StudentOptimizer(model.parameters(), _trained_like(2), warmup=20, fast=fast)
    gen = torch.Generator().manual_seed(3)
    for _ in range(150):
        x = torch.randn(64, 10, generator=gen)
        y = torch.randint(0, 3, (64,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_student_optimizer_fast_and_module_paths_agree() -> None:
    fast, slow = _train(True), _train(False)
    assert max(float((a - b).abs().max()) for a, b in zip(fast, slow)) <= 150 * TOLERANCE


def test_the_evaluation_stepper_uses_the_fast_step_with_the_same_results() -> None:
    from nosplug.amalgamation import evaluate
    from nosplug.amalgamation.problems import get_problem

    r = _trained_like(4)
    fast = evaluate.train_problem(get_problem("digits_mlp"), evaluate.learned_stepper(r, warmup=5), 0, 2)

    class Plain(nn.Module):  # the same module, not an RNNProp instance: the slow path
        def __init__(self) -> None:
            super().__init__()
            self.inner = r

        def init_state(self, n, like):
            return r.init_state(n, like)

        def forward(self, g, state, frozen=False):
            return r(g, state, frozen)

    slow = evaluate.train_problem(
        get_problem("digits_mlp"), evaluate.learned_stepper(Plain(), warmup=5), 0, 2
    )
    assert fast == __import__("pytest").approx(slow, rel=1e-4)
