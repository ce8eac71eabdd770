"""Tests of the skip size-matching helpers."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks.blocks.conv import center_crop_to, center_pad_to, match_size


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
