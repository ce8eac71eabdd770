from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai_unets.networks.blocks import GroupNorm, accurate_group_norms
from torch import nn

from monai_unets import ClassicUNet, EGEUNet


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


@pytest.mark.parametrize("shape", [(2, 8, 256, 256), (2, 8, 48, 48, 48), (2, 64, 6, 6, 6)])
@pytest.mark.parametrize("mean", [0.0, 2.0, 10.0, 100.0])
def test_channels_last_statistics_match_float64(shape, mean):
    # PyTorch's channels-last CPU kernel was off by 2e-5 to 7 on these (more for larger means and groups); a mean
    # of 2 stays on the matrix-product statistics, 10 and 100 take the centred values
    torch.manual_seed(0)
    norm = GroupNorm(4, shape[1])
    with torch.no_grad():
        norm.weight.copy_(torch.randn(shape[1]))
        norm.bias.copy_(torch.randn(shape[1]))
    x = _channels_last(torch.randn(shape) + mean)
    with torch.inference_mode():
        out = norm(x)
        expected = F.group_norm(x.double(), 4, norm.weight.double(), norm.bias.double(), norm.eps)
    assert out.is_contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    assert (out.double() - expected).abs().max() < 5e-5


@pytest.mark.parametrize("shape", [(2, 6, 9, 7, 5), (2, 6, 64, 48, 48)])  # a copy; the statistics
def test_training_and_channels_first_inputs_are_plain_group_norm(shape):
    # training keeps PyTorch's kernels (forward and backward) bit for bit: the learning is as it was measured
    torch.manual_seed(0)
    norm, plain = GroupNorm(2, 6), nn.GroupNorm(2, 6)
    plain.load_state_dict(norm.state_dict())
    x = torch.randn(shape) * 3 + 2
    with torch.no_grad():
        assert torch.equal(norm(x), plain(x))  # channels-first
    a, b = _channels_last(x).requires_grad_(), _channels_last(x).requires_grad_()
    probe = torch.linspace(-1, 1, x.numel()).view_as(x)
    out_a, out_b = norm(a), plain(b)
    assert torch.equal(out_a, out_b)
    (out_a * probe).sum().backward()
    (out_b * probe).sum().backward()
    assert torch.equal(a.grad, b.grad) and torch.equal(norm.weight.grad, plain.weight.grad)


def test_without_affine_parameters():
    norm = GroupNorm(2, 4, affine=False)
    x = _channels_last(torch.randn(3, 4, 16, 16) + 5)
    expected = F.group_norm(x.double(), 2, eps=norm.eps)
    with torch.no_grad():
        assert (norm(x).double() - expected).abs().max() < 1e-5


def test_networks_use_it_and_keep_their_state_dict():
    for net in (EGEUNet(2, 3, 1), EGEUNet(3, 1, 3), ClassicUNet(2, 1, 2, norm=("group", {"num_groups": 4}))):
        assert not any(type(m) is nn.GroupNorm for m in net.modules())
        assert any(isinstance(m, GroupNorm) for m in net.modules())
    plain = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))
    keys = {k: v.clone() for k, v in plain.state_dict().items()}
    weight = plain[1].weight
    accurate_group_norms(plain)
    assert isinstance(plain[1], GroupNorm) and plain[1].weight is weight
    assert keys.keys() == plain.state_dict().keys()


def test_3d_egeunet_channels_last_inference_matches_float64():
    # the 3D CT bundles run EGE-UNet channels-last on a CPU, two windows a batch: with PyTorch's kernel its
    # outputs were 100x further from float64's than channels-first ones (1e-2 against 1e-4 at 96^3)
    torch.manual_seed(0)
    net = EGEUNet(3, 1, 3).eval()
    x = torch.rand(2, 1, 64, 64, 64)
    with torch.inference_mode():
        expected = net.double()(x.double())
        net.float().to(memory_format=torch.channels_last_3d)
        out = net(_channels_last(x))
    assert (out.double() - expected).abs().max() / expected.abs().max() < 2e-5
