"""Synthetic 3D phantoms written as a Medical Segmentation Decathlon task, shared by ``demo-ct`` and ``demo-mr``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..data.atomic import atomic_open
from .cli import at_least, path_option

__all__ = ["add_phantom_arguments", "write_phantom_dataset"]

#: a phantom maker: (shape, spacing, seed) -> (image, label)
PhantomMaker = Callable[[Sequence[int], Sequence[float], int], "tuple[np.ndarray, np.ndarray]"]


def write_phantom_dataset(
    output_dir: str | Path,
    make_phantom: PhantomMaker,
    prefix: str,
    header: Mapping[str, Any],
    affine: np.ndarray,
    num_cases: int,
    num_test: int,
    shape: Sequence[int],
    spacing: Sequence[float],
    seed: int = 0,
    on_test_case: Callable[[str, np.ndarray], None] | None = None,
) -> Path:
    """Write ``num_cases`` labelled phantoms (imagesTr/labelsTr), ``num_test`` unlabelled ones (imagesTs) and
    ``dataset.json`` (``header`` first: name, description, modality, labels).

    Args:
        output_dir: the dataset folder; it and its ``imagesTr``, ``labelsTr`` and ``imagesTs`` are created where
            missing. Files of the names written are replaced, other files left alone.
        make_phantom: makes case ``i``'s image and label from ``(shape, spacing, seed * 1000 + i)``.
        prefix: file names are ``<prefix>_<i:03d>.nii.gz``.
        header: the first entries of ``dataset.json``; ``numTraining``, ``numTest``, ``training`` and ``test``
            follow (and replace entries of those names).
        affine: the 4 x 4 voxel-to-world affine (RAS, mm, as NIfTI stores it) of every image and label; it
            should agree with ``spacing``, which only ``make_phantom`` is given.
        num_cases: labelled cases, ``i`` = 0 .. ``num_cases`` - 1.
        num_test: unlabelled test cases, numbered on from the labelled ones.
        shape: voxels per axis of every case, for ``make_phantom``.
        spacing: voxel size (mm) per axis, for ``make_phantom``.
        seed: seed of the dataset: case ``i`` is made with ``seed * 1000 + i``.
        on_test_case: called with each test case's name (no extension) and image, e.g. to write it as DICOM too.

    Returns:
        the path of ``dataset.json``.

    Example::

        >>> header = {"name": "Demo", "labels": {"0": "background", "1": "csf"}}
        >>> write_phantom_dataset("demo", make_mr_phantom, "b", header, affine, 4, 1, shape, spacing)  # doctest: +SKIP
        PosixPath('demo/dataset.json')
    """
    out = Path(output_dir)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    training, test = [], []
    for i in range(num_cases + num_test):
        image, label = make_phantom(shape, spacing, seed * 1000 + i)
        stem = f"{prefix}_{i:03d}"
        name = f"{stem}.nii.gz"
        if i < num_cases:
            nib.save(nib.Nifti1Image(image, affine), out / "imagesTr" / name)
            nib.save(nib.Nifti1Image(label, affine), out / "labelsTr" / name)
            training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        else:
            nib.save(nib.Nifti1Image(image, affine), out / "imagesTs" / name)
            test.append(f"./imagesTs/{name}")
            if on_test_case is not None:
                on_test_case(stem, image)
    dataset = {**header, "numTraining": len(training), "numTest": len(test), "training": training, "test": test}
    path = out / "dataset.json"
    with atomic_open(path) as f:
        f.write(json.dumps(dataset, indent=2))
    return path


def add_phantom_arguments(
    parser: argparse.ArgumentParser, output_dir: str, shape: Sequence[int], spacing: Sequence[float]
) -> None:
    """The options every phantom tool takes, with the tool's own defaults.

    Counts, sizes and spacings out of range are usage errors of argparse (exit status 2), before anything is
    written: a dataset without training cases, volumes of no voxels, or a spacing that makes no affine.

    Example::

        >>> parser = argparse.ArgumentParser()
        >>> add_phantom_arguments(parser, "demo_ct", shape=(64, 56, 40), spacing=(0.9, 0.9, 2.5))
        >>> parser.parse_args(["--num-test", "0"]).num_test
        0
    """
    parser.add_argument(
        "--output-dir",
        type=path_option,
        default=output_dir,
        metavar="DIR",
        help="folder to write (default: %(default)s)",
    )
    parser.add_argument("--num-cases", type=at_least(int, 1), default=8, help="labelled cases (default: %(default)s)")
    parser.add_argument(
        "--num-test", type=at_least(int, 0), default=2, help="unlabelled test cases (default: %(default)s)"
    )
    parser.add_argument(
        "--shape", type=at_least(int, 1), nargs=3, default=list(shape), help="voxels (default: %(default)s)"
    )
    parser.add_argument(
        "--spacing",
        type=at_least(float, 0, above=True),
        nargs=3,
        default=list(spacing),
        help="mm (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
