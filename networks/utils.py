"""Model size and cost figures: parameter counts and multiply-accumulates."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..data.dataset import one_line


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (only those with ``requires_grad`` when ``trainable_only``).

    Args:
        model: the network; each parameter counts its elements (``numel``), shared ones once.
        trainable_only: count only the parameters with ``requires_grad``; ``False`` counts frozen ones too.

    Example::

        >>> layer = nn.Conv2d(3, 8, kernel_size=3)
        >>> count_parameters(layer)
        224
        >>> _ = layer.bias.requires_grad_(False)
        >>> count_parameters(layer, trainable_only=True)
        216
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a zero input of ``input_shape`` (batch included).

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per multiply-accumulate
    of convolutions, transposed convolutions and matrix products (attention included), and nothing for
    normalisation, activations, pooling or interpolation. This is the "GFLOPs" convention of the EGE-UNet and
    U-Net v2 papers (conv MACs), and counts transposed convolutions exactly.

    Args:
        model: the network; it is left as it is (a deep copy runs on the meta device, in eval mode).
        input_shape: the whole input shape, batch and channels first (``(1, 3, 256, 256)``); the count grows with
            the batch size.

    Returns:
        the multiply-accumulates, half the FLOPs ``FlopCounterMode`` counts.

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


def input_shape_problem(model: nn.Module, shape: Sequence[int], modes: Sequence[bool] = (False,)) -> str | None:
    """Why ``model`` cannot run on inputs of ``shape`` (batch and channels included), or ``None`` when it can.

    Shapes only, on a meta-device copy: nothing is computed, so a whole CT's size costs no time. ``modes`` are
    the training flags to try (``(False, True)`` also checks training mode, where batch norm needs more than one
    value per channel). A network that states its own rule for spatial sizes (``input_size_problem``, e.g. this
    package's EGE-UNet, Attention U-Net and classic U-Net) is asked that instead in eval mode: tracing it on the
    meta device takes about a second the first time.

    Args:
        model: the network; it is left as it is (a deep copy is traced, on the meta device).
        shape: the whole input shape, batch and channels first (``(1, 3, 256, 256)``).
        modes: the values of ``model.train(...)`` to trace in, in order; the first that fails gives the reason. The
            default, eval mode only, lets a network's own ``input_size_problem`` answer.

    Returns:
        the reason on one line (the network's own words, or the error tracing it raised), or ``None``.

    Example::

        >>> from monai_unets import EGEUNet
        >>> input_shape_problem(EGEUNet(2, 3, 1), (1, 3, 16, 16))
        'EGEUNet needs every spatial size >= 32 (five 2x poolings); got [16, 16]'
    """
    rule = getattr(model, "input_size_problem", None)
    if callable(rule) and not any(modes):
        return rule(shape[2:])
    meta_model = copy.deepcopy(model).to("meta")
    x = torch.zeros(tuple(shape), device="meta")
    try:
        with torch.no_grad():
            for training in modes:
                meta_model.train(training)(x)
    except (RuntimeError, ValueError) as error:
        return one_line(str(error))
    return None


def check_input_size(model: nn.Module, in_channels: int, spatial_size: Sequence[int], key: str) -> None:
    """Raises a ``ValueError`` that names the setting ``key`` when ``model`` cannot take its ``spatial_size``.

    A bundle calls it at start, so that a size the network cannot take (``--image_size [16, 16]`` for EGE-UNet,
    which pools five times) stops the run before any work instead of failing every case.

    Args:
        model: the network, checked in eval mode on one input (:func:`input_shape_problem`).
        in_channels: the number of input channels the network is given.
        spatial_size: the spatial size it is given, without batch and channels (``[256, 256]``).
        key: the name of the setting that gave ``spatial_size``, which the message names (``"image_size"``).

    Raises:
        ValueError: when the network cannot take the size; the message gives the network's reason.

    Example::

        >>> check_input_size(EGEUNet(2, 3, 1), 3, [16, 16], "image_size")  # doctest: +SKIP
        ValueError: image_size [16, 16] does not fit the network EGEUNet: EGEUNet needs every spatial size >= 32 ...
    """
    problem = input_shape_problem(model, (1, in_channels, *spatial_size))
    if problem is not None:
        raise ValueError(f"{key} {list(spatial_size)} does not fit the network {type(model).__name__}: {problem}")
