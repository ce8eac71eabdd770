"""Tests of the classic U-Net (Ronneberger et al., 2015)."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks.classic_unet import ClassicUNet, ClassicUnet
from monai_unets.networks.utils import count_parameters

from tests.conftest import assert_onnx_matches_eager

SMALL = (4, 8, 12, 16, 20)


@pytest.mark.parametrize("upsample", ["deconv", "linear"])
@pytest.mark.parametrize(
    "spatial_dims,size",
    [(2, (64, 64)), (2, (37, 50)), (2, (16, 113)), (3, (16, 16, 16)), (3, (19, 24, 17))],
)
def test_same_mode_shapes(spatial_dims: int, size: tuple, upsample: str) -> None:
    net = ClassicUNet(spatial_dims, in_channels=2, out_channels=3, channels=SMALL, upsample=upsample).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert net.output_size(size) == size


@pytest.mark.parametrize("upsample", ["deconv", "linear"])
@pytest.mark.parametrize(
    "spatial_dims,channels,size,expected",
    [(2, (2, 2, 2, 2, 2), (188, 204), (4, 20)), (3, (2, 2, 2), (44, 45, 52), (4, 4, 12))],
)
def test_valid_mode_shapes(spatial_dims: int, channels: tuple, size: tuple, expected: tuple, upsample: str) -> None:
    net = ClassicUNet(spatial_dims, 1, 2, channels=channels, upsample=upsample, padding="valid").eval()
    assert net.output_size(size) == expected
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert out.shape == (1, 2, *expected)


def test_valid_mode_too_small() -> None:
    net = ClassicUNet(2, 1, 1, channels=(2, 2, 2, 2, 2), padding="valid")
    assert net.min_size == 188
    with pytest.raises(ValueError, match="188"):
        net(torch.randn(1, 1, 187, 200))
    with pytest.raises(ValueError, match="16"):
        ClassicUNet(2, 1, 1, channels=SMALL)(torch.randn(1, 1, 15, 32))


def test_paper_parameter_count_and_572_tile() -> None:
    # the seed article's torchinfo summary: BN double convs with conv biases, 2x2 deconvs, 1x1 head
    net = ClassicUNet(spatial_dims=2, in_channels=1, out_channels=1, upsample="deconv", padding="valid")
    assert count_parameters(net) == 31_042_369
    assert net.output_size((572, 572)) == (388, 388)
    # the output size does not depend on the widths: a narrow copy checks the 572 -> 388 tile quickly
    narrow = ClassicUNet(2, 1, 1, channels=(2, 2, 2, 2, 2), padding="valid").eval()
    with torch.no_grad():
        out = narrow(torch.zeros(1, 1, 572, 572))
    assert out.shape == (1, 1, 388, 388)


def test_parameter_counts_of_variants() -> None:
    # paper network without normalisation, two classes; the padding does not change the count
    assert count_parameters(ClassicUNet(2, 1, 2, norm=None, padding="valid")) == 31_030_658
    assert count_parameters(ClassicUNet(2, 1, 2, norm=None, padding="same")) == 31_030_658
    assert count_parameters(ClassicUNet(2, 1, 2)) == 31_042_434
    # 1x1 convs instead of 2x2 deconvs: 3 / 4 of the up-conv weights less
    assert count_parameters(ClassicUNet(2, 1, 1, upsample="linear")) == 31_042_369 - 3 * (
        1024 * 512 + 512 * 256 + 256 * 128 + 128 * 64
    )


def test_layout() -> None:
    net = ClassicUNet(3, 1, 2, channels=SMALL)
    assert len(net.encoders) == 5 and len(net.decoders) == 4
    assert isinstance(net.encoders[1][0], torch.nn.MaxPool3d)
    up = net.decoders[0].up
    assert isinstance(up, torch.nn.ConvTranspose3d) and up.kernel_size == (2, 2, 2) and up.out_channels == 16
    assert net.head.conv.conv.kernel_size == (1, 1, 1)
    assert ClassicUnet is ClassicUNet


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="upsample"):
        ClassicUNet(2, 1, 1, upsample="pixelshuffle")
    with pytest.raises(ValueError, match="padding"):
        ClassicUNet(2, 1, 1, padding="full")
    with pytest.raises(ValueError, match="spatial_dims"):
        ClassicUNet(1, 1, 1)
    with pytest.raises(ValueError, match="deep_supervision needs padding='same'"):
        ClassicUNet(2, 1, 1, padding="valid", deep_supervision=True)
    with pytest.raises(ValueError, match="channels"):
        ClassicUNet(2, 1, 1, channels=(8,))


@pytest.mark.parametrize("upsample,padding", [("deconv", "same"), ("linear", "same"), ("deconv", "valid")])
def test_gradients_reach_every_parameter(upsample: str, padding: str) -> None:
    net = ClassicUNet(2, 1, 2, channels=(2, 3, 4, 5, 6), upsample=upsample, padding=padding, dropout=0.1)
    size = (33, 40) if padding == "same" else (188, 190)
    net(torch.randn(2, 1, *size)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize(
    "spatial_dims,upsample,padding", [(2, "deconv", "same"), (3, "linear", "same"), (2, "linear", "valid")]
)
def test_torchscript_matches_eager(spatial_dims: int, upsample: str, padding: str) -> None:
    net = ClassicUNet(spatial_dims, 1, 2, channels=(2, 3, 4, 5, 6), upsample=upsample, padding=padding).eval()
    size = {2: (37, 42), 3: (17, 20, 16)}[spatial_dims] if padding == "same" else (188, 196)
    x = torch.randn(1, 1, *size)
    scripted = torch.jit.script(net)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


@pytest.mark.parametrize("spatial_dims,upsample,size", [(2, "deconv", (37, 42)), (3, "linear", (17, 20, 16))])
def test_onnx_export_matches_eager(spatial_dims: int, upsample: str, size: tuple, tmp_path) -> None:
    net = ClassicUNet(spatial_dims, 1, 3, channels=(2, 3, 4, 5, 6), upsample=upsample).eval()
    assert_onnx_matches_eager(net, (torch.randn(1, 1, *size),), tmp_path)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_deep_supervision_sides_finest_first(spatial_dims: int) -> None:
    net = ClassicUNet(spatial_dims, 1, 2, channels=(2, 3, 4, 5, 6), deep_supervision=True)
    heads = [decoder.side_head for decoder in net.decoders if decoder.side_head is not None]
    assert len(heads) == 3  # every decoder level but the finest, which feeds the main head
    # constant side heads tell which level each output comes from: decoders run coarsest first
    with torch.no_grad():
        for level, head in zip((3, 2, 1), heads):
            head.conv.conv.weight.zero_()
            head.conv.conv.bias.fill_(level)
    size = (20, 27, 18)[:spatial_dims]
    outputs = net.train()(torch.randn(2, 1, *size))
    assert len(outputs) == 4 and all(o.shape == (2, 2, *size) for o in outputs)
    for level, side in zip((1, 2, 3), outputs[1:]):
        torch.testing.assert_close(side, torch.full_like(side, level))
    assert isinstance(net.eval()(torch.randn(1, 1, *size)), torch.Tensor)
