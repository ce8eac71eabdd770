from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai_unets.networks import DeepSupervisedDiceCELoss

LOGITS = torch.tensor([[[[0.0, 2.0], [-1.0, 1.0]]]])
TARGET = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])


def _hand_bce_dice() -> float:
    """EGE-UNet's BceDiceLoss for LOGITS and TARGET, written out element by element."""
    p = [1 / (1 + math.exp(-v)) for v in (0.0, 2.0, -1.0, 1.0)]
    t = [0.0, 1.0, 0.0, 1.0]
    bce = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / 4
    dice = (2 * sum(pi * ti for pi, ti in zip(p, t)) + 1) / (sum(p) + sum(t) + 1)
    return bce + (1 - dice)


def test_binary_against_hand_computed_value():
    expected = _hand_bce_dice()
    assert expected == pytest.approx(0.576689, abs=1e-6)
    assert DeepSupervisedDiceCELoss()(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-5)


def test_deep_supervision_weights():
    loss = DeepSupervisedDiceCELoss()
    # main output weight 1, finest side output 0.5
    assert loss([LOGITS, LOGITS], TARGET).item() == pytest.approx(1.5 * _hand_bce_dice(), rel=1e-5)
    # all six outputs: 1 + 0.5 + 0.4 + 0.3 + 0.2 + 0.1
    assert loss([LOGITS] * 6, TARGET).item() == pytest.approx(2.5 * _hand_bce_dice(), rel=1e-5)


@pytest.mark.parametrize("weights", [None, [1.0], (1.0, 0.5, 0.4, 0.3, 0.2, 0.1)])
def test_too_few_weights_take_halving_weights(weights):
    # a config with one weight (deep supervision off) must still train once deep supervision is switched on
    outputs = 7 if weights else 5
    expected = sum([1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625, 0.0625][:outputs]) * _hand_bce_dice()
    got = DeepSupervisedDiceCELoss(weights=weights)([LOGITS] * outputs, TARGET)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_dice_is_per_sample_then_averaged():
    logits = torch.cat([LOGITS, -LOGITS])
    target = torch.cat([TARGET, TARGET])
    single = [DeepSupervisedDiceCELoss(lambda_ce=0.0)(logits[i : i + 1], target[i : i + 1]).item() for i in range(2)]
    assert DeepSupervisedDiceCELoss(lambda_ce=0.0)(logits, target).item() == pytest.approx(sum(single) / 2, rel=1e-5)


def test_multiclass_variant_is_cross_entropy_plus_soft_dice():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 1, 4, 4))
    ce = F.cross_entropy(logits, labels[:, 0])
    probs = logits.softmax(1)
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).float()
    inter = (probs * onehot).sum((2, 3))
    dice = (2 * inter + 1) / (probs.sum((2, 3)) + onehot.sum((2, 3)) + 1)
    expected = ce + (1 - dice).mean()
    got = DeepSupervisedDiceCELoss(multiclass=True)(logits, labels)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_binary_mode_rejects_multichannel_outputs():
    with pytest.raises(ValueError, match="multiclass=True"):
        DeepSupervisedDiceCELoss()(torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))


def test_trains_egeunet_outputs():
    from monai_unets.networks import EGEUNet

    net = EGEUNet(2, 3, 1)
    outputs = net(torch.randn(2, 3, 64, 64))
    loss = DeepSupervisedDiceCELoss()(outputs, (torch.rand(2, 1, 64, 64) > 0.5).float())
    loss.backward()
    assert torch.isfinite(loss)
