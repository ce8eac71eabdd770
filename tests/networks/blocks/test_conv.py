"""Tests of the double conv block and the skip size-matching helpers."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks.blocks.conv import DoubleConv, center_crop_to, center_pad_to, match_size


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_double_conv_shape(spatial_dims: int, padding: str) -> None:
    block = DoubleConv(spatial_dims, 3, 8, padding=padding)
    size = (13, 10, 9)[:spatial_dims]
    out = block(torch.randn(2, 3, *size))
    expected = size if padding == "same" else tuple(s - 4 for s in size)
    assert out.shape == (2, 8, *expected)


def test_double_conv_layers_and_parameters() -> None:
    # the first level of the 31,042,369-parameter U-Net: 640 + 128 + 36,928 + 128
    block = DoubleConv(2, 1, 64)
    assert sum(p.numel() for p in block.parameters()) == 37_824
    assert [name for name, _ in block.named_children()] == ["conv1", "norm1", "act1", "conv2", "norm2", "act2"]
    plain = DoubleConv(2, 1, 64, mid_channels=16, norm=None, act="relu", bias=False, dropout=0.1)
    assert [name for name, _ in plain.named_children()] == ["conv1", "act1", "drop1", "conv2", "act2", "drop2"]
    assert plain.conv1.out_channels == 16


def test_double_conv_bad_arguments() -> None:
    with pytest.raises(ValueError, match="padding"):
        DoubleConv(2, 1, 4, padding="full")
    with pytest.raises(ValueError, match="odd"):
        DoubleConv(2, 1, 4, kernel_size=2)


def test_crop_pad_and_match() -> None:
    x = torch.arange(7 * 6, dtype=torch.float32).reshape(1, 1, 7, 6)
    cropped = center_crop_to(x, [4, 4])
    assert torch.equal(cropped, x[:, :, 1:5, 1:5])
    padded = center_pad_to(x, [8, 9])
    assert padded.shape == (1, 1, 8, 9)
    assert torch.equal(padded[:, :, 0:7, 1:7], x)  # one extra row after, (1, 2) columns
    assert padded.sum() == x.sum()
    assert center_pad_to(x, [7, 6]) is x
    mixed = match_size(x, [5, 8])
    assert mixed.shape == (1, 1, 5, 8)
    assert torch.equal(mixed[:, :, :, 1:7], x[:, :, 1:6])
    with pytest.raises(ValueError):
        center_crop_to(x, [8, 6])
    with pytest.raises(ValueError):
        center_pad_to(x, [6, 6])


def test_helpers_script() -> None:
    x = torch.randn(1, 2, 5, 9, 4)
    for fn in (center_crop_to, center_pad_to, match_size):
        scripted = torch.jit.script(fn)
        size = [3, 9, 2] if fn is center_crop_to else [7, 9, 6] if fn is center_pad_to else [3, 11, 4]
        assert torch.equal(scripted(x, size), fn(x, size))
