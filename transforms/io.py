"""Input and output of images: 2D image files at their own bit depth, and DICOM SEG beside the usual writers."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import PILReader
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple

from ..data.cases import CASE_NAME_KEY
from ..data.datalist import IMAGE_SUFFIXES
from ..data.dicom_seg import write_dicom_seg
from ..data.medical_io import DICOM_SUFFIXES, parse_series_reference

__all__ = [
    "IMAGE_2D_SUFFIXES",
    "Image2DReader",
    "SaveDicomSeg",
    "SaveDicomSegd",
    "SaveDicomSegD",
    "SaveDicomSegDict",
    "image_pixels",
]

logger = logging.getLogger(__name__)


#: File name endings that ``Image2DReader`` reads (those that a 2D bundle lists in an input folder).
IMAGE_2D_SUFFIXES: tuple[str, ...] = tuple(suffix.lstrip(".") for suffix in IMAGE_SUFFIXES)


class _Decoded:
    """Pixels of one image file with the attributes ``PILReader.get_data`` reads from a PIL image."""

    def __init__(self, pixels: np.ndarray, image: Any) -> None:
        self.pixels = pixels
        self.format, self.mode, self.width, self.height = image.format, image.mode, image.width, image.height

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.pixels if dtype is None else self.pixels.astype(dtype)


def image_pixels(image: Any, channels: int = 3) -> np.ndarray:
    """The values of a PIL image at their own bit depth, as ``(height, width, channels)`` or ``(height, width)``.

    ``PIL.Image.convert("RGB")`` or ``"L"`` clips 16-bit and 32-bit grey values to 0..255 (a 16-bit scan becomes
    a constant image) and cannot hold floats. Here grey images keep their values and type: 1-bit as 0/1, 8-bit,
    16-bit (``I;16``, either byte order) as uint16, 32-bit integer and float (TIFF). Palette images are looked up
    in their palette, alpha channels are dropped, other colour modes (CMYK, YCbCr, ...) become RGB.

    Args:
        image: a PIL image.
        channels: 3 for an RGB array (grey values repeated in each channel), 1 for a 2D grey array (colour
            images become their luminance, as ``convert("L")`` computes it).

    Example::

        >>> from PIL import Image
        >>> image_pixels(Image.fromarray(np.array([[0, 4095]], dtype=np.uint16)), channels=1)
        array([[   0, 4095]], dtype=uint16)
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
    mode = image.mode
    if mode == "1":
        grey = np.asarray(image, dtype=np.uint8)
    elif mode in ("L", "I", "F") or mode.startswith("I;16"):
        grey = np.asarray(image)
        grey = grey.astype(grey.dtype.newbyteorder("="), copy=False)
    elif mode in ("LA", "La"):
        grey = np.asarray(image.convert("L"))
    else:
        colour = image.convert("RGB")  # palette looked up, alpha dropped, CMYK/YCbCr/HSV/LAB converted
        return np.asarray(colour) if channels == 3 else np.asarray(colour.convert("L"))
    return np.repeat(grey[..., None], 3, axis=-1) if channels == 3 else grey


