from __future__ import annotations

import pytest
import torch
from monai_unets.networks import GHPA, count_parameters
from monai_unets.networks.blocks.ghpa import split_sizes


def test_published_parameter_count():
    # GHPA(24 -> 32) of the published EGE-UNet has 1,952 parameters
    assert count_parameters(GHPA(2, 24, 32)) == 1952


@pytest.mark.parametrize("spatial_dims, size", [(2, (16, 16)), (2, (7, 33)), (3, (8, 9, 10))])
def test_any_size(spatial_dims, size):
    block = GHPA(spatial_dims, 24, 16)
    assert block(torch.randn(2, 24, *size)).shape == (2, 16, *size)


def test_3d_has_one_group_per_axis_and_uneven_split():
    block = GHPA(3, 24, 24)
    # space, three (channel, axis) maps and the local conv group: 24 channels in 5 groups
    assert block.sizes == [5, 5, 5, 5, 4]
    assert len(block.axis_maps) == 3


def test_split_sizes():
    assert split_sizes(24, 4) == [6, 6, 6, 6]
    assert split_sizes(7, 3) == [3, 2, 2]
    with pytest.raises(ValueError):
        split_sizes(3, 4)


def test_axis_map_varies_along_its_axis_only():
    block = GHPA(2, 8, 8)
    length = 12
    axis_map = block.axis_maps[0](length)
    assert axis_map.shape == (1, 2, length)
