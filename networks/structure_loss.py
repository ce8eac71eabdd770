"""The polyp "structure loss" of PraNet and U-Net v2: boundary-weighted BCE plus boundary-weighted IoU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss
from torch import nn

__all__ = ["DeepSupervisedStructureLoss", "StructureLoss"]

_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_REDUCTIONS = ("mean", "sum", "none")


class StructureLoss(nn.Module):
    """Weighted binary cross-entropy plus weighted IoU on logits, with more weight near object boundaries.

    The weight map is ``w = 1 + edge_weight * |avg_pool(mask) - mask|`` with a ``kernel_size`` box filter,
    stride 1 and zero padding ``kernel_size // 2`` (the padding counts in the average, as in PyTorch's
    default): it is 1 far from any edge and grows towards ``1 + edge_weight / 2`` on the boundary. For each
    sample and channel, with ``p = sigmoid(input)`` and sums over the spatial dimensions,

    - ``wbce = sum(w * bce_with_logits(input, mask)) / sum(w)``,
    - ``wiou = 1 - (sum(p * mask * w) + smooth) / (sum((p + mask) * w) - sum(p * mask * w) + smooth)``,

    and the loss is ``wbce + wiou``, averaged over batch and channels. With the defaults (``kernel_size=31``,
    ``edge_weight=5``, ``smooth=1``) this is the loss of PraNet's and U-Net v2's polyp training. It works
    for 1D, 2D and 3D inputs (the box filter follows the number of spatial dimensions), and computes in
    float32 on logits, so it is safe under mixed precision. Soft masks in [0, 1] are allowed.

    Args:
        kernel_size: side of the box filter that finds the boundaries; odd, at least 1.
        edge_weight: how much extra weight the boundary region gets.
        smooth: added to numerator and denominator of the IoU term.
        reduction: ``"mean"`` (default) or ``"sum"`` over batch and channels, or ``"none"`` for a
            ``(batch, channels)`` tensor of per-sample losses.

    Example::

        >>> loss = StructureLoss()
        >>> logits = torch.randn(2, 1, 64, 64)
        >>> mask = (torch.rand(2, 1, 64, 64) > 0.5).float()
        >>> loss(logits, mask).shape
        torch.Size([])
    """

    def __init__(
        self, kernel_size: int = 31, edge_weight: float = 5.0, smooth: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            # An even box filter would shift the weight map by half a pixel against the mask.
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}.")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        self.kernel_size = kernel_size
        self.edge_weight = edge_weight
        self.smooth = smooth
        self.reduction = reduction

    def weight_map(self, target: torch.Tensor) -> torch.Tensor:
        """The boundary weights ``1 + edge_weight * |avg_pool(target) - target|``.

        Args:
            target: mask of shape ``(batch, channels, *spatial)`` with values in [0, 1].

        Returns:
            A tensor of the same shape.

        Example::

            >>> # a corner of an all-ones mask averages 4 ones over 9 cells: 1 + 5 * |4/9 - 1|
            >>> round(StructureLoss(kernel_size=3).weight_map(torch.ones(1, 1, 4, 4))[0, 0, 0, 0].item(), 4)
            3.7778
        """
        spatial_dims = target.ndim - 2
        if spatial_dims not in _AVG_POOL:
            raise ValueError(
                f"expected 1 to 3 spatial dimensions (shape (B, C, ...)), got shape {tuple(target.shape)}."
            )
        pooled = _AVG_POOL[spatial_dims](target, kernel_size=self.kernel_size, stride=1, padding=self.kernel_size // 2)
        return 1.0 + self.edge_weight * torch.abs(pooled - target)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            input: logits of shape ``(batch, channels, *spatial)``.
            target: mask of the same shape, values in [0, 1].

        Returns:
            The reduced loss (see ``reduction``).
        """
        if input.shape != target.shape:
            raise ValueError(
                f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}."
            )
        # float32 throughout: the weighted sums over a whole image overflow or lose precision in float16.
        logits = input.float()
        mask = target.float()
        weights = self.weight_map(mask)
        spatial = tuple(range(2, logits.ndim))

        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
        wbce = (weights * bce).sum(spatial) / weights.sum(spatial)

        probabilities = torch.sigmoid(logits)
        inter = (probabilities * mask * weights).sum(spatial)
        union = ((probabilities + mask) * weights).sum(spatial)
        wiou = 1.0 - (inter + self.smooth) / (union - inter + self.smooth)

        loss = wbce + wiou
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class DeepSupervisedStructureLoss(nn.Module):
    """:class:`StructureLoss` on a network's main output and on each of its deep-supervision outputs.

    The outputs (main output first, then the side outputs from finest to coarsest) are weighted by
    ``weights`` in order and summed; U-Net v2's polyp training applies the structure loss with weight 1 to
    both of its outputs, the default. A single tensor (a network in eval mode or without deep supervision)
    gets the plain structure loss. Side outputs smaller than the target are compared with the target
    resized by nearest neighbour. Built on MONAI's :class:`~monai.losses.DeepSupervisionLoss`.

    Args:
        weights: weight of each output, main output first; more outputs than weights is an error.
        kernel_size: see :class:`StructureLoss`.
        edge_weight: see :class:`StructureLoss`.
        smooth: see :class:`StructureLoss`.

    Example::

        >>> loss = DeepSupervisedStructureLoss(weights=(1.0, 1.0))
        >>> outputs = [torch.randn(2, 1, 64, 64), torch.randn(2, 1, 32, 32)]
        >>> loss(outputs, (torch.rand(2, 1, 64, 64) > 0.5).float()).shape
        torch.Size([])
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0),
        kernel_size: int = 31,
        edge_weight: float = 5.0,
        smooth: float = 1.0,
    ) -> None:
        super().__init__()
        if not weights:
            raise ValueError("weights must hold at least one weight (for the main output).")
        base = StructureLoss(kernel_size=kernel_size, edge_weight=edge_weight, smooth=smooth)
        self.loss = DeepSupervisionLoss(base, weights=list(weights))

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Compute the weighted sum of the structure losses of all outputs.

        Args:
            outputs: logits of the main output, or a list of them, main output first.
            target: mask of the main output's shape, values in [0, 1].

        Returns:
            The scalar loss.
        """
        if isinstance(outputs, (list, tuple)):
            if len(outputs) > len(self.loss.weights):
                raise ValueError(f"got {len(outputs)} outputs but only {len(self.loss.weights)} weights.")
            outputs = list(outputs)
        # MONAI resizes the target for smaller side outputs, which needs a floating-point tensor.
        return self.loss(outputs, target.float())
