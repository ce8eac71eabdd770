"""Output transforms: save predictions of DICOM series as DICOM SEG objects beside the usual NIfTI writers."""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform

from ..data.dicom_seg import write_dicom_seg
from ..data.medical_io import parse_series_reference

__all__ = ["SaveDicomSeg", "SaveDicomSegd", "SaveDicomSegD", "SaveDicomSegDict"]

logger = logging.getLogger(__name__)


def _dicom_series(obj: Any) -> tuple[Path, str | None] | None:
    """``(folder, SeriesInstanceUID or None)`` named by a ``filename_or_obj``-like value, ``None`` for non-folders.

    Besides a plain folder this understands the series references ``"<folder>::<SeriesInstanceUID>"`` that
    ``monai_unets.data.medical_io`` uses for one series of a folder holding several.
    """
    if not isinstance(obj, (str, os.PathLike)):
        return None
    folder, uid = parse_series_reference(obj)
    return (Path(folder), uid) if os.path.isdir(folder) else None


class SaveDicomSeg(Transform):
    """Write a label map predicted for a DICOM series folder as ``<output_dir>/<folder name>_<postfix>.dcm``.

    The source folder is the label map's ``meta["filename_or_obj"]`` (kept by ``Invertd``) unless given; a
    series reference ``"<folder>::<SeriesInstanceUID>"`` selects that series of the folder and is written as
    ``<folder name>_<SeriesInstanceUID>_<postfix>.dcm``. Inputs
    that are not DICOM folders (NIfTI files, PNGs, plain arrays) are passed through without writing anything,
    so one inference config serves both kinds of input. The label map is returned unchanged. See
    :func:`monai_unets.data.dicom_seg.write_dicom_seg` for the SEG content and the geometry checks. When no SEG
    can be written for a series (e.g. its slices lack a UID a SEG must reference), ``DicomSegError`` says why;
    the outputs written before it in the chain (the NIfTI label map) are kept.

    Args:
        output_dir: folder the SEG files are written to; created when missing.
        labels: name of each foreground label value, e.g. ``{1: "pancreas", 2: "tumour"}``.
        output_postfix: appended to the series folder name to form the file name.
        write_kwargs: further arguments of ``write_dicom_seg`` (``algorithm_name``, ``property_types``, ...).

    Example::

        >>> SaveDicomSeg("out", {1: "pancreas"}, algorithm_name="unet")(pred)  # writes out/<series>_seg.dcm
    """

    def __init__(
        self, output_dir: str | os.PathLike, labels: Mapping[int, str], output_postfix: str = "seg", **write_kwargs: Any
    ) -> None:
        self.output_dir = Path(output_dir)
        self.labels = dict(labels)
        self.output_postfix = output_postfix
        self.write_kwargs = write_kwargs

    def __call__(
        self, label_map: NdarrayOrTensor, source: str | os.PathLike | None = None, postfix: str | None = None
    ) -> NdarrayOrTensor:
        """Save ``label_map`` when ``source`` (default: its ``filename_or_obj``) is a DICOM series folder.

        Args:
            label_map: class indices in the original space of the series, ``(1, X, Y, Z)``.
            source: the series folder; ``None`` to read it from the label map's metadata.
            postfix: overrides ``output_postfix`` for this call.
        """
        if source is None:
            source = getattr(label_map, "meta", {}).get("filename_or_obj")
        series = _dicom_series(source)
        if series is None:
            logger.debug("SaveDicomSeg: %r is not a DICOM series folder, no SEG written.", source)
            return label_map
        folder, series_uid = series
        # one folder may yield several series references: their SEGs need distinct names
        stem = folder.resolve().name if series_uid is None else f"{folder.resolve().name}_{series_uid}"
        kwargs = dict(self.write_kwargs)
        if series_uid is not None:
            kwargs["source_series_uid"] = series_uid
        path = write_dicom_seg(
            label_map, folder, self.output_dir / f"{stem}_{postfix or self.output_postfix}.dcm", self.labels, **kwargs
        )
        logger.info("SaveDicomSeg: wrote %s", path)
        return label_map


class SaveDicomSegd(MapTransform):
    """Dictionary-based :class:`SaveDicomSeg`, for the post-processing chain after ``Invertd`` + ``AsDiscreted``.

    The series folder is taken from the prediction's ``meta["filename_or_obj"]``, else from the metadata of
    ``data[source_key]`` (or ``data[source_key]`` itself when it is still a path). With several keys, the key is
    added to the file name so the outputs do not overwrite each other.

    Args:
        keys: keys of the label maps to save, e.g. ``"pred"``.
        output_dir: folder the SEG files are written to; created when missing.
        labels: name of each foreground label value, e.g. ``{1: "pancreas", 2: "tumour"}``.
        source_key: key of the loaded image, used when the prediction carries no source folder.
        output_postfix: appended to the series folder name to form the file name.
        allow_missing_keys: don't raise if a key is missing.
        write_kwargs: further arguments of ``write_dicom_seg`` (``algorithm_name``, ``property_types``, ...).

    Example::

        >>> save = SaveDicomSegd("pred", "out", {1: "pancreas", 2: "tumour"}, algorithm_name="attention_unet")
        >>> save({"image": image, "pred": pred})  # writes out/<series folder>_seg.dcm for DICOM inputs
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        labels: Mapping[int, str],
        source_key: str | None = "image",
        output_postfix: str = "seg",
        allow_missing_keys: bool = False,
        **write_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveDicomSeg(output_dir, labels, output_postfix, **write_kwargs)
        self.source_key = source_key

    def _source(self, data: Mapping[Hashable, Any], value: Any) -> Any:
        own = getattr(value, "meta", {}).get("filename_or_obj")
        if own is not None or self.source_key is None or self.source_key not in data:
            return own
        source = data[self.source_key]
        if isinstance(source, (str, os.PathLike)):
            return source
        meta = getattr(source, "meta", None) or data.get(f"{self.source_key}_meta_dict", {})
        return meta.get("filename_or_obj")

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        several = len(self.keys) > 1
        for key in self.key_iterator(d):
            postfix = f"{key}_{self.saver.output_postfix}" if several else None
            d[key] = self.saver(d[key], source=self._source(d, d[key]), postfix=postfix)
        return d


SaveDicomSegD = SaveDicomSegDict = SaveDicomSegd
