"""The paper's evaluation problems on MNIST-5k (spec §3.2): sizes, the DP gradient, metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nosplug.amalgamation.dp import DPSettings, dp_gradient, per_example_grads, privatise
from nosplug.amalgamation.evaluate import run_metrics, stability, train_problem
from nosplug.amalgamation.problems import PAPER_PROBLEMS, PROBLEMS, get_problem, gradient, new_instance
from nosplug.errors import UserError


def test_paper_problems_have_the_specs_parameter_counts() -> None:
    assert PAPER_PROBLEMS == {
        "conv_train": 18_122,
        "conv_deeper": 75_242,
        "conv_wider": 61_834,
        "conv_smallbatch": 18_122,
        "conv_train_dp": 18_122,
        "mlp": 15_910,
    }
    for name, count in PAPER_PROBLEMS.items():
        assert new_instance(get_problem(name), 0).n == count, name
        assert get_problem(name).dataset == "mnist5k", name
    assert get_problem("conv_smallbatch").batch_size == 32
    assert get_problem("conv_train").batch_size == 128
    dp = get_problem("conv_train_dp").dp
    assert dp == DPSettings(clip=1.0, noise_multiplier=1.1)
    assert all(p.dp is None for n, p in PROBLEMS.items() if n != "conv_train_dp")


def _reference_dp(model, theta, x, y, settings: DPSettings, noise: torch.Tensor) -> torch.Tensor:
    """The DP-SGD gradient with an explicit loop over examples (no vmap)."""
    total = torch.zeros_like(theta)
    for i in range(len(y)):
        t = theta.detach().clone().requires_grad_(True)
        g = torch.autograd.grad(model.loss(t, x[i : i + 1], y[i : i + 1]), t)[0]
        norm = float(g.norm())
        total += g * min(1.0, settings.clip / norm)
    return (total + settings.clip * settings.noise_multiplier * noise) / len(y)


def test_dp_gradient_matches_a_per_example_loop_with_the_same_noise() -> None:
    problem = get_problem("conv_train_dp")
    model = new_instance(problem, 0)
    theta = model.vector()
    from nosplug.amalgamation.problems import problem_data

    data = problem_data("mnist5k", 0)
    x, y = data.train_x[:12], data.train_y[:12]
    settings = problem.dp
    assert settings is not None
    got = dp_gradient(model.loss, theta, x, y, settings, torch.Generator().manual_seed(5))
    noise = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(5))
    expected = _reference_dp(model, theta, x, y, settings, noise)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)
    # the problem's gradient hook is this transform, not the plain minibatch gradient
    via_problem = gradient(problem, model, theta, x, y, torch.Generator().manual_seed(5))
    assert torch.allclose(via_problem, expected, rtol=1e-4, atol=1e-6)
    plain = gradient(get_problem("conv_train"), model, theta, x, y)
    assert not torch.allclose(plain, expected, atol=1e-3)


def test_clipping_leaves_short_gradients_alone_and_caps_long_ones() -> None:
    rows = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # norms 5, 0.5, 0
    out = privatise(rows, DPSettings(clip=1.0, noise_multiplier=0.0), torch.zeros(2))
    assert out.tolist() == pytest.approx([(0.6 + 0.3) / 3, (0.8 + 0.4) / 3])
    noisy = privatise(torch.zeros(4, 2), DPSettings(clip=2.0, noise_multiplier=1.5), torch.ones(2))
    assert noisy.tolist() == pytest.approx([3.0 / 4, 3.0 / 4])
    grads = per_example_grads(
        lambda t, x, y: ((x @ t - y) ** 2).sum(), torch.ones(2), torch.eye(2), torch.zeros(2)
    )
    assert grads.tolist() == [[2.0, 0.0], [0.0, 2.0]]


def test_a_dp_problem_is_evaluation_only() -> None:
    from nosplug.amalgamation.config import normalise

    with pytest.raises(UserError, match=r"run\.problem: 'conv_train_dp' has DP gradients"):
        normalise({"run": {"name": "x", "problem": "conv_train_dp"}})


def test_a_dp_evaluation_run_trains_and_is_reproducible() -> None:
    from nosplug.amalgamation.evaluate import teacher_stepper
    from nosplug.amalgamation.teachers import resolve_teacher

    make = teacher_stepper(resolve_teacher("adam"))
    a = train_problem(get_problem("conv_train_dp"), make, run=0, epochs=1)
    b = train_problem(get_problem("conv_train_dp"), make, run=0, epochs=1)
    assert a == b and len(a) == 1 and math.isfinite(a[0]) and a[0] < math.log(10)


def test_stability_is_the_std_of_the_log_ratio_to_the_nearest_mode_gaussian_filter() -> None:
    vals = [1.0, 0.6, 0.7, 0.4, 0.5, 0.35, 0.3, 0.33]
    v = np.asarray(vals)
    # the filter by hand: kernel exp(-k²/8) for |k| <= 8, normalised, edges repeated
    k = np.exp(-0.5 * (np.arange(-8, 9) / 2.0) ** 2)
    k /= k.sum()
    padded = np.concatenate([np.full(8, v[0]), v, np.full(8, v[-1])])
    smooth = np.array([padded[i : i + 17] @ k for i in range(len(v))])
    assert stability(vals) == pytest.approx(float(np.std(np.log(smooth) - np.log(v))), rel=1e-9)
    assert stability([0.5] * 6) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(stability([0.5])) and math.isnan(stability([0.5, math.nan]))
    m = run_metrics(vals)
    assert m["best_log_val"] == pytest.approx(math.log(0.3))
    assert m["last_log_val"] == pytest.approx(math.log(0.33))
    assert m["mean_log_val"] == pytest.approx(float(np.mean(np.log(v))))
    diverged = run_metrics([1.0, 0.5, math.inf])
    assert diverged["best_log_val"] == pytest.approx(math.log(0.5)) and diverged["last_log_val"] == math.inf
