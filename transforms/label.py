"""Label transforms: binary masks stored as 0/1 or 0/255 images."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

__all__ = ["BinarizeLabel", "BinarizeLabeld", "BinarizeLabelD", "BinarizeLabelDict"]


class BinarizeLabel(Transform):
    """Turn a binary mask stored with any foreground value (1, 255, ...) into a float 0/1 mask.

    A voxel is foreground when its value is above ``threshold``; by default the threshold is half of the
    mask's maximum, so 0/1 and 0/255 masks both work, as do JPEG-compressed masks whose values drift around 0
    and 255. An empty mask stays empty.

    Args:
        threshold: fixed threshold; ``None`` for half of each mask's maximum.

    Example::

        >>> BinarizeLabel()(torch.tensor([[0, 255, 250, 3]]))
        tensor([[0., 1., 1., 0.]])
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = threshold

    def __call__(self, label: NdarrayOrTensor) -> torch.Tensor:
        label_t = convert_to_tensor(label, track_meta=get_track_meta())
        threshold = self.threshold if self.threshold is not None else float(label_t.max()) / 2
        return (label_t > threshold).to(torch.float32)


class BinarizeLabeld(MapTransform):
    """Dictionary-based :class:`BinarizeLabel`.

    Args:
        keys: keys of the masks to binarize.
        threshold: fixed threshold; ``None`` for half of each mask's maximum.
        allow_missing_keys: don't raise if a key is missing.

    Example::

        >>> BinarizeLabeld(keys="label")({"label": torch.tensor([[0, 1]])})["label"]
        tensor([[0., 1.]])
    """

    backend = BinarizeLabel.backend

    def __init__(self, keys: KeysCollection, threshold: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binarize = BinarizeLabel(threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.binarize(d[key])
        return d


BinarizeLabelD = BinarizeLabelDict = BinarizeLabeld
