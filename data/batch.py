"""Batch preparation for MONAI engines: multi-scale training as in the PraNet / U-Net v2 polyp recipe."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.engines.utils import default_prepare_batch

__all__ = ["MultiScaleBatch"]

# Modes that interpolate linearly; the name given is replaced by the one matching the number of spatial dims.
_LINEAR_MODES = {"linear", "bilinear", "trilinear"}


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    # A resized batch no longer matches its affine and shape metadata, so drop it rather than carry stale meta.
    return tensor.as_tensor() if isinstance(tensor, MetaTensor) else tensor


class MultiScaleBatch:
    """A ``prepare_batch`` callable for MONAI's ``SupervisedTrainer`` that resizes each batch by a random scale.

    For every batch one scale is drawn uniformly from ``scales`` (one for the whole batch, as in the polyp
    recipe of PraNet and U-Net v2, which trains at 0.75, 1 and 1.25 times 352 pixels), and every spatial size
    becomes ``round(size * scale / multiple) * multiple`` (half up, at least ``multiple``), so that networks
    which need sizes divisible by 32 still get them. A scale of exactly 1 keeps the batch as it is. Images are
    resized with ``image_mode`` (linear by default: bilinear in 2D, trilinear in 3D) and labels with
    ``label_mode`` (nearest neighbour by default, so binary and integer labels keep their values; a linear
    mode gives soft labels, as the original polyp code had).

    The batch is moved to ``device`` first and resized there: resizing is cheaper on the GPU, and only the
    data loader's original tensors are in pinned memory, which ``non_blocking`` copies need. The scale is
    drawn from ``generator``, or from torch's global generator, so ``torch.manual_seed`` and
    ``monai.utils.set_determinism`` make the sequence of scales reproducible. Returned tensors are plain
    ``torch.Tensor``: MONAI's metadata would no longer describe a resized batch. Use it for training only;
    evaluate at the original size with the default ``prepare_batch``.

    Args:
        scales: the scales to draw from; positive.
        multiple: every resized spatial size is a multiple of this; 1 only rounds to whole pixels.
        image_mode: ``torch.nn.functional.interpolate`` mode for the image.
        label_mode: ``torch.nn.functional.interpolate`` mode for the label (e.g. ``nearest``, ``nearest-exact``
            or ``bilinear``).
        align_corners: passed to ``interpolate`` for linear and cubic modes (``True`` in the polyp recipe).
        generator: optional generator for the draws, instead of torch's global one.

    Attributes:
        last_scale: the scale of the latest batch (``None`` before the first), e.g. for logging.

    Example::

        >>> prepare = MultiScaleBatch(scales=(0.75,), multiple=32)
        >>> batch = {"image": torch.rand(2, 3, 352, 352), "label": torch.zeros(2, 1, 352, 352)}
        >>> image, label = prepare(batch, device="cpu")
        >>> tuple(image.shape), tuple(label.shape)
        ((2, 3, 256, 256), (2, 1, 256, 256))

        In a bundle config: ``"prepare_batch": {"_target_": "MultiScaleBatch", "scales": [0.75, 1.0, 1.25]}``
        given to ``SupervisedTrainer``.
    """

    def __init__(
        self,
        scales: Sequence[float] = (0.75, 1.0, 1.25),
        multiple: int = 32,
        image_mode: str = "bilinear",
        label_mode: str = "nearest",
        align_corners: bool | None = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.scales = tuple(float(scale) for scale in scales)
        if not self.scales or any(scale <= 0 for scale in self.scales):
            raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales}.")
        if multiple < 1:
            raise ValueError(f"multiple must be at least 1, got {multiple}.")
        self.multiple = int(multiple)
        self.image_mode = image_mode
        self.label_mode = label_mode
        self.align_corners = align_corners
        self.generator = generator
        self.last_scale: float | None = None

    def target_size(self, size: Sequence[int], scale: float) -> tuple[int, ...]:
        """The spatial size a batch of spatial size ``size`` gets at ``scale``.

        Args:
            size: the spatial size, e.g. ``(352, 352)``.
            scale: the scale.

        Returns:
            The new spatial size; ``size`` itself when ``scale`` is 1.

        Example::

            >>> MultiScaleBatch().target_size((352, 352), 1.25)
            (448, 448)
        """
        if scale == 1.0:
            return tuple(int(side) for side in size)
        # half-up rounding: Python's round() would round half to even
        return tuple(max(math.floor(side * scale / self.multiple + 0.5), 1) * self.multiple for side in size)

    def draw_scale(self) -> float:
        """Draw the scale of the next batch uniformly from ``scales``.

        Returns:
            The scale.
        """
        index = int(torch.randint(len(self.scales), (1,), generator=self.generator).item())
        return self.scales[index]

    def _resize(self, tensor: torch.Tensor, size: tuple[int, ...], mode: str) -> torch.Tensor:
        spatial_dims = tensor.ndim - 2
        if mode in _LINEAR_MODES:
            # imported here: the networks package imports this one's
            from ..networks.blocks.utils import linear_interp_mode

            mode = linear_interp_mode(spatial_dims)
        options: dict[str, Any] = {}
        if mode in _LINEAR_MODES or mode == "bicubic":
            options["align_corners"] = self.align_corners
        # interpolate works on floating point only; nearest modes give back the exact input values.
        source = tensor if tensor.is_floating_point() else tensor.float()
        resized = F.interpolate(source, size=size, mode=mode, **options)
        return resized if tensor.is_floating_point() else resized.round().to(tensor.dtype)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor] | torch.Tensor | Sequence[torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Extract image and label as ``monai.engines.utils.default_prepare_batch`` does, move and resize them.

        Args:
            batchdata: a dict with ``image`` (and ``label``), an ``(image, label)`` pair or an image tensor.
            device: device to move the tensors to.
            non_blocking: passed to ``Tensor.to``.
            kwargs: further arguments for ``Tensor.to``.

        Returns:
            The resized image and label (``None`` when the batch has no label).
        """
        prepared = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        image, label = (prepared, None) if isinstance(prepared, torch.Tensor) else prepared
        image = _plain(image)
        label = None if label is None else _plain(label)
        scale = self.draw_scale()
        self.last_scale = scale
        if scale == 1.0:
            return image, label
        size = self.target_size(image.shape[2:], scale)
        if tuple(image.shape[2:]) != size:
            image = self._resize(image, size, self.image_mode)
        if label is not None and tuple(label.shape[2:]) != size:
            label = self._resize(label, size, self.label_mode)
        return image, label
