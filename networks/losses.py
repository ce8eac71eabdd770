"""Losses for deeply supervised U-Nets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss
from torch import nn

__all__ = ["DeepSupervisedDiceCELoss"]

# EGE-UNet's side-output weights: 1 for the main output, then 0.5 (finest side head) down to 0.1 (coarsest).
EGEUNET_WEIGHTS = (1.0, 0.5, 0.4, 0.3, 0.2, 0.1)


class DeepSupervisedDiceCELoss(nn.Module):
    """Dice + cross-entropy on a network's main output and on each of its deep-supervision outputs.

    Binary mode (``multiclass=False``, one output channel) computes, per output, binary cross-entropy on the
    logits plus ``1 - Dice`` of the sigmoid probabilities, Dice taken per sample and averaged over the batch
    with smoothing 1 in numerator and denominator: the ``BceDiceLoss`` of EGE-UNet. Multi-class mode
    (``multiclass=True``) takes softmax logits with K channels and a label map with class indices, and
    computes cross-entropy plus soft Dice over the one-hot classes.

    The outputs are weighted by ``weights`` in order (main output first); with the default weights this is
    EGE-UNet's ``L = BD(out) + 0.5 BD(ds1) + 0.4 BD(ds2) + 0.3 BD(ds3) + 0.2 BD(ds4) + 0.1 BD(ds5)``. With no
    weights, or fewer weights than the network gives outputs (deep supervision switched on in a config that set
    weights for one output), all outputs take MONAI's halving weights instead: ``1, 0.5, 0.25, 0.125`` and
    ``0.0625`` for every further output (``DeepSupervisionLoss``'s ``weight_mode="exp"``). A single tensor (a
    network in eval mode or without deep supervision) gets the plain Dice + CE loss. Side outputs smaller than
    the target are compared with the target resized by nearest neighbour.

    Built on MONAI's :class:`~monai.losses.DiceCELoss` and :class:`~monai.losses.DeepSupervisionLoss`.
    Binary cross-entropy is computed on logits, so the loss is safe under mixed precision.

    Args:
        multiclass: softmax over K >= 2 channels with integer labels, instead of a sigmoid on one channel.
        weights: weight of each output, main output first; ``None``, or too few for the outputs, gives the
            halving weights above.
        include_background: multi-class only: include channel 0 in the Dice term.
        lambda_dice: weight of the Dice term.
        lambda_ce: weight of the cross-entropy term.
        smooth: smoothing added to the Dice numerator and denominator.

    Example::

        >>> loss = DeepSupervisedDiceCELoss()
        >>> outputs = [torch.randn(2, 1, 32, 32) for _ in range(6)]
        >>> loss(outputs, torch.randint(0, 2, (2, 1, 32, 32)).float()).shape
        torch.Size([])
    """

    def __init__(
        self,
        multiclass: bool = False,
        weights: Sequence[float] | None = EGEUNET_WEIGHTS,
        include_background: bool = True,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        self.multiclass = multiclass
        base = DiceCELoss(
            sigmoid=not multiclass,
            softmax=multiclass,
            to_onehot_y=multiclass,
            include_background=include_background if multiclass else True,
            smooth_nr=smooth,
            smooth_dr=smooth,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
        )
        self.loss = DeepSupervisionLoss(base, weight_mode="exp", weights=None if weights is None else list(weights))

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        first = outputs if isinstance(outputs, torch.Tensor) else outputs[0]
        if not self.multiclass and first.shape[1] != 1:
            raise ValueError(
                f"binary mode expects one output channel, got {first.shape[1]}; "
                "use multiclass=True for softmax outputs."
            )
        return self.loss(outputs, target)
