"""Overlay pictures of a segmentation (image with predicted and true contours) and label volumes per case."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.transforms import Orientation
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ..transforms.label import ArgmaxLabel

__all__ = ["TRUTH_COLORS", "PREDICTION_COLORS", "label_map", "label_volumes", "render_overlay"]

# one colour per class; truth in cool colours, prediction in warm ones, so each contour says what it is
TRUTH_COLORS: tuple[tuple[int, int, int], ...] = ((0, 230, 0), (0, 200, 255), (60, 90, 255), (0, 255, 170))
PREDICTION_COLORS: tuple[tuple[int, int, int], ...] = ((255, 40, 40), (255, 0, 255), (255, 150, 0), (255, 255, 0))
# the largest side of one panel, in pixels
PANEL_SIZE = 320
# narrowest legend: a thin image's overlay is widened to it rather than cutting the colour key off
_LEGEND_WIDTH = 240


def label_map(segmentation: torch.Tensor | np.ndarray) -> np.ndarray:
    """An integer label map (spatial only) from a channel-first segmentation.

    One channel is a binary mask (> 0.5 is label 1); several channels are one-hot with the background first
    (label = argmax).

    Args:
        segmentation: (C, ...) masks, one-hot labels or class probabilities, as a tensor (on any device, detached
            here) or an array.

    Returns:
        the labels (...), uint8 (int16 for more than 256 channels).

    Example::

        >>> label_map(np.array([[[0.0, 1.0]]])).tolist()
        [[0, 1]]
    """
    array = np.asarray(segmentation.detach().cpu() if isinstance(segmentation, torch.Tensor) else segmentation)
    if array.shape[0] == 1:
        return (array[0] > 0.5).astype(np.uint8)
    # the bundles' own argmax, and its label type: uint8, int16 beyond 256 classes
    return np.asarray(ArgmaxLabel()(torch.as_tensor(array)))[0]


def label_volumes(labels: np.ndarray, affine: np.ndarray | torch.Tensor | None, num_classes: int) -> list[float]:
    """Size of labels 1..num_classes: millilitres for a 3D map with an affine, otherwise the number of pixels.

    The voxel volume is the absolute determinant of the affine's 3x3 part (mm^3), so oblique grids count right.

    Args:
        labels: an integer label map, spatial only (:func:`label_map`), of values >= 0; values above ``num_classes``
            are not counted.
        affine: the map's voxel-to-world affine in mm (4x4, or at least its 3x3 part); ``None``, or a 2D map, gives
            pixel counts.
        num_classes: the number of foreground labels, the length of the result; 0, the background, is not counted.

    Returns:
        one size per label 1..num_classes, 0.0 for a label that is absent.

    Example::

        >>> [round(v, 6) for v in label_volumes(np.ones((10, 10, 10), np.uint8), np.diag([2.0, 2.0, 2.5, 1.0]), 1)]
        [10.0]
    """
    counts = np.bincount(labels.reshape(-1), minlength=num_classes + 1)[1 : num_classes + 1].astype(float)
    if labels.ndim == 3 and affine is not None:
        voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=float)[:3, :3])))
        return [float(c) * voxel_mm3 / 1000.0 for c in counts]
    return [float(c) for c in counts]


def _display_intensity(image: np.ndarray) -> np.ndarray:
    """(C, *spatial) -> (*spatial, 3) uint8, each image scaled between its 0.5th and 99.5th percentiles."""
    channels = image[:3] if image.shape[0] >= 3 else np.repeat(image[:1], 3, axis=0)
    finite = channels[np.isfinite(channels)]
    low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(channels) - low) / max(high - low, 1e-8), 0.0, 1.0)
    return np.moveaxis((scaled * 255).astype(np.uint8), 0, -1)


def _contours(labels: np.ndarray, label: int, thickness: int) -> np.ndarray:
    mask = labels == label
    edge = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return ndimage.binary_dilation(edge, iterations=thickness - 1) if thickness > 1 else edge


def _panel(
    rgb: np.ndarray, truth: np.ndarray, prediction: np.ndarray, pixel_size: Sequence[float], num_classes: int
) -> Image.Image:
    """One 2D view (rows, cols) with contours, resized so that pixels are square and the panel fits PANEL_SIZE."""
    rows_mm, cols_mm = rgb.shape[0] * pixel_size[0], rgb.shape[1] * pixel_size[1]
    scale = PANEL_SIZE / max(rows_mm, cols_mm)
    size = (max(1, round(cols_mm * scale)), max(1, round(rows_mm * scale)))
    canvas = np.array(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    thickness = 2 if max(size) >= 256 else 1
    for maps, colors in ((truth, TRUTH_COLORS), (prediction, PREDICTION_COLORS)):
        resized = np.array(Image.fromarray(maps).resize(size, Image.NEAREST))
        for label in range(1, num_classes + 1):
            canvas[_contours(resized, label, thickness)] = colors[(label - 1) % len(colors)]
    return Image.fromarray(canvas)


def _slice_index(shown: list[np.ndarray], foreground: np.ndarray, axis: int) -> int:
    """The slice along ``axis`` that shows the most classes, then the most ``foreground``; of equal ones the middle.

    ``shown`` holds one mask per class present (in the truth or the prediction). A small class (a tumour beside its
    organ) is thus on the panel even off the organ's largest slice, and a structure of equal slices is cut through
    its middle rather than at its edge.
    """
    others = tuple(a for a in range(3) if a != axis)
    if not shown:
        return foreground.shape[axis] // 2
    classes = sum(mask.any(axis=others).astype(int) for mask in shown)
    area = foreground.sum(axis=others)
    best = np.flatnonzero(classes == classes.max())
    best = best[area[best] == area[best].max()]
    return int(best[len(best) // 2])


def _views_3d(
    image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]]:
    """Axial, coronal and sagittal slices through every class where one can, in radiological display orientation.

    Each slice shows the most classes of the truth or prediction that any slice along its axis shows, then the most
    true foreground (predicted where the truth is empty), then lies in the middle of the slices equal in both.

    The arrays are RAS: axis 0 runs from the patient's left to right, 1 from posterior to anterior, 2 from
    inferior to superior; ``image`` has its channels last. Axial views have anterior up, coronal and sagittal
    views superior up; the patient's right is on the left of the picture, and sagittal views have anterior on
    the left. Returns (image (rows, cols, C), truth, prediction, pixel size in mm) per view.
    """
    # the reference structure is what a reader wants to see; the prediction only where there is none
    foreground = truth > 0 if truth.any() else prediction > 0
    labels = np.union1d(np.unique(truth), np.unique(prediction))
    shown = [(truth == label) | (prediction == label) for label in labels[labels > 0]]
    views = []
    for axis in (2, 1, 0):
        first, second = (a for a in range(3) if a != axis)
        index = _slice_index(shown, foreground, axis)

        def cut(volume: np.ndarray, axis: int = axis, index: int = index) -> np.ndarray:
            # the second remaining axis becomes the rows, both shown from high to low index
            return np.ascontiguousarray(np.flip(np.take(volume, index, axis=axis).swapaxes(0, 1), axis=(0, 1)))

        views.append((cut(image), cut(truth), cut(prediction), (spacing[second], spacing[first])))
    return views


def _legend(width: int, class_names: Sequence[str]) -> Image.Image:
    """The colour key, its entries wrapped onto more lines where ``width`` is too narrow (at least _LEGEND_WIDTH)."""
    font = ImageFont.load_default()
    line_height, indent = 14, 80
    width = max(width, _LEGEND_WIDTH)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    entries = [24 + int(measure.textlength(name, font=font)) for name in class_names]
    # the line each entry starts, and its position on it, for one title's row; both rows lay out alike
    places, x, line = [], indent, 0
    for advance in entries:
        if x > indent and x + advance > width:
            x, line = indent, line + 1
        places.append((line, x))
        x += advance
    lines = line + 1
    strip = Image.new("RGB", (width, line_height * 2 * lines + 6), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for row, (title, colors) in enumerate((("truth", TRUTH_COLORS), ("prediction", PREDICTION_COLORS))):
        top = 3 + row * line_height * lines
        draw.text((4, top), f"{title}:", fill=(255, 255, 255), font=font)
        for i, (name, (line, x)) in enumerate(zip(class_names, places)):
            y = top + line * line_height
            draw.rectangle((x, y + 2, x + 10, y + 10), fill=colors[i % len(colors)])
            draw.text((x + 14, y), name, fill=(255, 255, 255), font=font)
    return strip


def render_overlay(
    image: torch.Tensor | np.ndarray,
    truth: np.ndarray | None,
    prediction: np.ndarray,
    class_names: Sequence[str],
    affine: torch.Tensor | np.ndarray | None = None,
) -> Image.Image:
    """The image with true (cool colours) and predicted (warm colours) contours of each class, and a legend.

    A 2D image gives one panel, oriented as image viewers show the file (its height as the rows). A 3D volume
    gives three panels, axial, coronal and sagittal, each through the slice along its axis that shows the most
    classes of the truth or prediction, then the most true foreground (predicted foreground when the truth is
    empty), in the middle of the slices equal in both; the volume is first reoriented to RAS with its affine
    and each panel has square pixels in millimetres, shown radiologically (patient's right on the left).

    Args:
        image: channel-first image (C, *spatial); 3 channels are shown as RGB, otherwise the first channel in grey.
            2D images are (C, width, height), as MONAI's readers of 2D files (``PILReader``, ``Image2DReader``)
            give them.
        truth: integer label map (*spatial), or ``None`` when there is no reference.
        prediction: integer label map (*spatial) on the same grid.
        class_names: names of labels 1, 2, ... (the legend).
        affine: the grid's affine (3D); ``None`` means identity.

    Example::

        >>> picture = render_overlay(np.random.rand(3, 80, 64), labels, predicted, ["lesion"])  # doctest: +SKIP
        >>> picture.save("case_overlay.png")  # doctest: +SKIP
    """
    image = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    if truth is None:
        truth = np.zeros_like(prediction)
    if truth.shape != prediction.shape or image.shape[1:] != prediction.shape:
        raise ValueError(
            f"image {image.shape[1:]}, truth {truth.shape} and prediction {prediction.shape} are not on one grid."
        )
    num_classes = len(class_names)
    if prediction.ndim == 2:
        # the arrays are width first, as MONAI's 2D readers give them; a picture has its rows first
        image, truth, prediction = image.swapaxes(1, 2), truth.T, prediction.T
        panels = [_panel(_display_intensity(image), truth, prediction, (1.0, 1.0), num_classes)]
    elif prediction.ndim == 3:
        affine_t = torch.as_tensor(np.eye(4) if affine is None else np.asarray(affine), dtype=torch.float64)
        orient = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
        image_ras, truth_ras, prediction_ras = (
            orient(MetaTensor(torch.as_tensor(np.ascontiguousarray(a)), affine=affine_t))
            for a in (image, truth[None], prediction[None])
        )
        spacing = [float(s) for s in affine_to_spacing(image_ras.affine, r=3)]
        views = _views_3d(
            np.moveaxis(image_ras.numpy(), 0, -1), truth_ras.numpy()[0], prediction_ras.numpy()[0], spacing
        )
        panels = [
            _panel(_display_intensity(np.moveaxis(img, -1, 0)), t, p, size, num_classes) for img, t, p, size in views
        ]
    else:
        raise ValueError(f"overlays are drawn for 2D or 3D images, got {prediction.ndim} spatial dimensions.")
    width = sum(p.width for p in panels) + 4 * (len(panels) - 1)
    height = max(p.height for p in panels)
    legend = _legend(width, class_names)
    # a narrow image (a thin strip, a tall slice) gets the legend's width, so that the key stays readable
    picture = Image.new("RGB", (legend.width, height + legend.height), (0, 0, 0))
    x = 0
    for panel in panels:
        picture.paste(panel, (x, 0))
        x += panel.width + 4
    picture.paste(legend, (0, height))
    return picture
