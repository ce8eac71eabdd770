"""Intensity normalisation chosen by a dataset plan (see :mod:`monai_unets.data.plan`)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, NormalizeIntensity, Transform

__all__ = [
    "AboveThreshold",
    "PlannedNormalize",
    "PlannedNormalized",
    "PlannedNormalizeD",
    "PlannedNormalizeDict",
]


class AboveThreshold:
    """``x > threshold``: a picklable foreground test for ``CropForegroundd(select_fn=...)``.

    Example::

        >>> AboveThreshold(-500.0)(torch.tensor([-1000.0, 40.0]))
        tensor([False,  True])
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = float(threshold)

    def __call__(self, x: NdarrayOrTensor) -> NdarrayOrTensor:
        return x > self.threshold


class PlannedNormalize(Transform):
    """Normalise intensities as a plan's ``normalization`` entry says.

    - ``{"scheme": "ct", "clip": [low, high], "mean": m, "std": s}``: clip to ``[low, high]`` (the foreground's
      0.5 / 99.5 percentiles over the dataset), then ``(x - m) / s`` with the foreground's statistics: the same
      numbers for every image, as Hounsfield units mean the same everywhere.
    - ``{"scheme": "zscore_nonzero"}``: per image, subtract the mean and divide by the standard deviation of its
      non-zero voxels; zeros (outside a skull-stripped or masked image) stay zero. For MR and other modalities
      whose intensities have no absolute scale.

    Args:
        normalization: the plan's ``normalization`` dictionary.

    Example::

        >>> norm = PlannedNormalize({"scheme": "ct", "clip": [-100, 200], "mean": 50, "std": 50})
        >>> norm(torch.tensor([[-1000.0, 50.0, 400.0]]))
        tensor([[-3.,  0.,  3.]])
    """

    backend = NormalizeIntensity.backend

    def __init__(self, normalization: Mapping[str, Any]) -> None:
        scheme = normalization.get("scheme")
        if scheme == "ct":
            low, high = (float(v) for v in normalization["clip"])
            if low > high:
                raise ValueError(f"normalization clip range must be increasing, got {normalization['clip']}")
            self.clip: tuple[float, float] | None = (low, high)
            self.normalize = NormalizeIntensity(
                subtrahend=float(normalization["mean"]), divisor=float(normalization["std"])
            )
        elif scheme == "zscore_nonzero":
            self.clip = None
            self.normalize = NormalizeIntensity(nonzero=True)
        else:
            raise ValueError(f"unknown normalization scheme {scheme!r}; expected 'ct' or 'zscore_nonzero'")

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if self.clip is not None:
            img = img.clip(*self.clip)
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
        tensor([[ 0., -1.,  1.]])
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
