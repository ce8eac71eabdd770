"""Spatial transforms that stay usable inside MONAI Label."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import Spacingd

__all__ = ["ResampleSpacingd", "ResampleSpacingD", "ResampleSpacingDict"]


class ResampleSpacingd(Spacingd):
    """MONAI's :class:`~monai.transforms.Spacingd`, safe with non-dictionary entries named ``<key>_...``.

    For NIfTI inputs, MONAI 1.6's ``Spacingd`` calls ``update`` on every entry whose name starts with
    ``<key>_``, assuming a meta dictionary. MONAI Label passes the study's path as ``image_path`` (a string), so
    ``Spacingd`` fails inside MONAI Label. This transform sets such entries aside while resampling and puts them
    back unchanged; everything else, inversion included, is ``Spacingd``'s. Arguments are ``Spacingd``'s.

    Example::

        >>> resample = ResampleSpacingd(keys="image", pixdim=(1.5, 1.5, 2.0))
        >>> data = {"image": image, "image_path": "/data/ct.nii.gz"}  # doctest: +SKIP
        >>> resample(data)["image_path"]  # doctest: +SKIP
        '/data/ct.nii.gz'
    """

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        prefixes = tuple(f"{key}_" for key in self.keys if isinstance(key, str))
        aside = {
            k: d.pop(k) for k in list(d) if isinstance(k, str) and k.startswith(prefixes) and not isinstance(d[k], dict)
        }
        out = super().__call__(d, lazy=lazy)
        out.update(aside)
        return out


ResampleSpacingD = ResampleSpacingDict = ResampleSpacingd
