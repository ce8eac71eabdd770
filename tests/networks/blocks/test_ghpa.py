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


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_each_axis_group_varies_along_its_axis_only(spatial_dims):
    block = GHPA(spatial_dims, 16, 16).eval()
    with torch.no_grad():
        for axis_map in block.axis_maps:
            axis_map.params.uniform_(0.5, 1.5)
    groups = {}
    # the concatenated groups, just before the output normalisation
    block.norm_out.register_forward_pre_hook(lambda _, args: groups.setdefault("cat", args[0]))
    # constant over space, different per channel: any spatial variation comes from the attention maps
    size = (9, 11, 7)[:spatial_dims]
    x = torch.arange(16.0).view(1, 16, *([1] * spatial_dims)).expand(1, 16, *size).contiguous()
    with torch.no_grad():
        block(x)
    start = block.sizes[0]
    for axis in range(spatial_dims):
        group = groups["cat"][:, start : start + block.sizes[axis + 1]]
        start += block.sizes[axis + 1]
        for other in range(spatial_dims):
            spread = group.std(dim=2 + other).max().item()
            if other == axis:
                assert spread > 1e-3, f"group of axis {axis} is constant along it"
            else:
                assert spread < 1e-5, f"group of axis {axis} varies along axis {other}"


def _fresh_output(block, x):
    """The block's output with its maps computed from the parameters, as in training."""
    with torch.enable_grad():
        return block(x).detach()


def test_eval_maps_follow_parameter_changes():
    block = GHPA(2, 16, 8).eval()
    x = torch.randn(1, 16, 12, 20)
    with torch.inference_mode():
        first = block(x)
        torch.testing.assert_close(block(x), first)
    # an optimiser step changes the parameters in place: the next no-grad pass must use the new maps
    with torch.no_grad():
        block.params_space.mul_(3.0)
        block.axis_maps[0].params.add_(1.0)
        changed = block(x)
    assert not torch.allclose(changed, first)
    torch.testing.assert_close(changed, _fresh_output(block, x))
    # new weights loaded into the same module
    other = GHPA(2, 16, 8)
    block.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(block(x), _fresh_output(block, x))


def test_eval_maps_follow_updates_through_data():
    # an EMA (mean-teacher) update writes through .data, which bumps no version: the cache must see the values
    block, student = GHPA(2, 16, 8).eval(), GHPA(2, 16, 8)
    x = torch.randn(1, 16, 12, 20)
    with torch.no_grad():
        first = block(x)
        for ema_p, p in zip(block.parameters(), student.parameters()):
            ema_p.data.mul_(0.9).add_(p.data, alpha=0.1)
        block.params_space.data.mul_(3.0)
        updated = block(x)
    assert not torch.allclose(updated, first)
    torch.testing.assert_close(updated, _fresh_output(block, x))


def test_torchscript_after_eval_forwards_matches_eager():
    # evaluation before export fills the cache, whose keys TorchScript cannot type
    block = GHPA(2, 16, 8).eval()
    x = torch.randn(1, 16, 12, 20)
    with torch.no_grad():
        block(x)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        block(x)
    scripted = torch.jit.script(block)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), block(x))
        y = torch.randn(2, 16, 9, 14)
        torch.testing.assert_close(scripted(y), block(y))


def test_eval_maps_per_input_size():
    block = GHPA(3, 20, 8).eval()
    with torch.no_grad():
        for size in [(6, 7, 8), (8, 7, 6), (6, 7, 8)]:
            x = torch.randn(1, 20, *size)
            torch.testing.assert_close(block(x), _fresh_output(block, x))


def test_gradients_in_eval_mode_reach_the_maps():
    # saliency or fine-tuning with frozen statistics: eval mode with autograd must not use detached maps
    block = GHPA(2, 8, 8).eval()
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        block(x)
    block(x).sum().backward()
    assert block.params_space.grad is not None and block.axis_maps[1].params.grad is not None


def test_block_made_in_inference_mode_sees_in_place_changes():
    # inference tensors track no versions: only the values can tell the cache of this in-place change
    with torch.inference_mode():
        block = GHPA(2, 16, 8).eval()
        x = torch.randn(1, 16, 12, 20)
        first = block(x)
        block.params_space.mul_(3.0)
        changed = block(x)
    assert not torch.allclose(changed, first)
    with torch.inference_mode(False), torch.enable_grad():
        fresh = GHPA(2, 16, 8).eval()
        fresh.load_state_dict({k: v.clone() for k, v in block.state_dict().items()})
        torch.testing.assert_close(changed, fresh(x.clone()).detach())
