from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from monai_unets.networks import GAB
from monai_unets.networks.blocks import DilatedDepthwiseConv3d, dilated_depthwise_conv

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _reference(x, weight, bias, dilation):
    padding = [d * (k // 2) for d, k in zip(dilation, weight.shape[2:])]
    return CONV[x.dim() - 2](x, weight, bias, padding=padding, dilation=dilation, groups=x.shape[1])


# odd and even sizes, sizes below the dilation, one axis a multiple of it, per-axis dilations and kernels
@pytest.mark.parametrize(
    "shape, dilation, kernel",
    [
        ((2, 3, 17, 10), (2, 2), (3, 3)),
        ((1, 4, 9, 12), (5, 7), (3, 5)),
        ((1, 2, 4, 3), (7, 7), (3, 3)),
        ((2, 3, 13, 10, 9), (2, 2, 2), (3, 3, 3)),
        ((1, 5, 12, 11, 6), (5, 5, 5), (3, 3, 3)),
        ((1, 3, 14, 7, 21), (7, 7, 7), (3, 3, 3)),
        ((1, 2, 8, 9, 10), (1, 3, 2), (3, 1, 5)),
        ((2, 3, 25), (3,), (3,)),
    ],
)
def test_equals_the_dilated_convolution_with_gradients(shape, dilation, kernel):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(shape[1], 1, *kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(shape[1], dtype=torch.float64, requires_grad=True)
    grad = torch.randn(*shape, dtype=torch.float64)
    ours = dilated_depthwise_conv(x, weight, bias, list(dilation))
    ours_grads = torch.autograd.grad(ours, (x, weight, bias), grad)
    ref = _reference(x, weight, bias, dilation)
    ref_grads = torch.autograd.grad(ref, (x, weight, bias), grad)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 6, 16, 16, 16), (2, 6, 11, 20, 7)])
@pytest.mark.parametrize("dilation", [2, 5, 7])
def test_float32_within_1e_5_and_without_bias(shape, dilation):
    torch.manual_seed(1)
    x = torch.randn(*shape)
    weight = torch.randn(shape[1], 1, 3, 3, 3)
    ref = _reference(x, weight, None, [dilation] * 3)
    assert (dilated_depthwise_conv(x, weight, None, [dilation] * 3) - ref).abs().max() <= 1e-5


def test_module_is_a_conv3d_with_the_same_state_dict_and_outputs():
    torch.manual_seed(2)
    ours = DilatedDepthwiseConv3d(6, kernel_size=3, dilation=5)
    plain = torch.nn.Conv3d(6, 6, 3, padding=5, dilation=5, groups=6)
    assert isinstance(ours, torch.nn.Conv3d)
    assert ours.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(1, 6, 13, 18, 9)
    with torch.no_grad():
        assert (ours(x) - plain(x)).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="odd"):
        DilatedDepthwiseConv3d(6, kernel_size=4)


def test_gab_3d_loads_plain_conv_weights_and_scripts():
    """A 3D bridge's state dict is that of plain dilated Conv3d layers, and it stays TorchScript-able."""
    torch.manual_seed(3)
    gab = GAB(3, 16, 12, mask_channels=3).eval()
    plain = GAB(3, 16, 12, mask_channels=3).eval()
    for group in plain.groups:
        conv = group[1]
        group[1] = torch.nn.Conv3d(
            conv.in_channels, conv.out_channels, 3, padding=conv.padding, dilation=conv.dilation, groups=conv.groups
        )
    plain.load_state_dict(gab.state_dict())
    inputs = (torch.randn(1, 16, 5, 6, 4), torch.randn(1, 12, 10, 11, 8), torch.randn(1, 3, 10, 11, 8))
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(gab), buffer)
    buffer.seek(0)
    scripted = torch.jit.load(buffer)
    with torch.no_grad():
        expected = plain(*inputs)
        assert (gab(*inputs) - expected).abs().max() <= 1e-5
        assert (scripted(*inputs) - expected).abs().max() <= 1e-5
