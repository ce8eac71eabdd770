"""Probability and uncertainty maps of a prediction, written beside its label map."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, SaveImage, SaveImaged

from ..data import AtomicITKWriter, AtomicNibabelWriter, case_output_name
from ..data.cases import saved_path

__all__ = ["SaveProbabilityMapsd", "SaveProbabilityMapsD", "SaveProbabilityMapsDict", "entropy_map"]


def entropy_map(probabilities: torch.Tensor) -> torch.Tensor:
    """Per-voxel entropy of class probabilities (C, ...), divided by ``log C``: 0 certain, 1 uniform.

    Args:
        probabilities: class probabilities, channel first (C, ...) with C >= 2 and each voxel's channels summing to
            1 (a softmax, or the average of several); a tensor or an array, taken as float32. Zero probabilities add
            nothing.

    Returns:
        the entropy map (...), float32, without the channel dimension.

    Raises:
        ValueError: when there are fewer than 2 channels (a single sigmoid channel has no class distribution).

    Example::

        >>> entropy_map(torch.tensor([[1.0, 0.5], [0.0, 0.5]]))
        tensor([0., 1.])
    """
    probs = torch.as_tensor(probabilities, dtype=torch.float32)
    channels = probs.shape[0]
    if channels < 2:
        raise ValueError(f"entropy needs 2 or more class channels, got {channels}")
    plogp = torch.where(probs > 0, probs * torch.log(probs.clamp_min(1e-12)), torch.zeros_like(probs))
    # subtracted from +0.0: a certain voxel's entropy is 0, where negating the sum gives -0.0
    return (0.0 - plogp.sum(0)) / math.log(channels)


class SaveProbabilityMapsd(SaveImaged):
    """Write a prediction's class probabilities and its uncertainty (normalised entropy) as NIfTI files.

    Placed after ``Invertd`` and before ``AsDiscreted`` in an inference post-processing chain, or before
    :class:`~monai_unets.transforms.InvertArgmaxd` with that ``Invertd`` as ``invert``, the maps lie on the study's
    own voxel grid: ``<name>_prob.nii.gz`` holds one volume per class (float32, shape ``(X, Y, Z, C)``,
    the study's affine) and ``<name>_uncertainty.nii.gz`` the entropy (float32, the study's exact shape and
    affine), beside the label map ``<name>_seg.nii.gz``: ``<name>`` is the case's unique output name
    (:func:`~monai_unets.data.case_output_name`), and each file appears whole or not at all. Voxels outside the
    region the network saw (zeros after ``Invertd`` undoes a crop) count as background with probability 1. With TTA
    or an ensemble (``EnsembleInferer``) the probabilities are the members' average, and the entropy covers their
    disagreement too. The data pass through unchanged. A dictionary transform only, as MONAI's ``SaveImaged`` it
    extends: the case's metadata name its files.

    Args:
        keys: the probability maps (C, X, Y, Z) with their meta data.
        output_dir: folder of the files.
        enabled: write nothing when false (a config switch).
        probabilities: write the probability map.
        uncertainty: write the uncertainty map.
        output_ext: file extension.
        invert: applied to the data before the maps are taken (e.g. ``Invertd(..., nearest_interp=False)``), and
            only when they are written; the data passed on stay as they came.
        allow_missing_keys: skip keys that are absent.

    Example::

        >>> save = SaveProbabilityMapsd("pred", "out")
        >>> # writes out/<case>_prob.nii.gz and out/<case>_uncertainty.nii.gz
        >>> save({"pred": probs})  # doctest: +SKIP
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        enabled: bool = True,
        probabilities: bool = True,
        uncertainty: bool = True,
        output_ext: str = ".nii.gz",
        invert: Callable[[dict], Mapping] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        # a SaveImaged by type only, as SaveDicomSegd: MONAI Label's served inference leaves it out
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.enabled = bool(enabled)
        self.invert = invert
        # the label map's writers: the case's unique name (two studies named alike must not share maps), files
        # that appear whole or not at all, and a one-slice study's slice axis kept
        writer = AtomicNibabelWriter if output_ext.lower() in (".nii", ".nii.gz") else AtomicITKWriter
        # an absolute folder, as SaveDicomSeg's: ITK's module loading changes the working folder for a moment
        common = dict(output_dir=os.path.abspath(output_dir), output_ext=output_ext, output_dtype=np.float32)
        common.update(resample=False)
        common.update(separate_folder=False, print_log=False, writer=writer, output_name_formatter=case_output_name)
        self.save_probs = SaveImage(output_postfix="prob", **common)
        self.save_entropy = SaveImage(output_postfix="uncertainty", **common)
        self.probabilities, self.uncertainty = bool(probabilities), bool(uncertainty)

    def output_paths(self, name: str) -> list[Path]:
        """The files of the case whose unique output name is ``name``: those written, and those not written in
        this configuration (disabled, or one of the maps off). An earlier run's maps under these names must not
        pass for this run's: a failed case's are removed, and the others counted in the run's closing warning.
        """
        return [saved_path(saver, name) for saver in (self.save_probs, self.save_entropy)]

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        if not self.enabled:
            return d
        maps = dict(self.invert(dict(d))) if self.invert is not None else d
        for key in self.key_iterator(maps):
            meta = maps[key].meta if isinstance(maps[key], MetaTensor) else {}
            probs = torch.as_tensor(maps[key]).float().clone()
            # outside the cropped region Invertd pads with zeros: the missing probability mass is background
            probs[0] += (1.0 - probs.sum(0)).clamp_min(0.0)
            if self.probabilities:
                self.save_probs(probs, meta_data=meta)
            if self.uncertainty:
                self.save_entropy(entropy_map(probs)[None], meta_data=meta)
        return d


SaveProbabilityMapsD = SaveProbabilityMapsDict = SaveProbabilityMapsd
