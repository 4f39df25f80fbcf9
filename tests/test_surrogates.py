"""Surrogates: the paper's ConvNet parameter counts, any input shape, MLP, sphere, option errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nosplug.errors import UserError
from nosplug.tasks.surrogates import build_surrogate, parameter_count

PAPER_COUNTS = {32: 95_434, 48: 212_266, 64: 375_178, 96: 839_242, 128: 1_487_626}  # spec §7 table


@pytest.mark.parametrize(("base", "count"), sorted(PAPER_COUNTS.items()))
def test_convnet_parameter_counts_match_the_paper(base: int, count: int) -> None:
    model = build_surrogate("convnet", (3, 32, 32), 10, base=base)
    assert parameter_count(model) == count
    # the table counts Keras weights: BN's moving mean and variance (2 x 7·base) included
    assert parameter_count(model, include_buffers=False) == count - 2 * 7 * base


def test_convnet_architecture_follows_spec_section_7() -> None:
    model = build_surrogate("convnet", (3, 32, 32), 10, base=32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (2, 2)]
    assert all(c.kernel_size == (3, 3) and c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.SiLU) for m in model.modules()) == 3
    assert next(m for m in model.modules() if isinstance(m, nn.Dropout)).p == 0.2


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (3, 32, 32), (3, 17, 23)])
def test_convnet_adapts_to_any_input_shape(shape) -> None:
    model = build_surrogate("convnet", shape, 7, base=4).eval()
    assert model(torch.rand(2, *shape)).shape == (2, 7)


def test_mlp_and_sphere() -> None:
    mlp = build_surrogate("mlp", (1, 8, 8), 10, hidden=[32, 16], activation="tanh")
    assert mlp(torch.rand(5, 1, 8, 8)).shape == (5, 10)
    assert parameter_count(mlp) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    sphere = build_surrogate("sphere", (), 0, dim=3, start=[1, 2, 3], shift=[1, 2, 3])
    assert sphere().item() == 0.0
    sphere = build_surrogate("sphere", (), 0)
    assert sphere(torch.rand(3, 1)).item() == pytest.approx(7.1525)  # spec §6's start; data ignored
    sphere.x.data.copy_(sphere.shift)
    assert sphere().item() == 0.0


def test_unknown_surrogate_and_option_are_clear_errors() -> None:
    with pytest.raises(UserError, match=r"unknown option\(s\) width .*allowed: base, dropout, bn_momentum"):
        build_surrogate("convnet", (1, 8, 8), 10, width=3)
    with pytest.raises(UserError, match="unknown surrogate 'resnet'"):
        build_surrogate("resnet", (1, 8, 8), 10)
    with pytest.raises(UserError, match="base must be positive"):
        build_surrogate("convnet", (1, 8, 8), 10, base=0)


def test_convnet_stacks_into_the_grouped_sweep_model() -> None:
    """batched.GroupedConvNet copies single ConvNets by layer order; both must compute the same."""
    from nosplug.tasks.grouped import GroupedConvNet

    models = [build_surrogate("convnet", (1, 8, 8), 10, base=4).eval() for _ in range(3)]
    grouped = GroupedConvNet.from_models(models, 10, 4).eval()
    x = torch.rand(5, 1, 8, 8)
    out = grouped(x)
    for k, m in enumerate(models):
        assert torch.allclose(out[:, k], m(x), atol=1e-5)


def test_builtin_surrogates_are_registered() -> None:
    from nosplug.primitives.registry import registry

    names = set(registry().names("surrogates"))
    assert {"convnet", "mlp", "sphere", "efficientnet_v2_s", "resnet9"} <= names


def test_efficientnet_v2_s_at_full_size_is_torchvisions() -> None:
    """width = depth = 1 builds torchvision's efficientnet_v2_s layer for layer (same count)."""
    from nosplug.tasks.vision import import_torchvision

    efficientnet_v2_s = import_torchvision("torchvision.models").efficientnet_v2_s
    ours = build_surrogate("efficientnet_v2_s", (3, 32, 32), 10)
    theirs = efficientnet_v2_s(num_classes=10)
    assert parameter_count(ours, include_buffers=False) == parameter_count(theirs, include_buffers=False)
    assert parameter_count(ours, include_buffers=False) == 20_190_298
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]


def test_small_efficientnet_and_resnet9_train_on_grey_images() -> None:
    """Tiny widths for tests; any channel count (the stem is rebuilt); a step lowers the loss."""
    torch.manual_seed(0)
    x, y = torch.rand(8, 1, 16, 16), torch.randint(0, 5, (8,))
    for name, opts in (("efficientnet_v2_s", {"width": 0.25, "depth": 0.2}), ("resnet9", {"width": 4})):
        model = build_surrogate(name, (1, 16, 16), 5, **opts)
        assert model(x).shape == (8, 5)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], (name, losses)


def test_resnet9_has_the_papers_size() -> None:
    """Page's ResNet-9 at width 64 with 10 classes: 6.57 M parameters."""
    model = build_surrogate("resnet9", (3, 32, 32), 10)
    assert parameter_count(model, include_buffers=False) == 6_573_130


def test_big_model_options_are_checked() -> None:
    with pytest.raises(UserError, match="width and depth must be positive"):
        build_surrogate("efficientnet_v2_s", (3, 32, 32), 10, width=0)
    with pytest.raises(UserError, match="resnet9: width must be positive"):
        build_surrogate("resnet9", (3, 32, 32), 10, width=0)
