"""Shape checks of the networks, on the meta device."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks import EGEUNet, check_input_size, input_shape_problem


def test_sizes_a_network_cannot_train_at_are_found_on_shapes_alone():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=4), torch.nn.BatchNorm2d(4))
    both = (False, True)
    assert input_shape_problem(net, (1, 1, 8, 8), both) is None  # 2 x 2 after the conv
    # 1 x 1 after the conv: fine in eval mode, but batch norm cannot train on one value per channel
    assert input_shape_problem(net, (1, 1, 4, 4)) is None
    assert "more than 1 value per channel" in input_shape_problem(net, (1, 1, 4, 4), both)
    assert input_shape_problem(net, (1, 2, 8, 8)) is not None  # wrong channel count
    assert all(p.device.type == "cpu" for p in net.parameters())  # checked on a copy


def test_a_size_the_network_cannot_take_names_the_setting():
    check_input_size(EGEUNet(2, 3, 1), 3, [32, 48], "image_size")
    with pytest.raises(ValueError, match=r"image_size \[16, 64\] does not fit the network EGEUNet: .*>= 32"):
        check_input_size(EGEUNet(2, 3, 1), 3, [16, 64], "image_size")
