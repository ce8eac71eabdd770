"""Model size and cost figures: parameter counts and multiply-accumulates."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a zero input of ``input_shape`` (batch included).

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per multiply-accumulate
    of convolutions, transposed convolutions and matrix products (attention included), and nothing for
    normalisation, activations, pooling or interpolation. This is the "GFLOPs" convention of the EGE-UNet and
    U-Net v2 papers (conv MACs), and counts transposed convolutions exactly.

    Example::

        >>> from monai_unets import EGEUNet
        >>> count_macs(EGEUNet(2, 3, 1), (1, 3, 256, 256)) / 1e9  # doctest: +ELLIPSIS
        0.07...
    """
    # a copy on the meta device: shapes propagate, nothing is computed, so large inputs cost no time
    meta_model = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(tuple(input_shape), device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta_model(x)
    return counter.get_total_flops() // 2
