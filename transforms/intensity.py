"""Intensity normalisation chosen by a dataset plan (see :mod:`monai_unets.data.plan`)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, NormalizeIntensity, ScaleIntensity, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

__all__ = [
    "AboveThreshold",
    "ScaleByBitDepth",
    "ScaleByBitDepthd",
    "ScaleByBitDepthD",
    "ScaleByBitDepthDict",
    "PlannedNormalize",
    "PlannedNormalized",
    "PlannedNormalizeD",
    "PlannedNormalizeDict",
    "normalised_background",
]


class AboveThreshold:
    """``x > threshold``, or ``x != 0`` without a threshold: a picklable foreground test for
    ``CropForegroundd(select_fn=...)``.

    A plan's ``foreground_threshold`` is a CT's body threshold (-500 HU), or ``None`` for the non-zero region of
    other modalities: an MR's tissue may be negative (an MR stored z-scored), and only its background is zero.

    Where no voxel is foreground (a study of air only, or an image of another modality than the plan's), every
    voxel counts as foreground: the crop keeps the whole image instead of leaving nothing, which no later step (the
    network, inverting the crop) can take.

    Args:
        threshold: the value foreground voxels exceed; ``None``: foreground voxels are those not zero.

    Example::

        >>> AboveThreshold(-500.0)(torch.tensor([-1000.0, 40.0]))
        tensor([False,  True])
        >>> AboveThreshold(-500.0)(torch.tensor([-1000.0, -1000.0]))
        tensor([True, True])
        >>> AboveThreshold(None)(torch.tensor([0.0, -1.5, 0.8]))
        tensor([False,  True,  True])
    """

    def __init__(self, threshold: float | None) -> None:
        self.threshold = None if threshold is None else float(threshold)

    def __call__(self, x: NdarrayOrTensor) -> NdarrayOrTensor:
        above = x != 0 if self.threshold is None else x > self.threshold
        return above if above.any() else ~above


def normalised_background(normalization: Mapping[str, Any]) -> float:
    """The value that a plan's normalisation gives the outside of the body: what a normalised volume smaller than
    the patch is padded with, in training and in the sliding window, so that the padding looks like what lies
    around a patient, not like tissue.

    Zero, the default padding, is the foreground's mean of a CT plan (a pancreas-like intensity): a study cut to
    its body and thinner than the patch then had slabs of "tissue" above and below it. A CT's outside is air,
    clipped to the plan's lower bound; a z-scored image's outside (its zeros) stays zero.

    Args:
        normalization: the plan's ``normalization`` dictionary.

    Example::

        >>> normalised_background({"scheme": "ct", "clip": [-100, 200], "mean": 50, "std": 50})
        -3.0
        >>> normalised_background({"scheme": "zscore_nonzero"})
        0.0
    """
    normalizer = PlannedNormalize(normalization)
    if normalizer.clip is None:
        return 0.0
    return float(normalizer(torch.tensor([normalizer.clip[0]]))[0])


def padding_value(plan: Mapping[str, Any], normalization: Mapping[str, Any] | None = None) -> float:
    """The value a normalised volume thinner or narrower than the patch is padded with, for weights of ``plan``.

    Weights are run padded as they were trained: the plan that a training saves with them records its value
    (``background_value``); a plan without one (a dataset's plan before training, or one saved before it was
    recorded) gets what the normalisation makes of the outside of the body (:func:`normalised_background`).

    Args:
        plan: a bundle plan.
        normalization: the normalisation to use in place of the plan's where it records no value (a training's
            override).

    Example::

        >>> padding_value({"background_value": 0.0, "normalization": {"scheme": "zscore_nonzero"}})
        0.0
        >>> padding_value({"normalization": {"scheme": "ct", "clip": [-100, 200], "mean": 50, "std": 50}})
        -3.0
    """
    if plan.get("background_value") is not None:
        return float(plan["background_value"])
    return normalised_background(normalization if normalization is not None else plan["normalization"])


class PlannedNormalize(Transform):
    """Normalise intensities as a plan's ``normalization`` entry says.

    - ``{"scheme": "ct", "clip": [low, high], "mean": m, "std": s}``: clip to ``[low, high]`` (the foreground's
      0.5 / 99.5 percentiles over the dataset), then ``(x - m) / s`` with the foreground's statistics: the same
      numbers for every image, as Hounsfield units mean the same everywhere.
    - ``{"scheme": "zscore_nonzero"}``: per image and channel, subtract the mean and divide by the standard
      deviation of its non-zero voxels; zeros (outside a skull-stripped or masked image) stay zero. For MR and
      other modalities whose intensities have no absolute scale.

    Args:
        normalization: the plan's ``normalization`` dictionary.

    Example::

        >>> norm = PlannedNormalize({"scheme": "ct", "clip": [-100, 200], "mean": 50, "std": 50})
        >>> norm(torch.tensor([[-1000.0, 50.0, 400.0]]))
        metatensor([[-3.,  0.,  3.]])
    """

    backend = NormalizeIntensity.backend

    def __init__(self, normalization: Mapping[str, Any]) -> None:
        scheme = normalization.get("scheme")
        if scheme == "ct":
            missing = [key for key in ("clip", "mean", "std") if key not in normalization]
            if missing:
                raise ValueError(f"normalization of scheme 'ct' needs {', '.join(missing)}; got {dict(normalization)}")
            low, high = (float(v) for v in normalization["clip"])
            mean, std = float(normalization["mean"]), float(normalization["std"])
            if not all(map(math.isfinite, (low, high, mean, std))) or std <= 0:
                # a plan made from NaN or absurd voxels: every input became NaN or -0, and training NaN weights
                raise ValueError(
                    f"normalization must hold finite numbers and a positive std, got clip {normalization['clip']}, "
                    f"mean {normalization['mean']}, std {normalization['std']}: plan the dataset again."
                )
            if low > high:
                raise ValueError(f"normalization clip range must be increasing, got {normalization['clip']}")
            self.clip: tuple[float, float] | None = (low, high)
            self.normalize = NormalizeIntensity(subtrahend=mean, divisor=std)
        elif scheme == "zscore_nonzero":
            self.clip = None
            # each channel (modality) by its own statistics, as their scales are unrelated
            self.normalize = NormalizeIntensity(nonzero=True, channel_wise=True)
        else:
            raise ValueError(f"unknown normalization scheme {scheme!r}; expected 'ct' or 'zscore_nonzero'")

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if self.clip is not None:
            img = img.clip(*self.clip)
        else:
            # MONAI's channel-wise normalisation writes into its input: the caller's array would be changed
            img = img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        return self.normalize(img)


class PlannedNormalized(MapTransform):
    """Dictionary version of :class:`PlannedNormalize`.

    Args:
        keys: the image keys.
        normalization: the plan's ``normalization`` dictionary.
        allow_missing_keys: skip keys that are absent.

    Example::

        >>> norm = PlannedNormalized("image", {"scheme": "zscore_nonzero"})
        >>> norm({"image": torch.tensor([[0.0, 1.0, 3.0]])})["image"]
        metatensor([[ 0., -1.,  1.]])
    """

    backend = PlannedNormalize.backend

    def __init__(
        self, keys: KeysCollection, normalization: Mapping[str, Any], allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = PlannedNormalize(normalization)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d


PlannedNormalizeD = PlannedNormalizeDict = PlannedNormalized


#: PIL modes of one byte per channel: their full scale is 255 (for images read without a ``bits_per_sample``).
_EIGHT_BIT_MODES = frozenset({"L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


class ScaleByBitDepth(Transform):
    """Scale a 2D image file's values to [0, 1] by its bit depth, as read by :class:`Image2DReader`.

    - 8-bit images (grey, RGB, palette, CMYK, ...) are divided by 255, exactly as ``ScaleIntensityRange(0, 255,
      0, 1)``, so networks trained on 8-bit images see the same values;
    - 1-bit images are read as 0/1 and kept so (255 would make them black);
    - 16-bit, 32-bit integer and float images have no common full scale (a 12-bit sensor stored in 16 bits fills
      a sixteenth of it; a float TIFF may be negative): they are scaled by their own minimum and maximum,
      ``ScaleIntensity(0, 1)``, instead of being left far outside the range the network learnt.

    The bit depth comes from ``meta["bits_per_sample"]``, which :class:`Image2DReader` records from the values it
    hands on (a 16-bit RGB PNG is 16, though PIL calls its mode ``"RGB"``), else from the PIL mode that
    ``PILReader`` records (``meta["mode"]``). Without either (an array from elsewhere), values within 0..255 are
    taken as 8-bit and anything else is scaled by its range.

    Example::

        >>> from monai.data import MetaTensor
        >>> ScaleByBitDepth()(MetaTensor(torch.tensor([[[0.0, 4095.0]]]), meta={"mode": "I;16"}))
        metatensor([[[0., 1.]]])
        >>> ScaleByBitDepth()(MetaTensor(torch.tensor([[[0.0, 2048.0]]]), meta={"mode": "RGB", "bits_per_sample": 16}))
        metatensor([[[0., 1.]]])
    """

    backend = ScaleIntensity.backend

    def __init__(self) -> None:
        self.by_range = ScaleIntensity(minv=0.0, maxv=1.0)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        meta = getattr(img, "meta", {})
        bits, mode = meta.get("bits_per_sample"), meta.get("mode")
        values = convert_to_tensor(img, track_meta=False)
        if bits is not None:
            one_bit, eight_bit = int(bits) == 1, int(bits) == 8
        elif mode is not None:
            one_bit, eight_bit = str(mode) == "1", str(mode) in _EIGHT_BIT_MODES
        else:
            one_bit, eight_bit = False, bool(values.numel() == 0 or (values.min() >= 0 and values.max() <= 255))
        if one_bit:
            return img
        if not eight_bit:
            return self.by_range(img)
        scaled = values.to(torch.float32 if not values.is_floating_point() else values.dtype) / 255.0
        return convert_to_dst_type(scaled, img, dtype=scaled.dtype)[0]


class ScaleByBitDepthd(MapTransform):
    """Dictionary-based :class:`ScaleByBitDepth`.

    Args:
        keys: the images to scale.
        allow_missing_keys: don't raise if a key is missing.

    Example::

        >>> from monai.data import MetaTensor
        >>> ScaleByBitDepthd("image")({"image": MetaTensor(torch.tensor([[[0.0, 255.0]]]), meta={"mode": "RGB"})})
        {'image': metatensor([[[0., 1.]]])}
    """

    backend = ScaleByBitDepth.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scale = ScaleByBitDepth()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scale(d[key])
        return d


ScaleByBitDepthD = ScaleByBitDepthDict = ScaleByBitDepthd
