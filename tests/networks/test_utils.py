"""Shape checks of the networks, on the meta device."""

from __future__ import annotations

import pytest
import torch
from monai_unets.networks import (
    AttentionGateUNet,
    ClassicUNet,
    EGEUNet,
    UNetV2,
    check_input_size,
    input_shape_problem,
)


def test_sizes_a_network_cannot_train_at_are_found_on_shapes_alone():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=4), torch.nn.BatchNorm2d(4))
    both = (False, True)
    assert input_shape_problem(net, (1, 1, 8, 8), both) is None  # 2 x 2 after the conv
    # 1 x 1 after the conv: fine in eval mode, but batch norm cannot train on one value per channel
    assert input_shape_problem(net, (1, 1, 4, 4)) is None
    assert "more than 1 value per channel" in input_shape_problem(net, (1, 1, 4, 4), both)
    assert input_shape_problem(net, (1, 2, 8, 8)) is not None  # wrong channel count
    assert all(p.device.type == "cpu" for p in net.parameters())  # checked on a copy


class _TwoLineRefusal(torch.nn.Module):
    def forward(self, x):
        raise RuntimeError("cannot take this input:\n  its last side must be even, got 5")


def test_a_problem_is_given_whole_in_one_line():
    # its first line alone had been given: "cannot take this input:"
    problem = input_shape_problem(_TwoLineRefusal(), (1, 1, 4, 5))
    assert problem == "cannot take this input: its last side must be even, got 5"


def test_a_size_the_network_cannot_take_names_the_setting():
    check_input_size(EGEUNet(2, 3, 1), 3, [32, 48], "image_size")
    with pytest.raises(ValueError, match=r"image_size \[16, 64\] does not fit the network EGEUNet: .*>= 32"):
        check_input_size(EGEUNet(2, 3, 1), 3, [16, 64], "image_size")


class _StatedRule(torch.nn.Conv2d):
    def input_size_problem(self, spatial_size):
        return f"stated rule for {list(spatial_size)}"


def test_a_stated_size_rule_is_asked_instead_of_a_trace():
    net = _StatedRule(1, 1, 3)
    assert input_shape_problem(net, (1, 1, 8, 8)) == "stated rule for [8, 8]"
    # training mode has rules of its own (batch norm): traced
    assert input_shape_problem(net, (1, 1, 8, 8), (False, True)) is None


@pytest.mark.parametrize(
    "net",
    [
        EGEUNet(2, 3, 2),
        EGEUNet(3, 1, 3, channels=(4, 8, 8, 8, 8, 8), full_resolution=True),
        AttentionGateUNet(2, 1, 2, channels=(4, 8, 8, 8, 8)),
        AttentionGateUNet(3, 1, 3, channels=(4, 8, 8, 8)),
        ClassicUNet(2, 1, 2, channels=(4, 8, 8, 8, 8)),
        ClassicUNet(2, 1, 2, channels=(4, 8, 8), padding="valid"),
        # instance norms refuse maps of one voxel: the coarsest maps need two
        EGEUNet(2, 1, 2, channels=(4, 8, 8, 8, 8, 8), norm="instance"),
        EGEUNet(3, 1, 2, channels=(4, 8, 8, 8, 8, 8), norm="instance"),
        AttentionGateUNet(2, 1, 2, channels=(4, 8, 8, 8, 8), norm="instance"),
        ClassicUNet(3, 1, 2, channels=(4, 8, 8), norm="instance"),
    ],
    ids=lambda net: f"{type(net).__name__}-{net.spatial_dims}d-min{net.min_size}-{net.coarsest_scale}",
)
def test_the_stated_size_rule_is_what_a_trace_finds(net):
    """Around the smallest size, odd and anisotropic: the rule accepts exactly the sizes a meta-device trace does."""
    in_channels = next(net.parameters()).shape[1]
    for low in range(net.min_size - 3, net.min_size + 4):
        wider = (
            [net.min_size + 5] * (net.spatial_dims - 1) + [low],
            [2 * net.min_size] * (net.spatial_dims - 1) + [low],
        )
        for spatial in ([low] * net.spatial_dims, *wider):
            stated = net.input_size_problem(spatial)
            # wrapped, the network states no rule of its own and is traced
            traced = input_shape_problem(torch.nn.Sequential(net), (1, in_channels, *spatial))
            assert (stated is None) == (traced is None), (spatial, stated, traced)
            if stated is not None:
                assert stated == traced


@pytest.mark.parametrize("scripted", [False, True])
@pytest.mark.parametrize(
    "net",
    [
        EGEUNet(2, 3, 1),
        EGEUNet(3, 1, 2),
        AttentionGateUNet(2, 1, 2, channels=(4, 8, 8)),
        ClassicUNet(3, 1, 2),
        UNetV2(3, 1, 2, encoder="conv", channels=(8, 8, 8, 8), decoder_channels=8),
    ],
    ids=lambda net: f"{type(net).__name__}-{net.spatial_dims}d",
)
def test_an_input_of_the_wrong_rank_is_refused_in_words(net, scripted):
    """An unbatched image, or a volume given to a 2D network, is named as such, in every mode (not a layer's error)."""
    in_channels = next(net.parameters()).shape[1]
    dims = net.spatial_dims
    axes = "D, H, W" if dims == 3 else "H, W"
    model = torch.jit.script(net) if scripted else net
    for shape in ((in_channels, *[32] * dims), (1, in_channels, *[32] * (dims + 1))):
        expected = rf"{type(net).__name__} \({dims}D\) takes inputs of shape \(batch, channels, {axes}\); got shape"
        for training in (False, True):
            with torch.no_grad(), pytest.raises((ValueError, torch.jit.Error), match=expected):
                model.train(training)(torch.zeros(shape))
    if hasattr(net, "input_size_problem"):
        assert net.input_size_problem([32] * (dims + 1)).startswith(f"{type(net).__name__} ({dims}D) takes inputs")


@pytest.mark.parametrize(
    "net, size",
    [(ClassicUNet(2, 1, 1), 16), (EGEUNet(2, 1, 1, norm="batch"), 32), (AttentionGateUNet(3, 1, 1, (4, 8, 8)), 4)],
    ids=lambda value: type(value).__name__ if isinstance(value, torch.nn.Module) else str(value),
)
def test_batch_norms_in_training_name_a_batch_of_one_coarsest_voxel(net, size):
    # the size rule passed, then torch failed inside: "Expected more than 1 value per channel when training"
    one = torch.randn(1, 1, *[size] * net.spatial_dims)
    with pytest.raises(ValueError, match=rf"{type(net).__name__} in training with batch norm needs more than one"):
        net.train()(one)
    assert "train with a batch of 2 or more" in input_shape_problem(net, tuple(one.shape), (False, True))
    with torch.no_grad():
        assert net.eval()(one).shape[2:] == one.shape[2:]  # eval mode takes its running statistics
    output = net.train()(torch.cat([one, one]))
    assert (output[0] if isinstance(output, list) else output).shape[0] == 2  # deep supervision lists its outputs
