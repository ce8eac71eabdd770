"""Generate synthetic brain-like MR studies with thin folded tissue classes, in the MSD layout.

Each case is a T1-like volume of a skull-stripped "brain": a white-matter core whose surface is folded into gyri,
a thin grey-matter ribbon (about 2.5 mm) that follows the folds, and cerebrospinal fluid that fills the sulci,
surrounds the brain and forms two ventricles; labels 0 background, 1 CSF, 2 grey matter, 3 white matter. It has
what makes real MR tissue segmentation hard: partial volume (intensities averaged over 2x2x2 sub-voxels, labels
from the voxel centre), a smooth multiplicative bias field, Rician noise, an arbitrary intensity scale per study
(so only per-image normalisation works), 1 mm voxels. The folder holds ``dataset.json`` (``"modality": {"0":
"MR"}``), ``imagesTr/``, ``labelsTr/`` and ``imagesTs/``. ``--sequences T1 T2`` (or ``FLAIR``) images each study in
several sequences, one channel each in a 4D NIfTI, as the Decathlon stores its multi-modal tasks.

Example::

    monai-unets demo-mr --output-dir data/demo_mr --num-cases 8
    monai-unets demo-mr --output-dir data/demo_mr2 --sequences T1 T2
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .cli import run_tool
from .phantom_dataset import add_phantom_arguments, write_phantom_dataset

__all__ = ["SEQUENCES", "add_arguments", "generate_demo_mr", "make_mr_phantom", "run"]

#: Mean intensities of CSF, grey and white matter in each sequence :func:`make_mr_phantom` images, before bias
#: field, noise and scaling: T1-weighted (white matter brightest), T2-weighted (CSF brightest) and FLAIR (CSF dark,
#: grey matter brighter than white).
SEQUENCES = {"T1": (0.25, 0.62, 1.0), "T2": (1.0, 0.70, 0.45), "FLAIR": (0.08, 0.75, 0.55)}


def _folds(directions: np.ndarray, rng: np.random.Generator, waves: int = 12) -> np.ndarray:
    """A smooth random folding pattern on the unit sphere, about -1..1, of random plane waves of 5-9 cycles."""
    field = np.zeros(directions.shape[:-1])
    for _ in range(waves):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        field += np.cos(rng.uniform(5, 9) * np.pi * (directions @ axis) + rng.uniform(0, 2 * np.pi))
    return field / np.sqrt(waves / 2)


def make_mr_phantom(
    shape: Sequence[int] = (80, 80, 72),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    sequences: Sequence[str] = ("T1",),
) -> tuple[np.ndarray, np.ndarray]:
    """One brain-like MR volume (float32) and its label map (uint8: 0 background, 1 CSF, 2 grey, 3 white matter).

    Args:
        shape: voxels along x, y, z.
        spacing: voxel size in mm; anatomy is sized in mm.
        seed: seed of the anatomy, bias field, noise and intensity scale.
        sequences: the sequences imaged (names of :data:`SEQUENCES`): one gives a volume (x, y, z), several a
            multi-modal study (x, y, z, sequence) of one anatomy and coil bias, each sequence with its own noise
            and intensity scale. The first sequence's volume is the same whatever follows it.

    Example::

        >>> image, label = make_mr_phantom((40, 40, 36), seed=1)
        >>> image.shape, sorted(set(label.ravel().tolist()))
        ((40, 40, 36), [0, 1, 2, 3])
        >>> make_mr_phantom((40, 40, 36), seed=1, sequences=("T1", "T2"))[0].shape
        (40, 40, 36, 2)
    """
    unknown = [name for name in sequences if name not in SEQUENCES]
    if unknown or not sequences:
        raise ValueError(f"sequences must be some of {', '.join(SEQUENCES)}; got {list(sequences)}")
    rng = np.random.default_rng(seed)
    shape, spacing = tuple(int(s) for s in shape), np.asarray(spacing, dtype=float)
    extent = np.asarray(shape) * spacing
    # sub-voxel grid (2 per axis) for partial volume; coordinates in mm from the volume centre
    axes = [(np.arange(2 * n) + 0.5) / 2 * s - e / 2 for n, s, e in zip(shape, spacing, extent)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radii = extent / 2 * rng.uniform(0.78, 0.86, 3)  # brain ellipsoid, leaving a margin
    centre = rng.uniform(-0.03, 0.03, 3) * extent
    u = np.stack([(x - centre[0]) / radii[0], (y - centre[1]) / radii[1], (z - centre[2]) / radii[2]], -1)
    r = np.linalg.norm(u, axis=-1)
    directions = u / np.maximum(r, 1e-6)[..., None]
    scale = float(radii.mean())  # mm per unit of the normalised radius
    thickness, outer_csf = 2.5 / scale, 2.0 / scale
    white_surface = 0.72 + 0.09 * _folds(directions, rng)
    label = np.zeros(r.shape, dtype=np.uint8)
    label[r < 0.72 + 0.09 * 2.2 + thickness + outer_csf] = 1
    label[r < white_surface + thickness] = 2
    label[r < white_surface] = 3
    for side in (-1, 1):  # two ventricles beside the midline
        v = ((u[..., 0] - side * 0.14) / 0.09) ** 2 + (u[..., 1] / 0.35) ** 2 + ((u[..., 2] - 0.05) / 0.16) ** 2
        label[v < 1] = 1
    coarse = [c[::2, ::2, ::2] / (e / 2) for c, e in zip((x, y, z), extent)]
    # the coil's bias field, the same for every sequence of the study
    bias = np.exp(sum(rng.uniform(-0.2, 0.2) * c for c in coarse) + rng.uniform(-0.1, 0.1) * coarse[0] * coarse[1])
    volumes = []
    for name in sequences:
        intensity = np.zeros(label.shape)
        for value, mean in enumerate(SEQUENCES[name], start=1):
            intensity[label == value] = mean
        # partial volume: average the 8 sub-voxels; the label is the tissue at the voxel centre's nearest sub-voxel
        image = intensity.reshape(shape[0], 2, shape[1], 2, shape[2], 2).mean(axis=(1, 3, 5))
        brain = image > 0
        sigma = 0.03
        noisy = np.sqrt((image * bias + rng.normal(0, sigma, shape)) ** 2 + rng.normal(0, sigma, shape) ** 2)
        volumes.append(np.where(brain, noisy, 0.0) * rng.uniform(200, 2000))  # no absolute scale, as in MR
    image = volumes[0] if len(volumes) == 1 else np.stack(volumes, axis=-1)
    return image.astype(np.float32), label[::2, ::2, ::2]


def generate_demo_mr(
    output_dir: str | Path,
    num_cases: int = 8,
    num_test: int = 2,
    shape: Sequence[int] = (80, 80, 72),
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    modality: bool = True,
    sequences: Sequence[str] = ("T1",),
) -> Path:
    """Write ``num_cases`` labelled phantoms (imagesTr/labelsTr) and ``num_test`` unlabelled ones (imagesTs).

    The volumes are RAS, centred on the world origin; case ``i`` is :func:`make_mr_phantom` of seed
    ``seed * 1000 + i``, the test cases numbered on from the labelled ones (``brain_<i:03d>.nii.gz``).

    Args:
        output_dir: the dataset folder, created where missing (see :func:`write_phantom_dataset`).
        num_cases: labelled cases.
        num_test: unlabelled test cases.
        shape: voxels along x, y and z.
        spacing: voxel size in mm along x, y and z; the anatomy is sized in mm.
        seed: seed of the dataset.
        modality: record the modality in ``dataset.json`` (``{"0": "MR"}``; with several sequences their names,
            ``{"0": "T1", "1": "T2"}``); without it a planner has to tell the modality from the intensities.
        sequences: the sequences of each study (names of :data:`SEQUENCES`); several make each image a 4D NIfTI
            of one channel per sequence, as the Decathlon's multi-modal tasks are stored.

    Returns:
        the path of ``dataset.json``.

    Example::

        >>> generate_demo_mr("data/demo_mr", num_cases=4)  # doctest: +SKIP
        PosixPath('data/demo_mr/dataset.json')
    """
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) * np.asarray(spacing) / 2
    names = {"0": "MR"} if tuple(sequences) == ("T1",) else {str(c): name for c, name in enumerate(sequences)}
    header = {
        "name": "DemoMR",
        "description": f"synthetic brain-like {', '.join(sequences)} MR phantoms with folded grey matter",
        **({"modality": names} if modality else {}),
        "labels": {"0": "background", "1": "csf", "2": "grey_matter", "3": "white_matter"},
    }
    make = functools.partial(make_mr_phantom, sequences=tuple(sequences))
    return write_phantom_dataset(output_dir, make, "brain", header, affine, num_cases, num_test, shape, spacing, seed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_phantom_arguments(parser, "demo_mr", shape=(80, 80, 72), spacing=(1.0, 1.0, 1.0))
    parser.add_argument(
        "--sequences",
        nargs="+",
        choices=list(SEQUENCES),
        default=["T1"],
        help="the sequences of each study; several make multi-modal 4D NIfTI images (default: T1)",
    )


def run(args: argparse.Namespace) -> int:
    path = generate_demo_mr(
        args.output_dir, args.num_cases, args.num_test, args.shape, args.spacing, args.seed, sequences=args.sequences
    )
    print(f"{path}: {args.num_cases} labelled and {args.num_test} test MR phantoms ({', '.join(args.sequences)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.demo_mr``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
