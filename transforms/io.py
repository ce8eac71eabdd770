"""Input and output of images: 2D image files at their own bit depth, and DICOM SEG beside the usual writers."""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import PILReader
from monai.transforms import MapTransform, SaveImaged, Transform
from monai.utils import ensure_tuple
from PIL import Image, UnidentifiedImageError

from ..data.cases import CASE_NAME_KEY
from ..data.datalist import IMAGE_SUFFIXES
from ..data.dicom_seg import read_seg_source, write_dicom_seg
from ..data.medical_io import DICOM_SUFFIXES, is_dicom_file, parse_series_reference

__all__ = [
    "EXIF_ORIENTATION_KEY",
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
    """Pixels of one image file with the attributes ``PILReader.get_data`` reads from a PIL image.

    Args:
        pixels: ``(height, width, channels)`` or ``(height, width)``, as :func:`image_pixels` returns them.
        format: the file format, e.g. ``"PNG"``.
        mode: the PIL mode of the file; for files read by ITK, PIL's name of their samples (``"RGB"``, ...).
        orientation: the file's EXIF orientation, which the pixels are not turned by (1: none).
    """

    def __init__(self, pixels: np.ndarray, format: str | None, mode: str, orientation: int = 1) -> None:
        self.pixels, self.format, self.mode, self.orientation = pixels, format, mode, orientation
        self.height, self.width = pixels.shape[:2]
        # the depth of the values handed on, which the mode does not tell for images PIL reads at 8 bits only
        self.bits_per_sample = 1 if mode == "1" else pixels.dtype.itemsize * 8

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.pixels if dtype is None else self.pixels.astype(dtype)


class _Refused:
    """A file that ``Image2DReader`` recognised but refuses; ``get_data`` raises ``error``.

    Raised in ``read``, the error would make ``LoadImage`` try its other readers, which misread such files (ITK
    reads an image over PIL's pixel limit without its channel axis).
    """

    def __init__(self, error: Exception) -> None:
        self.error = error


#: PIL modes with an alpha channel
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")


def _drawn_in_alpha(colour: np.ndarray, alpha: np.ndarray) -> bool:
    """Whether a mask is drawn only in its alpha channel (see :func:`image_pixels`), which is then its values.

    Args:
        colour: the colour samples, ``(height, width, samples)``.
        alpha: the alpha channel, ``(height, width)``.
    """
    # transparent anywhere: the drawing is the alpha, also where it is transparent everywhere (the lesion-free
    # images of such an export, whose grey is the colour: a white one had been read as lesion everywhere)
    opaque = np.iinfo(alpha.dtype).max if np.issubdtype(alpha.dtype, np.integer) else 1.0
    return bool(alpha.size and (colour == colour[:1, :1]).all() and not (alpha == opaque).all())


class _PaletteMismatch(ValueError):
    """A palette mask whose indices and colours disagree on its background (see :func:`_palette_mismatch`)."""


def _palette_mismatch(image: Any, indices: np.ndarray) -> str | None:
    """Why the indices of a palette mask, which are its values, and its colours tell different backgrounds, if so.

    Read by index a mask's background is its lowest index; shown, its darkest colour, over black (transparent
    shows nothing drawn, as for a mask drawn in its alpha). Where these differ, the file alone cannot tell the
    lesion: an annotation tool's palette may colour its background index white, and an RGB mask quantised to a
    palette (PIL saving it as GIF, say) can put a white lesion at index 0, and both files look alike.

    Args:
        image: a ``"P"`` or ``"PA"`` PIL image.
        indices: its indices, ``(height, width)``.
    """
    counts = np.bincount(indices.ravel(), minlength=256)
    used = np.flatnonzero(counts)
    if not used.size:
        return None
    swatch = Image.new("P", (len(used), 1))
    swatch.putdata(used.tolist())
    swatch.putpalette(image.palette)
    if "transparency" in image.info:
        swatch.info["transparency"] = image.info["transparency"]
    colours = np.asarray(swatch.convert("RGBA"), dtype=np.float64)[0]
    alpha = colours[:, 3]
    if image.mode == "PA":  # alpha by pixel: each index's mean
        alpha = np.bincount(indices.ravel(), np.asarray(image.getchannel("A")).ravel(), 256)[used] / counts[used]
    shown = colours[:, :3] @ _LUMA * alpha / 255
    if (shown < shown[0]).any():
        darker = used[np.argmax(shown < shown[0])]
        problem = f"is shown brighter than its index {darker}: its indices and its colours give opposite masks"
    elif used[0] > 0 and shown[0] == 0:
        problem = "is shown black but is not 0, the background of a mask read by index"
    else:
        return None
    return (
        f"palette mask whose lowest index, {used[0]}, {problem}; save the mask as a grey image, background 0 and "
        "lesion 1 or 255."
    )


def image_pixels(image: Any, channels: int = 3) -> np.ndarray:
    """The values of a PIL image at their own bit depth, as ``(height, width, channels)`` or ``(height, width)``.

    ``PIL.Image.convert("RGB")`` or ``"L"`` clips 16-bit and 32-bit grey values to 0..255 (a 16-bit scan becomes
    a constant image) and cannot hold floats. Here grey images keep their values and type: 1-bit as 0/1, 8-bit,
    16-bit (``I;16``, either byte order) as uint16, 32-bit integer and float (TIFF). Palette images are looked up
    in their palette for RGB, alpha channels are dropped, other colour modes (CMYK, YCbCr, ...) become RGB.

    A grey array (``channels=1``, how masks are read) of a palette image is its indices, as most loaders read a
    mask (``np.asarray(PIL.Image.open(mask))``): its palette only colours them for display, and looked up, a
    background index coloured white would be read as lesion. Grey ramp palettes (index ``i`` shown as grey ``i``)
    give the same values either way. Where the indices and the colours tell different backgrounds (the lowest
    index shown brighter than another index the mask uses, or shown black but not 0: an RGB mask that PIL saves
    as GIF gets its white lesion at index 0 and its black background at index 1), the file does not tell which
    is meant, and it is refused.

    A grey array of an image whose colour is one value everywhere while its alpha varies is the alpha channel
    (also for a palette image with transparent indices): masks exported as a transparent overlay (lesion opaque,
    the rest transparent, all pixels black or white) hold the lesion nowhere else, and their grey would be an
    empty mask.

    Args:
        image: a PIL image.
        channels: 3 for an RGB array (grey values repeated in each channel), 1 for a 2D grey array (colour
            images become their luminance, as ``convert("L")`` computes it, palette images their indices; see
            above for alpha).

    Raises:
        ValueError: with ``channels=1``, a palette image whose indices and colours tell different backgrounds.

    Example::

        >>> from PIL import Image
        >>> image_pixels(Image.fromarray(np.array([[0, 4095]], dtype=np.uint16)), channels=1)
        array([[   0, 4095]], dtype=uint16)
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
    mode = image.mode
    if channels == 1 and (mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info)):
        samples = np.asarray(image.convert("RGBA"))
        if _drawn_in_alpha(samples[..., :3], samples[..., 3]):
            return samples[..., 3]
    if mode == "1":
        grey = np.asarray(image, dtype=np.uint8)
    elif mode in ("L", "I", "F") or mode.startswith("I;16"):
        grey = np.asarray(image)
        grey = grey.astype(grey.dtype.newbyteorder("="), copy=False)
    elif mode in ("LA", "La"):
        grey = np.asarray(image.convert("L"))
    elif channels == 1 and mode in ("P", "PA"):
        # the indices, as other loaders read masks: looked up, a background index coloured white became lesion
        grey = np.asarray(image.getchannel(0))
        if problem := _palette_mismatch(image, grey):
            raise _PaletteMismatch(problem)
    else:
        colour = image.convert("RGB")  # palette looked up, alpha dropped, CMYK/YCbCr/HSV/LAB converted
        return np.asarray(colour) if channels == 3 else np.asarray(colour.convert("L"))
    return np.repeat(grey[..., None], 3, axis=-1) if channels == 3 else grey


class Image2DReader(PILReader):
    """MONAI's ``PILReader`` for 2D image files of any mode and bit depth, with a fixed number of channels.

    The values come from :func:`image_pixels`: 16-bit and 32-bit grey, float TIFF, 1-bit, palette, RGBA, CMYK
    images all keep their range (normalise afterwards, e.g. ``ScaleIntensityd``), grey images are repeated into
    RGB for ``channels=3`` and colour masks become grey for ``channels=1`` (palette masks their indices). Images
    whose samples PIL cuts to their high byte (16-bit RGB, RGBA and grey-with-alpha PNG, 16-bit RGB(A) TIFF) and
    TIFFs PIL cannot open (float or 32-bit RGB) are read by ITK at their stored type; 16-bit CMYK TIFFs, which
    ITK cannot read, are read by PIL at 8 bits. ``meta["bits_per_sample"]`` gives the depth of the values (1, 8,
    16, 32), which :class:`~monai_unets.transforms.ScaleByBitDepth` scales by. Arrays and metadata are laid out
    as ``PILReader`` lays them out (width first), so ``Invertd`` and ``SaveImaged`` work as with ``PILReader``.

    Files that no reader here reads right are refused from ``get_data`` with an error naming the file, so that
    ``LoadImage`` does not hand them on to a reader that misreads them: an image over PIL's pixel limit (twice
    ``PIL.Image.MAX_IMAGE_PIXELS``, a guard against decompression bombs) with ``PIL.Image.DecompressionBombError``,
    the others listed under ``get_data`` (such as a palette mask whose indices and colours tell different
    backgrounds, see :func:`image_pixels`) with ``ValueError``. So is a missing, empty or text file (an HTML error
    page, a Git LFS pointer), which none of its readers reads: it is reported at once, not after each of them has
    tried it, and a DICOM file, which the others read as a volume or with its colours rescaled. So, too, is a file
    that starts as a JPEG, PNG, GIF or WebP file does but whose header PIL cannot read (a copy cut short): PIL is
    the reader of those formats, and each of the others had failed on it in turn, with a log line each.

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
        """Whether every one of ``filename`` ends with one of ``IMAGE_2D_SUFFIXES``, or is a folder (which ``read``
        refuses by name: no other reader of ``LoadImage`` is tried on it, whose errors named other files)."""
        from monai.data.utils import is_supported_format

        return is_supported_format(filename, IMAGE_2D_SUFFIXES) or all(os.path.isdir(n) for n in ensure_tuple(filename))

    def read(self, data: Any, **kwargs: Any) -> Any:
        """Opens each file and decodes it at its own bit depth (a list when several are given).

        Args:
            data: file name(s).
            kwargs: arguments of ``PIL.Image.open``.
        """
        open_kwargs = {**self.kwargs, **kwargs}
        decoded = [self._decode(name, **open_kwargs) for name in ensure_tuple(data)]
        return decoded if len(decoded) > 1 else decoded[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """The pixels and metadata of what ``read`` returned, as ``PILReader`` lays them out.

        Raises:
            PIL.Image.DecompressionBombError: an image over PIL's pixel limit.
            ValueError: an image of more than four samples a pixel, a 16-bit RGB TIFF with an orientation, a
                16-bit CMYK TIFF PIL misreads, a palette mask whose indices and colours disagree.
        """
        for item in ensure_tuple(img):
            if isinstance(item, _Refused):
                raise item.error
        return super().get_data(img)

    def _get_meta_dict(self, img: _Decoded) -> dict:
        # every image has the orientation key, so that a batch's metadata collates
        return {
            **super()._get_meta_dict(img),
            "bits_per_sample": img.bits_per_sample,
            EXIF_ORIENTATION_KEY: img.orientation,
        }

    def _decode(self, name: Any, **kwargs: Any) -> _Decoded | _Refused:
        """One file's pixels: PIL's where it holds them at full depth, ITK's where PIL would cut them to 8 bits."""
        # Raised, an error makes LoadImage try each of its other readers, and the first such file of a run waits for
        # ITK's import (2-3 s): a file that none of them reads is refused here instead
        try:
            # from an open file, not by its name: PIL memory-maps an uncompressed grey TIFF named by a path at its
            # displayed size, which for orientations 5 to 8 wraps the stored rows at the wrong width
            file = open(name, "rb")
        except FileNotFoundError as error:
            return _Refused(error)
        except IsADirectoryError:
            # MONAI Label gives an unknown study id an empty path, which MONAI makes the working folder "."
            where = "" if os.path.isabs(name) else f" ({os.path.abspath(name)})"
            return _Refused(ValueError(f"{name}: is a folder{where}, not an image file"))
        with file:
            try:
                image = Image.open(file, **kwargs)
            except Image.DecompressionBombError as error:
                return _Refused(_too_large(name, error))
            except UnidentifiedImageError:
                # PIL's message names the file object it was given, not the file
                unknown = UnidentifiedImageError(f"{name}: cannot identify the image file (not an image PIL reads).")
                header = _header(name, _TEXT_PROBE)
                if b"\0" not in header:
                    return _Refused(unknown)
                if is_dicom_file(name):
                    # handed on, ITK read it as a 3D volume and pydicom, where ITK failed (16-bit RGB), as a 2D
                    # image of rescaled values that reached the network instead of its stored colours
                    return _Refused(
                        ValueError(
                            f"{name} is a DICOM file; Image2DReader reads 2D image files "
                            f"({', '.join(IMAGE_SUFFIXES)}): save the image as PNG or TIFF."
                        )
                    )
                kind = next((k for signature, k in _PIL_SIGNATURES.items() if header.startswith(signature)), None)
                if kind is not None and (kind != "WebP" or header[8:12] == b"WEBP"):
                    # PIL is the reader of these formats; handed on, each other reader failed on it in turn, with a
                    # log line each and libjpeg's own words on the console (an interrupted copy: the header, then zeros)
                    damaged = f"{name}: cannot read its header (it starts as a {kind} file does); the file is damaged."
                    return _Refused(OSError(damaged))
                if not header.startswith(_TIFF_SIGNATURES):
                    raise unknown from None
                image = None  # PIL opens no float or 32-bit RGB TIFF, nor 16-bit grey with alpha; ITK does
            except (OSError, SyntaxError) as error:  # PIL knew the format, then found the header cut short or damaged
                return _Refused(OSError(f"{name}: cannot read its header ({error}); the file is damaged."))
            tiff = _tiff_tags(name) if image is None or image.format == "TIFF" else None
            if tiff is not None and (problem := _cmyk_problem(tiff, opened=image is not None)):
                return _Refused(
                    ValueError(f"{name}: 16-bit CMYK TIFF {problem}; save the image as RGB (8 or 16 bits).")
                )
            if problem := _frames_problem(name, image):
                return _Refused(
                    ValueError(f"{name}: {problem}; save the one image to segment as PNG, or as a TIFF of one page.")
                )
            if image is not None and image.format != "TIFF":
                # decoded before the EXIF is read: a PNG's EXIF may follow its pixels, so reading it decoded them,
                # and the error of damaged pixels had passed for that of a damaged EXIF block, leaving the image
                # half decoded (a TIFF is read as it is stored, see _as_stored)
                try:
                    image.load()
                except (OSError, SyntaxError) as error:
                    return _Refused(_damaged_pixels(name, error))
            exif_orientation = None if image is None else _exif_orientation(image)
            if image is not None and not _cut_to_8_bits(name, image):
                _warn_if_turned(name, exif_orientation)
                try:
                    pixels = image_pixels(_as_stored(image, exif_orientation), self.channels)
                except _PaletteMismatch as error:
                    return _Refused(ValueError(f"{name}: {error}"))
                except (OSError, SyntaxError) as error:  # PIL's errors for pixel data cut short or damaged
                    return _Refused(_damaged_pixels(name, error))
                return _Decoded(pixels, image.format, image.mode, _turn_of(exif_orientation))
        if tiff is not None and (orientation := tiff.get(_ORIENTATION_TAG)) in _EXIF_TURNS:
            # ITK's TIFF reader turns such files by a wrong rule (orientation 6 comes out mirrored) and at 8 bits
            return _Refused(
                ValueError(
                    f"{name}: TIFF orientation {orientation}, which ITK (the reader of its samples) applies wrongly; "
                    "save the image with orientation 1 (its pixels as stored or as displayed), or as a 16-bit PNG."
                )
            )
        _warn_if_turned(name, exif_orientation)  # a 16-bit colour PNG's EXIF, which ITK leaves as well
        samples = _stored_samples(name)
        count = samples.shape[-1]
        mode = _SAMPLE_MODES.get(count)
        if mode is None:
            return _Refused(ValueError(f"{name}: {count} samples a pixel; Image2DReader reads grey and RGB (+ alpha)."))
        return _Decoded(
            _stored_pixels(samples, self.channels),
            "TIFF" if image is None else image.format,
            mode,
            _turn_of(exif_orientation),
        )


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: bytes of a file PIL cannot identify that are looked at before it is handed to other readers: without a zero byte
#: among them it is empty or text (an HTML error page or a Git LFS pointer saved as the image), which none reads,
#: while every binary format that one of them takes by content (DICOM, TIFF, PNG, BMP, JPEG, HDF5, MRC, NumPy) has
#: zero bytes in its header
_TEXT_PROBE = 1024
#: the start of files of the formats PIL reads and no other reader of LoadImage reads better
_PIL_SIGNATURES = {b"\xff\xd8\xff": "JPEG", _PNG_SIGNATURE: "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF", b"RIFF": "WebP"}
#: classic TIFF and BigTIFF, little and big endian
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: PIL mode of the images read by ITK, by their samples a pixel
_SAMPLE_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
#: ITU-R 601-2 luma weights, as ``PIL.Image.convert("L")`` uses them
_LUMA = np.array([0.299, 0.587, 0.114])


def _header(name: Any, size: int = 26) -> bytes:
    """The first ``size`` bytes of a file: by default its signature and, for a PNG, the IHDR chunk up to the colour
    type."""
    with open(name, "rb") as file:
        return file.read(size)


def _cut_to_8_bits(name: Any, image: Any) -> bool:
    """Whether PIL keeps only the high byte of the samples of ``image``: 16-bit colour PNG and RGB(A) TIFF."""
    if image.format == "PNG":
        header = _header(name)
        # IHDR bit depth and colour type: 2 RGB, 4 grey and alpha, 6 RGBA; PIL keeps 16-bit grey (0) as I;16
        return header[24] == 16 and header[25] in (2, 4, 6)
    if image.format == "TIFF":
        # PhotometricInterpretation 2 is RGB (16-bit CMYK stays with PIL: see _cmyk_problem), BitsPerSample 258
        return image.tag_v2.get(262) == 2 and max(ensure_tuple(image.tag_v2.get(258, 8))) > 8
    return False


def _stored_samples(name: Any) -> np.ndarray:
    """The samples of a 2D image file at their stored type, ``(height, width, samples)``, read by ITK.

    ITK's arrays run over rows top to bottom, then columns left to right, as ``np.asarray`` of a PIL image does;
    of a TIFF whose further pages are reduced-resolution copies (refused otherwise) the first page is kept, as PIL
    keeps it.
    """
    header = _header(name)
    if header.startswith(_PNG_SIGNATURE) and header[25] == 4:
        import itk  # SimpleITK has no pixel type for two-sample PNG (grey and alpha)

        reader = itk.ImageFileReader[itk.VectorImage[itk.US, 2]].New(FileName=os.fspath(name))
        reader.Update()
        return itk.array_from_image(reader.GetOutput())
    import SimpleITK as sitk

    image = sitk.ReadImage(os.fspath(name))
    samples = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 3:
        samples = samples[0]
    return samples if image.GetNumberOfComponentsPerPixel() > 1 else samples[..., None]


def _stored_pixels(samples: np.ndarray, channels: int) -> np.ndarray:
    """:func:`image_pixels` of samples ``(height, width, samples)`` read by ITK: alpha dropped (for grey, kept
    where it is the only drawing, as there), types kept.

    Colours are kept as stored also beside a premultiplied alpha (TIFF ExtraSamples 1), which PIL would divide
    out: ITK writes that tag for plain RGBA, and opaque pixels are the same either way.
    """
    colour = samples[..., :3] if samples.shape[-1] > 2 else samples[..., :1]
    if channels == 1 and samples.shape[-1] in (2, 4) and _drawn_in_alpha(colour, samples[..., -1]):
        return samples[..., -1]
    if samples.shape[-1] <= 2:
        grey = samples[..., 0]
        return np.repeat(grey[..., None], 3, axis=-1) if channels == 3 else grey
    if channels == 3:
        return colour
    luma = colour @ _LUMA
    return (luma if colour.dtype.kind == "f" else np.rint(luma)).astype(colour.dtype)


def _too_large(name: Any, error: Exception) -> Image.DecompressionBombError:
    """PIL's refusal of an image over its pixel limit, with the file name and what a user can do."""
    # PIL gives the pixel count only in its message: the image cannot be opened to ask for its size
    count = re.search(r"\((\d+) pixels\)", str(error))
    pixels = f"{int(count[1]):,} pixels" if count else "its size"
    return Image.DecompressionBombError(
        f"{name}: {pixels} is over PIL's limit of {2 * Image.MAX_IMAGE_PIXELS:,} (2 x PIL.Image.MAX_IMAGE_PIXELS, "
        "against decompression bombs); downscale or tile the image, or raise that limit for files you trust."
    )


#: The metadata key of :class:`Image2DReader` holding a file's EXIF orientation (1 to 8; 1 without one), which its
#: pixels are not turned by; :class:`~monai_unets.data.AtomicPILWriter` gives it to the mask written for the image.
EXIF_ORIENTATION_KEY = "exif_orientation"

# the Orientation tag of EXIF (and of TIFF)
_ORIENTATION_TAG = 0x0112

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


#: EXIF orientation -> the transposition that brings the displayed pixels back to the stored ones
_UNTURN = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# TIFF NewSubfileType bits of a page that is no image of its own: a reduced-resolution copy (a pyramid's level, a
# thumbnail) or a transparency mask of another page
_DERIVED_PAGE = 0x1 | 0x4


def _frames_problem(name: Any, image: Any) -> str | None:
    """Why a file of several images cannot be read as one (an animation, a stack of TIFF pages); ``None`` for one
    image. ``image`` is PIL's, or ``None`` for a TIFF that PIL does not open."""
    if image is None or image.format == "TIFF":
        full_pages = sum(not int(page.get(254, 0)) & _DERIVED_PAGE for page in _tiff_pages(name))
        return f"holds {full_pages} images (TIFF pages), not one" if full_pages > 1 else None
    frames = getattr(image, "n_frames", 1)
    if frames <= 1 or image.format == "MPO":
        # a camera's multi-picture JPEG: the first picture is the photograph, the others its previews or depth maps
        return None
    return f"holds an animation of {frames} frames, not one image"


def _damaged_pixels(name: Any, error: Exception) -> OSError:
    """The error of an image file whose pixel data PIL cannot decode (cut short or damaged), naming it."""
    return OSError(f"{name}: cannot decode its pixel data ({error}); the file is damaged.")


def _exif_orientation(image: Any) -> int | None:
    """The EXIF orientation of a PIL image; ``None`` without one or with a damaged EXIF block."""
    try:
        return image.getexif().get(_ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - a damaged EXIF block does not stop the pixels from being read
        return None


def _tiff_pages(name: Any) -> Iterator[Mapping[int, Any]]:
    """The tags of each page of a TIFF, first page first, read without decoding any (PIL opens no float RGB TIFF).

    The walk ends at a directory offset seen before (a damaged file whose pages point back cannot loop it) and at a
    later directory that cannot be read or holds no image size (a damaged link to a next page): its first page is
    still an image to read, as PIL reads it.
    """
    from PIL import TiffImagePlugin

    with open(name, "rb") as file:
        header = file.read(8)
        if header[2] == 43:  # BigTIFF: 8-byte offset of the first directory
            header += file.read(8)
        directory = TiffImagePlugin.ImageFileDirectory_v2(header)
        seen: set[int] = set()
        while directory.next and directory.next not in seen:
            first = not seen
            seen.add(directory.next)
            file.seek(directory.next)
            try:
                directory.load(file)
            except (OSError, ValueError):
                if first:
                    raise
                return
            if not first and not {256, 257} <= set(directory):  # ImageWidth and ImageLength
                return
            yield directory


def _tiff_tags(name: Any) -> Mapping[int, Any]:
    """The tags of a TIFF's first page."""
    return next(_tiff_pages(name))


def _cmyk_problem(tags: Mapping[int, Any], opened: bool) -> str | None:
    """Why a TIFF is 16-bit CMYK that neither PIL nor ITK reads right, if it is.

    PIL keeps the high byte of each 16-bit CMYK sample, right at 8 bits (the depth ``bits_per_sample`` then
    gives), except from uncompressed separate planes (PlanarConfiguration 2): its own decoder unpacks each
    16-bit plane as 8-bit samples, a wrong image (libtiff, which decodes compressed planes, gets them right). ITK
    reads no 16-bit CMYK.

    Args:
        tags: the TIFF's tags.
        opened: whether PIL opened the file.
    """
    if tags.get(262) != 5 or max(ensure_tuple(tags.get(258, 8))) <= 8:  # PhotometricInterpretation, BitsPerSample
        return None
    if not opened:
        return "(with extra samples, say), which PIL cannot open and ITK cannot read"
    if tags.get(284, 1) == 2 and tags.get(259, 1) == 1:  # PlanarConfiguration, Compression
        return "in uncompressed separate planes, which PIL decodes wrongly and ITK cannot read"
    return None


def _as_stored(image: Any, orientation: int | None) -> Any:
    """``image`` loaded, with its pixels as stored in the file.

    Pillow turns a TIFF by its orientation as it loads it (and then drops the tag), other formats not; the turn is
    undone so that every format's mask follows the stored pixels.

    Args:
        image: a PIL image not yet loaded.
        orientation: its EXIF orientation, read before loading.
    """
    image.load()
    if orientation in _UNTURN and _ORIENTATION_TAG not in image.getexif():
        return image.transpose(_UNTURN[orientation])
    return image


def _turn_of(orientation: int | None) -> int:
    """The EXIF orientation recorded in an image's metadata: the file's, 1 where it has none or an invalid one."""
    return orientation if orientation in _EXIF_TURNS else 1


def orientation_exif(orientation: int) -> Image.Exif | None:
    """An EXIF block that holds ``orientation`` alone, for a file written for an image of that orientation; ``None``
    for orientation 1, which needs none."""
    if orientation == 1:
        return None
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = orientation
    return exif


def _warn_if_turned(name: Any, orientation: int | None) -> None:
    """Warns that an image's EXIF orientation is not applied: its mask follows the stored pixels, not the display."""
    if orientation in _EXIF_TURNS:
        warnings.warn(
            f"{name}: EXIF orientation {orientation} is not applied; the mask follows the stored pixels, which "
            f"viewers show {_EXIF_TURNS[orientation]} (a mask written for it carries the same orientation).",
            stacklevel=2,
        )


def _dicom_source(source: Any) -> tuple[Path, str | None, str] | None:
    """The DICOM series folder or file of ``source``, its series UID (of a series reference) and the name its SEG is
    named by; ``None`` for what is no DICOM."""
    series = _dicom_series(source)
    if series is not None:
        folder, series_uid = series
        # one folder may yield several series references, whose SEGs need distinct names
        name = folder.resolve().name if series_uid is None else f"{folder.resolve().name}_{series_uid}"
        return folder, series_uid, name
    if is_dicom_file(source):
        path = Path(source)
        return path, None, path.name[: -len(path.suffix)] if path.suffix.lower() in DICOM_SUFFIXES else path.name
    return None


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
    """Write a label map predicted for DICOM as a DICOM SEG ``<output_dir>/<folder or file name>_<postfix>.dcm``.

    The source is the label map's ``meta["filename_or_obj"]`` (kept by ``Invertd``) unless given: a DICOM series
    folder, a series reference ``"<folder>::<SeriesInstanceUID>"`` (that series of the folder, written as
    ``<folder name>_<SeriesInstanceUID>_<postfix>.dcm``) or a single DICOM file (one slice or an enhanced
    multi-frame image; ``study.dcm`` is written as ``study_<postfix>.dcm``). A label map carrying a unique case
    name in ``meta["case_name"]`` (from :class:`monai_unets.data.CaseDataset`) is written as
    ``<case name>_<postfix>.dcm``, like the NIfTI of the same case. Inputs that are not DICOM (NIfTI files, PNGs,
    plain arrays) are passed through without writing anything, so one inference config serves both kinds of
    input. The label map is returned unchanged. See
    :func:`monai_unets.data.dicom_seg.write_dicom_seg` for the SEG content and the geometry checks. When no SEG
    can be written for a series (e.g. its slices lack a UID a SEG must reference), ``DicomSegError`` says why;
    the outputs written before it in the chain (the NIfTI label map) are kept.

    Args:
        output_dir: folder the SEG files are written to; created when missing.
        labels: name of each foreground label value, e.g. ``{1: "pancreas", 2: "tumour"}``.
        output_postfix: appended to the series folder (or file) name to form the file name.
        write_kwargs: further arguments of ``write_dicom_seg`` (``algorithm_name``, ``property_types``, ...).

    Example::

        >>> import torch
        >>> from monai.transforms import LoadImage
        >>> save = SaveDicomSeg("out", {1: "pancreas"}, algorithm_name="unet")
        >>> image = LoadImage(ensure_channel_first=True)("ct_series/")  # doctest: +SKIP
        >>> # stands in for the prediction after Invertd + AsDiscreted: it keeps the image's meta["filename_or_obj"]
        >>> pred = (image > 100).to(torch.uint8)  # doctest: +SKIP
        >>> pred = save(pred)  # writes out/ct_series_seg.dcm  # doctest: +SKIP
    """

    def __init__(
        self, output_dir: str | os.PathLike, labels: Mapping[int, str], output_postfix: str = "seg", **write_kwargs: Any
    ) -> None:
        # absolute now: ITK changes the working folder for a moment while its modules load, and a relative folder
        # written to from a background thread then would lie elsewhere
        self.output_dir = Path(output_dir).absolute()
        self.labels = dict(labels)
        self.output_postfix = output_postfix
        self.write_kwargs = write_kwargs
        # (source, series UID) -> its headers being read by `prepare`
        self._read_ahead: dict[tuple[Path, str | None], Future] = {}
        self._reader: ThreadPoolExecutor | None = None

    def output_path(self, name: str, postfix: str | None = None) -> Path:
        """The SEG file of the case (or series) named ``name``, with ``postfix`` in place of ``output_postfix``."""
        return self.output_dir / f"{name}_{postfix or self.output_postfix}.dcm"

    def output_paths(self, name: str) -> list[Path]:
        """The files written for the case whose unique output name is ``name``."""
        return [self.output_path(name)]

    def __call__(
        self, label_map: NdarrayOrTensor, source: str | os.PathLike | None = None, postfix: str | None = None
    ) -> NdarrayOrTensor:
        """Save ``label_map`` when ``source`` (default: its ``filename_or_obj``) is a DICOM series folder or file.

        Args:
            label_map: class indices in the original space of the series, ``(1, X, Y, Z)``.
            source: the series folder or DICOM file; ``None`` to read it from the label map's metadata.
            postfix: overrides ``output_postfix`` for this call.
        """
        if source is None:
            source = getattr(label_map, "meta", {}).get("filename_or_obj")
        dicom = _dicom_source(source)
        if dicom is None:
            logger.debug("SaveDicomSeg: %r is neither a DICOM series folder nor a DICOM file, no SEG written.", source)
            return label_map
        source, series_uid, name = dicom
        kwargs = dict(self.write_kwargs)
        if series_uid is not None:
            kwargs["source_series_uid"] = series_uid
        read_ahead = self._read_ahead.pop((source, series_uid), None)
        if read_ahead is not None:
            kwargs["source_headers"] = read_ahead.result()  # raises what reading them raised
        # the job's unique case name when the case came from a CaseDataset
        stem = getattr(label_map, "meta", {}).get(CASE_NAME_KEY) or name
        path = write_dicom_seg(label_map, source, self.output_path(stem, postfix), self.labels, **kwargs)
        logger.info("SaveDicomSeg: wrote %s", path)
        return label_map

    def prepare(self, source: Any) -> None:
        """Starts reading the headers of the DICOM ``source`` in a thread, for the next call of this saver with it.

        They do not depend on the label map, and reading them is about half of a SEG's time: ``ConcurrentCompose``
        calls this as its chain starts, so that they are read while the steps before the SEG (inverting the
        prediction) run. A source that is no DICOM is ignored; only the latest call's reading is kept.

        Args:
            source: the series folder, series reference or DICOM file the label map will be predicted for.
        """
        self._read_ahead.clear()
        dicom = _dicom_source(source)
        if dicom is None:
            return
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dicom-seg-source")
        source, series_uid, _ = dicom
        self._read_ahead[(source, series_uid)] = self._reader.submit(read_seg_source, source, series_uid)


class SaveDicomSegd(SaveImaged):
    """Dictionary-based :class:`SaveDicomSeg`, for the post-processing chain after ``Invertd`` + ``AsDiscreted``.

    The series folder or DICOM file is taken from the prediction's ``meta["filename_or_obj"]``, else from the
    metadata of ``data[source_key]`` (or ``data[source_key]`` itself when it is still a path). With several keys,
    the key is added to the file name so the outputs do not overwrite each other.

    Args:
        keys: keys of the label maps to save, e.g. ``"pred"``.
        output_dir: folder the SEG files are written to; created when missing.
        labels: name of each foreground label value, e.g. ``{1: "pancreas", 2: "tumour"}``.
        source_key: key of the loaded image, used when the prediction carries no source folder.
        output_postfix: appended to the series folder (or file) name to form the file name.
        allow_missing_keys: don't raise if a key is missing.
        write_kwargs: further arguments of ``write_dicom_seg`` (``algorithm_name``, ``property_types``, ...).

    Example::

        >>> import torch
        >>> from monai.transforms import LoadImaged
        >>> save = SaveDicomSegd("pred", "out", {1: "pancreas", 2: "tumour"}, algorithm_name="attention_unet")
        >>> data = LoadImaged("image", ensure_channel_first=True)({"image": "ct_series/"})  # doctest: +SKIP
        >>> data["pred"] = (data["image"] > 100).to(torch.uint8)  # stands in for the prediction  # doctest: +SKIP
        >>> data = save(data)  # writes out/ct_series_seg.dcm; a NIfTI or PNG input is passed through  # doctest: +SKIP
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
        # a SaveImaged by type only: MONAI Label's served inference leaves every SaveImaged out of the postprocessing
        # and returns the label map itself; a SEG written there would be a file no one receives, on the server, with
        # the patient's identifiers
        MapTransform.__init__(self, keys, allow_missing_keys)
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

    def _postfix(self, key: Hashable) -> str | None:
        return f"{key}_{self.saver.output_postfix}" if len(self.keys) > 1 else None

    def output_paths(self, name: str) -> list[Path]:
        """The files written for the case whose unique output name is ``name``, one per key."""
        return [self.saver.output_path(name, self._postfix(key)) for key in self.keys]

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.saver(d[key], source=self._source(d, d[key]), postfix=self._postfix(key))
        return d

    def prepare(self, data: Mapping[Hashable, Any]) -> None:
        """Starts reading the headers of the source series in a thread (:meth:`SaveDicomSeg.prepare`), from the
        case as it enters the post-processing chain: its first key's source, which the steps before do not change.

        Args:
            data: the case, e.g. with the network's ``pred`` and the loaded ``image``.
        """
        for key in self.key_iterator(dict(data)):
            self.saver.prepare(self._source(data, data[key]))
            return


SaveDicomSegD = SaveDicomSegDict = SaveDicomSegd
