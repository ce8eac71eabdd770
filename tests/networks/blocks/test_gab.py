from __future__ import annotations

import pytest
import torch
from monai_unets.networks import GAB, count_parameters


def test_parameter_count_of_the_published_bridge():
    # GAB(32 -> 24) with a one-channel mask: 1x1 projection 32*24+24, four groups of 13 channels
    # (LayerNorm 2*13 + depthwise 3x3 13*9+13), tail LayerNorm 2*52 and 1x1 52*24+24
    expected = (32 * 24 + 24) + 4 * (2 * 13 + 13 * 9 + 13) + (2 * 52) + (52 * 24 + 24)
    assert count_parameters(GAB(2, 32, 24, mask_channels=1)) == expected


@pytest.mark.parametrize("mask_channels", [0, 1, 3])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes(mask_channels, spatial_dims):
    gab = GAB(spatial_dims, 32, 24, mask_channels)
    low = (10,) * spatial_dims
    high = (5,) * spatial_dims
    mask = torch.randn(1, mask_channels, *low) if mask_channels else None
    out = gab(torch.randn(1, 32, *high), torch.randn(1, 24, *low), mask)
    assert out.shape == (1, 24, *low)


def test_mask_presence_must_match_construction():
    with pytest.raises(ValueError, match="mask"):
        GAB(2, 32, 24, mask_channels=1)(torch.randn(1, 32, 4, 4), torch.randn(1, 24, 8, 8), None)
    with pytest.raises(ValueError, match="mask"):
        GAB(2, 32, 24, mask_channels=0)(torch.randn(1, 32, 4, 4), torch.randn(1, 24, 8, 8), torch.randn(1, 1, 8, 8))
