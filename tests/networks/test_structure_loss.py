"""Tests of the polyp structure loss (weighted BCE + weighted IoU) and its deep-supervision wrapper."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai_unets.networks.structure_loss import DeepSupervisedStructureLoss, StructureLoss


def _expected_2d(logits: list[list[float]], mask: list[list[float]], kernel: int, edge: float = 5.0) -> float:
    """The structure loss of one 2D sample, element by element in plain Python."""
    rows, cols, half = len(mask), len(mask[0]), kernel // 2

    def pooled(i: int, j: int) -> float:
        # zero padding counts in the average, so the divisor is always kernel ** 2
        total = sum(
            mask[a][b]
            for a in range(i - half, i + half + 1)
            for b in range(j - half, j + half + 1)
            if 0 <= a < rows and 0 <= b < cols
        )
        return total / kernel**2

    w_sum = bce_sum = inter = union = 0.0
    for i in range(rows):
        for j in range(cols):
            x, y = logits[i][j], mask[i][j]
            w = 1 + edge * abs(pooled(i, j) - y)
            p = 1 / (1 + math.exp(-x))
            bce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
            w_sum += w
            bce_sum += w * bce
            inter += p * y * w
            union += (p + y) * w
    return bce_sum / w_sum + 1 - (inter + 1) / (union - inter + 1)


def test_matches_hand_computed_value() -> None:
    logits = [[2.0, -1.0, 0.5, 0.0], [1.5, 3.0, -2.0, 0.3], [-0.5, 0.8, 1.0, -1.5]]
    mask = [[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]
    other_logits = [[-1.0, 0.2, 0.0, 2.5], [0.1, -0.3, 1.2, -2.2], [0.4, 0.0, -1.0, 1.0]]
    other_mask = [[0.0, 0.0, 0.0, 1.0], [0.0, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]  # soft labels are allowed
    loss = StructureLoss(kernel_size=3)
    value = loss(torch.tensor([[logits], [other_logits]]), torch.tensor([[mask], [other_mask]]))
    expected = (_expected_2d(logits, mask, 3) + _expected_2d(other_logits, other_mask, 3)) / 2
    assert value.item() == pytest.approx(expected, rel=1e-5)
    per_sample = StructureLoss(kernel_size=3, reduction="none")(
        torch.tensor([[logits], [other_logits]]), torch.tensor([[mask], [other_mask]])
    )
    assert per_sample.shape == (2, 1)
    assert per_sample[0, 0].item() == pytest.approx(_expected_2d(logits, mask, 3), rel=1e-5)


def test_weight_map_is_one_inside_and_larger_on_the_boundary() -> None:
    mask = torch.zeros(1, 1, 9, 9)
    mask[..., 2:7, 2:7] = 1
    weights = StructureLoss(kernel_size=3).weight_map(mask)
    assert weights[0, 0, 4, 4] == 1 and weights[0, 0, 0, 8] == 1  # deep inside and far outside
    assert weights[0, 0, 2, 2] == pytest.approx(1 + 5 * (1 - 4 / 9))  # a corner of the square
    assert weights.max() <= 1 + 5 * (1 - 1 / 9) + 1e-6


def test_confident_correct_prediction_scores_lower_than_wrong_one() -> None:
    mask = torch.zeros(2, 1, 48, 48)
    mask[:, :, 10:30, 12:40] = 1
    loss = StructureLoss()
    perfect = loss((mask * 2 - 1) * 20, mask)
    assert perfect.item() < 0.01
    assert loss(torch.zeros_like(mask), mask) > 0.5
    assert loss((1 - 2 * mask) * 20, mask) > 10


def test_3d_and_1d_inputs() -> None:
    mask = (torch.rand(2, 1, 8, 12, 10) > 0.5).float()
    value = StructureLoss(kernel_size=5)(torch.randn(2, 1, 8, 12, 10), mask)
    assert value.ndim == 0 and torch.isfinite(value)
    # volumes get a 3D box filter: voxels next to the cube's faces along the third axis are weighted too
    cube = torch.zeros(1, 1, 16, 16, 16)
    cube[..., 4:12, 4:12, 4:12] = 1
    weights = StructureLoss(kernel_size=5).weight_map(cube)
    assert weights[0, 0, 8, 8, 8] == 1 and weights[0, 0, 0, 0, 0] == 1  # deep inside and far outside
    assert weights[0, 0, 8, 8, 3] > 1 and weights[0, 0, 8, 8, 12] > 1  # just outside the faces on the third axis
    assert torch.isfinite(StructureLoss(kernel_size=3)(torch.randn(2, 1, 16), (torch.rand(2, 1, 16) > 0.5).float()))


def test_gradients_flow_and_half_precision_logits_are_safe() -> None:
    logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    mask = (torch.rand(2, 1, 32, 32) > 0.5).float()
    StructureLoss()(logits, mask).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    value = StructureLoss()(logits.detach().half() * 100, mask)
    assert value.dtype == torch.float32 and torch.isfinite(value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="odd"):
        StructureLoss(kernel_size=4)
    with pytest.raises(ValueError, match="reduction"):
        StructureLoss(reduction="max")
    with pytest.raises(ValueError, match="same shape"):
        StructureLoss()(torch.randn(1, 1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="outputs but only 2 weights"):
        DeepSupervisedStructureLoss()([torch.randn(1, 1, 8, 8)] * 3, torch.zeros(1, 1, 8, 8))


def test_deep_supervision_weights_outputs_and_resizes_the_target() -> None:
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 4:20] = 1
    main, side = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 16, 16)
    single = StructureLoss()
    side_target = F.interpolate(mask, size=(16, 16), mode="nearest-exact")
    expected = 1.0 * single(main, mask) + 0.5 * single(side, side_target)
    value = DeepSupervisedStructureLoss(weights=(1.0, 0.5))([main, side], mask)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    # the default weighs both outputs of U-Net v2's polyp network by 1
    both = DeepSupervisedStructureLoss()((main, side), mask)
    assert both.item() == pytest.approx((single(main, mask) + single(side, side_target)).item(), rel=1e-6)
    # a plain tensor (eval mode) gets the plain loss; integer masks are accepted
    assert DeepSupervisedStructureLoss()(main, mask.long()).item() == pytest.approx(single(main, mask).item())


def test_deep_supervision_gradients_reach_every_output() -> None:
    outputs = [torch.randn(1, 1, 16, 16, requires_grad=True), torch.randn(1, 1, 8, 8, requires_grad=True)]
    DeepSupervisedStructureLoss(kernel_size=5)(outputs, (torch.rand(1, 1, 16, 16) > 0.5).float()).backward()
    assert all(output.grad is not None and output.grad.abs().sum() > 0 for output in outputs)
