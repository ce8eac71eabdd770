"""Generate a small synthetic dermoscopy-like skin-lesion dataset and its MONAI datalist.

Each RGB JPEG image shows shaded, noisy skin with a few thin dark hairs and one irregular brownish lesion;
its mask is a single-channel PNG (0 background, 255 lesion) of the same size. Image sizes vary and are never
square, like real dermoscopy photographs. The lesion is clearly darker than the skin, so a small network
learns it in a few epochs, while the shading, noise, hairs and blurred edges keep a fixed threshold from
being perfect. Files follow the ISIC naming style: ``images/demo_000.jpg`` and
``masks/demo_000_segmentation.png``; ``datalist.json`` is split like the ISIC data.

Example::

    monai-unets demo-data --output-dir data/demo --num-images 40
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .cli import UsageError, at_least, path_option, run_tool
from .datalist import (
    LabelledImage,
    PathLike,
    add_split_arguments,
    format_counts,
    split_train_val_test,
    write_datalist,
)

__all__ = ["add_arguments", "generate_demo_dataset", "main", "make_demo_sample", "run"]

# Below this the lesion geometry no longer fits, and the U-Nets' five poolings need at least 32 pixels.
_SMALLEST_SIDE = 32


def _check_sizes(min_size: int, max_size: int) -> None:
    # max_size > min_size also guarantees that a non-square size can be drawn.
    if min_size < _SMALLEST_SIDE or max_size <= min_size:
        raise ValueError(f"Need {_SMALLEST_SIDE} <= min_size < max_size, got min_size={min_size}, max_size={max_size}.")


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise that varies over about ``1 / cells`` of the image."""
    coarse = rng.normal(size=(cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


def _draw_hairs(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Coverage in [0, 1] of zero to four thin curved hairs."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 5))):
        start = rng.uniform((0, 0), (width, height))
        direction = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.0) * max(height, width)
        end = start + length * np.array([np.cos(direction), np.sin(direction)])
        # A quadratic Bezier curve through a sideways-shifted midpoint makes the hair bend.
        bend = rng.normal(0, 0.15 * length, 2)
        control = (start + end) / 2 + bend
        t = np.linspace(0, 1, 32)[:, None]
        points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        draw.line([tuple(point) for point in points], fill=255, width=int(rng.integers(1, 3)))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def make_demo_sample(
    rng: np.random.Generator, min_size: int = 96, max_size: int = 320
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic dermoscopy-like image and its lesion mask.

    The lesion boundary is star-shaped around a random centre: r(θ) = r0 · (1 + Σ a_k cos(kθ + φ_k)) over the
    harmonics k = 2..6 with random amplitudes and phases. Inside it the colour is a varied brown, darker
    towards the centre and mottled; its edge is blended over a few pixels while the mask keeps the exact contour.

    Args:
        rng: the random generator; the sample depends only on its state.
        min_size: smallest image side in pixels, at least 32.
        max_size: largest image side in pixels, more than ``min_size``.

    Returns:
        The image, ``uint8`` of shape (height, width, 3), and the mask, ``uint8`` of shape (height, width)
        with values 0 and 255; height differs from width.

    Raises:
        ValueError: if the sizes are out of range.

    Example::

        >>> image, mask = make_demo_sample(np.random.default_rng(0))
        >>> image.shape[:2] == mask.shape, image.shape[0] != image.shape[1]
        (True, True)
    """
    _check_sizes(min_size, max_size)
    height = int(rng.integers(min_size, max_size + 1))
    width = height
    while width == height:
        width = int(rng.integers(min_size, max_size + 1))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # Skin: a varied tone under a one-sided illumination gradient and the darker rim of a dermatoscope's field.
    skin = np.array([222.0, 176.0, 150.0]) + rng.normal(0, 10, 3)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - width / 2) * np.cos(direction) + (yy - height / 2) * np.sin(direction)) / max(height, width)
    rim = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    shading = 1 + rng.uniform(0.1, 0.3) * ramp - rng.uniform(0.03, 0.12) * rim
    shading += 0.03 * _smooth_noise(rng, height, width, cells=5)
    background = skin * shading[..., None]

    # Lesion: amplitudes a_k <= 0.35 / k keep r(θ) between about 0.5 r0 and 1.5 r0, so it stays inside the image.
    r0 = rng.uniform(0.12, 0.28) * min(height, width)
    orders = np.arange(2, 7)
    amplitudes = rng.uniform(0, 0.35, orders.size) / orders
    phases = rng.uniform(0, 2 * np.pi, orders.size)
    margin = r0 * (1 + amplitudes.sum()) + 1
    centre_y = rng.uniform(margin, height - margin)
    centre_x = rng.uniform(margin, width - margin)
    distance = np.hypot(yy - centre_y, xx - centre_x)
    angle = np.arctan2(yy - centre_y, xx - centre_x)
    boundary = r0 * (1 + (amplitudes * np.cos(orders * angle[..., None] + phases)).sum(axis=-1))
    mask = distance <= boundary

    depth = np.clip(1 - distance / boundary, 0, 1)
    # One brightness factor plus a little per-channel jitter keeps the hue brown while varying the shade.
    brown = np.array([128.0, 82.0, 62.0]) * rng.uniform(0.8, 1.15) + rng.normal(0, 5, 3)
    texture = 1 + 0.12 * _smooth_noise(rng, height, width, cells=8)
    lesion = brown * ((1 - 0.35 * depth) * texture)[..., None]
    edge_width = rng.uniform(1.5, 4.0)
    coverage = np.clip((boundary - distance) / edge_width + 0.5, 0, 1) * rng.uniform(0.85, 1.0)
    image = background * (1 - coverage[..., None]) + lesion * coverage[..., None]

    hair = 0.85 * _draw_hairs(rng, height, width)[..., None]
    image = image * (1 - hair) + np.array([45.0, 32.0, 26.0]) * hair
    image += rng.normal(0, 6, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def generate_demo_dataset(
    output_dir: PathLike,
    num_images: int = 40,
    seed: int = 0,
    min_size: int = 96,
    max_size: int = 320,
    *,
    train_fraction: float = 0.7,
    val_fraction: float = 0.1,
) -> Path:
    """Write a synthetic dermoscopy-like dataset and its datalist to ``output_dir``.

    Writes ``images/demo_<i>.jpg``, ``masks/demo_<i>_segmentation.png`` and ``datalist.json`` (paths relative
    to ``output_dir``), split with the same helper and defaults as ``prepare-isic``. Image ``i`` depends only
    on ``seed`` and ``i``, so a given seed always gives the same arrays (hence the same mask bytes).

    Args:
        output_dir: folder to write to; created if missing, existing files of the same names are replaced.
        num_images: number of image/mask pairs, at least 3.
        seed: non-negative seed of the images and of the split.
        min_size: smallest image side in pixels, at least 32.
        max_size: largest image side in pixels, more than ``min_size``.
        train_fraction: fraction of the pairs used for training (including validation).
        val_fraction: fraction of the training pairs held out for validation.

    Returns:
        The path of ``datalist.json``.

    Raises:
        ValueError: if the sizes are out of range or there are too few images to split.

    Example::

        >>> datalist = generate_demo_dataset("data/demo", num_images=40, seed=0)  # doctest: +SKIP
        >>> datalist.name  # doctest: +SKIP
        'datalist.json'
    """
    _check_sizes(min_size, max_size)
    if num_images < 3:
        raise ValueError(f"num_images must be at least 3 to fill training, validation and test, got {num_images}.")
    output_dir = Path(output_dir)
    image_dir, mask_dir = output_dir / "images", output_dir / "masks"
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(num_images - 1)))
    samples = []
    for index in range(num_images):
        image, mask = make_demo_sample(np.random.default_rng([seed, index]), min_size, max_size)
        name = f"demo_{index:0{digits}d}"
        sample = LabelledImage(name, image_dir / f"{name}.jpg", mask_dir / f"{name}_segmentation.png")
        Image.fromarray(image).save(sample.image, quality=90)
        Image.fromarray(mask).save(sample.label)
        samples.append(sample)

    splits = split_train_val_test(samples, train_fraction, val_fraction, seed)
    return write_datalist(
        splits,
        output_dir / "datalist.json",
        description=(
            f"Synthetic dermoscopy-like demo data from monai_unets.scripts.demo_data (seed {seed}): {num_images} "
            f"RGB images with sides {min_size}-{max_size} px and 0/255 lesion masks."
        ),
        seed=seed,
        extra={"train_fraction": train_fraction, "val_fraction": val_fraction},
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo-data`` options to a parser.

    Args:
        parser: the parser or subcommand parser to extend.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> parser.parse_args([]).num_images
        40
    """
    parser.add_argument(
        "--output-dir",
        type=path_option,
        default="demo_data",
        metavar="DIR",
        help="folder to write (default: %(default)s)",
    )
    # counts and sizes out of range are usage errors (exit status 2), as for demo-ct, before anything is written
    parser.add_argument(
        "--num-images", type=at_least(int, 3), default=40, help="number of images, 3 or more (default: %(default)s)"
    )
    parser.add_argument(
        "--min-size",
        type=at_least(int, _SMALLEST_SIDE),
        default=96,
        help=f"smallest image side in pixels, {_SMALLEST_SIDE} or more (default: %(default)s)",
    )
    parser.add_argument(
        "--max-size", type=int, default=320, help="largest image side in pixels, > --min-size (default: %(default)s)"
    )
    add_split_arguments(
        parser, seed=0, seed_help="seed of the images and the split", samples="images", train_fraction=0.7
    )


def run(args: argparse.Namespace) -> int:
    """Run ``demo-data`` with parsed arguments and print the summary line.

    Args:
        args: the namespace parsed by a parser set up with :func:`add_arguments`.

    Returns:
        The exit status (0).

    Raises:
        UsageError: ``--max-size`` is not above ``--min-size`` (exit status 2).

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_arguments(parser)
        >>> run(parser.parse_args(["--output-dir", "demo"]))  # doctest: +SKIP
        0
    """
    if args.max_size <= args.min_size:
        raise UsageError(f"--max-size must be above --min-size ({args.min_size}), got {args.max_size}.")
    datalist = generate_demo_dataset(
        args.output_dir,
        args.num_images,
        args.seed,
        args.min_size,
        args.max_size,
        train_fraction=args.train_fraction,
        val_fraction=args.val_fraction,
    )
    # The datalist holds the three lists under their keys, which is all format_counts needs.
    content = json.loads(datalist.read_text(encoding="utf-8"))
    print(f"{datalist}: {args.num_images} synthetic images -> {format_counts(content)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.demo_data``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
