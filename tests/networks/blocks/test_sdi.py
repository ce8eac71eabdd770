"""Tests of the SDI skip module of U-Net v2 (attention, reduction, resampling, Hadamard fusion)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai_unets.networks.blocks.sdi import (
    SDI,
    SDIChannelAttention,
    SDIReduction,
    SDISkip,
    SDISpatialAttention,
    box_average,
    resample_to,
)
from monai_unets.networks.utils import count_parameters

PVT_WIDTHS = (64, 128, 320, 512)

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit")


def _pyramid(size, widths, batch=1, strides=(4, 8, 16, 32)):
    """Encoder-like features: ceil(size / stride) per level, as the padded strided encoders give."""
    return [torch.randn(batch, c, *(-(-s // st) for s in size)) for c, st in zip(widths, strides)]


def test_channel_attention_scales_each_channel_by_one_gate():
    torch.manual_seed(0)
    ca = SDIChannelAttention(2, 64)
    assert count_parameters(ca) == 2 * 64 * 4  # 1x1 convs 64 -> 4 -> 64, no bias
    with torch.no_grad():
        for weight in ca.parameters():
            weight.normal_(std=0.1)
    x = torch.rand(2, 64, 9, 7) + 0.5
    gate = ca(x) / x
    # one gate in (0, 1) per sample and channel, the same at every position
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-6)
    assert bool(((gate > 0) & (gate < 1)).all())
    # the gate reads the channel's maximum as well as its mean: a single peak changes it
    peaked = x.clone()
    peaked[:, :, 4, 3] += 10.0
    assert not torch.allclose(ca(peaked)[:, :, 0, 0] / peaked[:, :, 0, 0], gate[:, :, 0, 0])
    # narrow inputs keep at least one hidden channel
    assert SDIChannelAttention(3, 8).mlp[0].out_channels == 1


def test_spatial_attention_gates_positions_within_its_kernel():
    torch.manual_seed(0)
    sa = SDISpatialAttention(2)
    assert count_parameters(sa) == 2 * 7 * 7 and sa.conv.bias is None
    x = torch.rand(1, 16, 20, 20) + 0.5
    gate = sa(x) / x
    # one gate in (0, 1) per position, shared by all channels
    assert torch.allclose(gate, gate[:, :1].expand_as(gate), atol=1e-6)
    assert bool(((gate > 0) & (gate < 1)).all())
    # a change at one position moves the gates of its 7x7 neighbourhood and nowhere else
    changed = x.clone()
    changed[:, :, 10, 10] += 5.0
    moved = ((sa(changed) / changed)[0, 0] - gate[0, 0]).abs() > 1e-7
    rows, cols = torch.nonzero(moved, as_tuple=True)
    assert moved[10, 10] and rows.min() >= 7 and rows.max() <= 13 and cols.min() >= 7 and cols.max() <= 13
    with pytest.raises(ValueError, match="odd"):
        SDISpatialAttention(2, kernel_size=4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_reduction(spatial_dims):
    red = SDIReduction(spatial_dims, 320, 32)
    assert red.conv.bias is None
    # CA 2*320*20, SA 2*7^d, 1x1 conv 320*32, BatchNorm 2*32
    assert count_parameters(red) == 2 * 320 * 20 + 2 * 7**spatial_dims + 320 * 32 + 64
    x = torch.randn(2, 320, *([5] * spatial_dims))
    assert red(x).shape == (2, 32, *([5] * spatial_dims))


def test_resample_to():
    x = torch.randn(1, 4, 16, 12)
    assert resample_to(x, [16, 12]) is x
    assert torch.equal(resample_to(x, [4, 3]), F.adaptive_avg_pool2d(x, (4, 3)))
    assert torch.equal(resample_to(x, [7, 5]), F.adaptive_avg_pool2d(x, (7, 5)))  # not a divisor
    up = F.interpolate(x, size=(33, 25), mode="bilinear", align_corners=True)
    assert torch.equal(resample_to(x, [33, 25]), up)
    v = torch.randn(1, 2, 4, 6, 5)
    assert resample_to(v, [8, 12, 9]).shape == (1, 2, 8, 12, 9)
    assert resample_to(v, [2, 3, 3]).shape == (1, 2, 2, 3, 3)
    with pytest.raises(ValueError):
        resample_to(x, [4, 4, 4])


def test_sdi_is_hadamard_product_of_smoothed_levels():
    torch.manual_seed(0)
    sdi = SDI(2, 8)
    assert count_parameters(sdi) == 4 * (8 * 8 * 9 + 8)
    feats = _pyramid((64, 48), (8,) * 4)
    anchor = [16, 12]  # level-2 size of a 64x48 input
    expected = torch.ones(1)
    for conv, f in zip(sdi.convs, feats):
        expected = expected * conv(resample_to(f, anchor))
    out = sdi(feats, anchor)
    assert out.shape == (1, 8, 16, 12)
    assert torch.allclose(out, expected)
    with pytest.raises(ValueError, match="4 features"):
        sdi(feats[:3], anchor)


def test_sdi_skip_pvt_widths_parameter_count():
    # 4 x (CA + SA + 1x1 + BN) + 16 smoothing convs: U-Net v2's 278,796 minus the heads and transposed convs
    assert count_parameters(SDISkip(2, PVT_WIDTHS, 32)) == 229_512


@pytest.mark.parametrize(
    "size",
    # 256x192 and 112x112 crash the published SDI (it resizes to a square from the last side only)
    [(256, 192), (112, 112), (97, 131), (64, 64)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_sdi_skip_2d_any_size(size):
    skip = SDISkip(2, PVT_WIDTHS, 32).eval()
    feats = _pyramid(size, PVT_WIDTHS)
    with torch.no_grad():
        outs = skip(feats)
    assert [o.shape for o in outs] == [torch.Size((1, 32, *f.shape[2:])) for f in feats]


def test_sdi_skip_3d_odd_size():
    skip = SDISkip(3, (16, 32, 48, 64), 8).eval()
    feats = _pyramid((37, 30, 21), (16, 32, 48, 64))
    with torch.no_grad():
        outs = skip(feats)
    assert [o.shape for o in outs] == [torch.Size((1, 8, *f.shape[2:])) for f in feats]


def test_sdi_skip_gradients_reach_every_parameter():
    skip = SDISkip(2, (16, 32, 48, 64), 8).train()
    outs = skip(_pyramid((64, 48), (16, 32, 48, 64), batch=2))
    sum(o.mean() for o in outs).backward()
    for name, param in skip.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_sdi_skip_torchscript():
    skip = SDISkip(3, (8, 16, 24, 32), 8).eval()
    scripted = torch.jit.script(skip)
    feats = _pyramid((33, 20, 17), (8, 16, 24, 32))
    with torch.no_grad():
        for a, b in zip(scripted(feats), skip(feats)):
            assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("shape, size", [((2, 3, 17, 11, 9), (5, 4, 3)), ((1, 2, 13, 7), (6, 7)), ((1, 1, 5), (2,))])
def test_box_average_is_adaptive_average_pooling(shape, size):
    x = torch.randn(shape)
    pool = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[x.dim()]
    torch.testing.assert_close(box_average(x, list(size)), pool(x, size), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("dynamo", [False, True])
def test_3d_unetv2_exports_to_onnx_at_a_size_that_is_no_multiple(tmp_path, dynamo):
    ort = pytest.importorskip("onnxruntime")
    if dynamo:
        pytest.importorskip("onnxscript")
    from monai_unets.networks import UNetV2

    # 48 x 40 x 33: SDI pools 33 to 9, which neither ONNX exporter can express as adaptive pooling
    net = UNetV2(3, 1, 2, encoder="conv", decoder_channels=8).eval()
    x = torch.randn(1, 1, 48, 40, 33)
    path = tmp_path / "unetv2_3d.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["logits"], dynamo=dynamo)
    (exported,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        eager = net(x).numpy()
    assert exported.shape == eager.shape and abs(exported - eager).max() < 1e-4