class Image2DReader(PILReader):
    """MONAI's ``PILReader`` for 2D image files of any mode and bit depth, with a fixed number of channels.

    The values come from :func:`image_pixels`: 16-bit and 32-bit grey, float TIFF, 1-bit, palette, RGBA, CMYK
    images all keep their range (normalise afterwards, e.g. ``ScaleIntensityd``), grey images are repeated into
    RGB for ``channels=3`` and colour masks become grey for ``channels=1``. Arrays and metadata are laid out as
    ``PILReader`` lays them out (width first), so ``Invertd`` and ``SaveImaged`` work as with ``PILReader``.

    Args:
        channels: 3 (RGB images) or 1 (grey images and masks, without channel axis).
        kwargs: arguments of ``PILReader`` (``reverse_indexing``, ``PIL.Image.open`` arguments).

    Example::

        >>> from monai.transforms import LoadImaged
        >>> load = LoadImaged("image", reader=Image2DReader(channels=3), image_only=True)
        >>> load({"image": "scan_16bit.png"})["image"].shape  # doctest: +SKIP
        torch.Size([512, 384, 3])
    """

    def __init__(self, channels: int = 3, **kwargs: Any) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
        super().__init__(converter=None, **kwargs)
        self.channels = channels

    def verify_suffix(self, filename: Any) -> bool:
        """Whether every one of ``filename`` ends with one of ``IMAGE_2D_SUFFIXES``."""
        from monai.data.utils import is_supported_format

        return is_supported_format(filename, IMAGE_2D_SUFFIXES)

    def read(self, data: Any, **kwargs: Any) -> Any:
        """Opens each file with PIL and decodes it at its own bit depth (a list when several are given).

        Args:
            data: file name(s).
            kwargs: arguments of ``PIL.Image.open``.
        """
        images = super().read(data, **kwargs)
        for name, image in zip(ensure_tuple(data), ensure_tuple(images)):
            _warn_if_turned(name, image)
        decoded = [_Decoded(image_pixels(image, self.channels), image) for image in ensure_tuple(images)]
        return decoded if isinstance(images, list) else decoded[0]


# EXIF orientation -> how viewers turn the stored pixels for display
_EXIF_TURNS = {
    2: "mirrored left to right",
    3: "rotated by 180 degrees",
    4: "mirrored top to bottom",
    5: "transposed",
    6: "rotated by 90 degrees clockwise",
    7: "transverse",
    8: "rotated by 90 degrees counter-clockwise",
}


def _warn_if_turned(name: Any, image: Any) -> None:
    """Warns that an image's EXIF orientation is not applied: its mask follows the stored pixels, not the display."""
    try:
        orientation = image.getexif().get(0x0112)  # the Orientation tag
    except Exception:  # noqa: BLE001 - a damaged EXIF block does not stop the pixels from being read
        return
    if orientation in _EXIF_TURNS:
        warnings.warn(
            f"{name}: EXIF orientation {orientation} is not applied; the mask follows the stored pixels, which "
            f"viewers show {_EXIF_TURNS[orientation]}.",
            stacklevel=2,
        )


def _is_dicom_file(obj: Any) -> bool:
    """Whether ``obj`` names a file that is DICOM (by its suffix or its preamble)."""
    if not isinstance(obj, (str, os.PathLike)) or not os.path.isfile(obj):
        return False
    if str(obj).lower().endswith(DICOM_SUFFIXES):
        return True
    from pydicom.misc import is_dicom

    try:
        return bool(is_dicom(obj))
    except OSError:
        return False


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
    ``<folder name>_<SeriesInstanceUID>_<postfix>.dcm``; a label map carrying a unique case name in
    ``meta["case_name"]`` (from :class:`monai_unets.data.CaseDataset`) is written as ``<case name>_<postfix>.dcm``,
    like the NIfTI of the same case. Inputs
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
            if _is_dicom_file(source):
                # the docs promise a SEG for DICOM input: say which DICOM input does not get one
                logger.warning(
                    "%s: no DICOM SEG written; SEG files are written for DICOM series folders, not for a single "
                    "(multi-frame) DICOM file. The NIfTI label map is written as usual.",
                    source,
                )
            else:
                logger.debug("SaveDicomSeg: %r is not a DICOM series folder, no SEG written.", source)
            return label_map
        folder, series_uid = series
        # the job's unique case name when the case came from a CaseDataset; else the folder (and series) name,
        # as one folder may yield several series references whose SEGs need distinct names
        stem = getattr(label_map, "meta", {}).get(CASE_NAME_KEY) or (
            folder.resolve().name if series_uid is None else f"{folder.resolve().name}_{series_uid}"
        )
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
