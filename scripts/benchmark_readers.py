"""Time reading a DICOM series and a NIfTI volume: MedicalImageReader against MONAI's ITKReader and SimpleITK.

A synthetic CT (``--slices`` slices of ``--size`` x ``--size`` pixels, int16 with a rescale intercept) is written
once as a DICOM series and as a NIfTI file. Each round reads it with every reader, in a rotating order, and
takes each reader's time as a ratio to SimpleITK's time in the same round; the medians of these paired ratios
are reported, since on a shared machine the absolute times drift between rounds. Every reader's array is
checked against SimpleITK's (values and world geometry) before anything is timed. Each reading ends with the
``(x, y, z)`` array in C order, as MONAI's ``LoadImage`` makes every reader's array before a pipeline gets it:
for a transposed view (SimpleITK's, ITK's) that copy is part of reading it.

Example::

    python -m monai_unets.scripts.benchmark_readers --slices 300 --rounds 7
    python -m monai_unets.scripts.benchmark_readers --quick

The benchmark suite runs it as its ``readers`` section (:func:`readers_section`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cli import at_least, path_option, run_tool

if TYPE_CHECKING:
    from .benchmark import BenchmarkOptions, BenchmarkSection

__all__ = ["add_arguments", "benchmark_readers", "main", "read_with_simpleitk", "readers_section", "run"]

_SPACING = (0.75, 0.75, 1.5)
_ORIGIN = (-180.0, -200.0, -300.0)


def _write_inputs(folder: Path, size: int, slices: int) -> tuple[Path, Path]:
    import nibabel as nib

    from .demo_ct import lps_geometry_affine, write_dicom_series

    rng = np.random.default_rng(0)
    volume = rng.integers(-1024, 2000, size=(size, size, slices), dtype=np.int16)
    series = write_dicom_series(volume, folder / "series", _SPACING, _ORIGIN).folder
    nifti = folder / "volume.nii.gz"
    nib.save(nib.Nifti1Image(volume, lps_geometry_affine(_SPACING, _ORIGIN, np.eye(3))), str(nifti))
    return series, nifti


def read_with_simpleitk(path: str | Path) -> tuple[np.ndarray, np.ndarray, Any]:
    """SimpleITK's reading of an image file or a DICOM series folder (GDCM's series sorting), the reference.

    Args:
        path: an image file or a folder holding one DICOM series.

    Returns:
        the ``(x, y, z)`` array (a view), the voxel-to-LPS affine, and the SimpleITK image, which must be kept
        while the array is used.

    Example::

        >>> array, affine, image = read_with_simpleitk("ct_series/")  # doctest: +SKIP
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.is_dir():
        image = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path)))
    else:
        image = sitk.ReadImage(str(path))
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayViewFromImage(image).T, affine, image


def _readers(path: Path) -> dict[str, Callable[[], tuple]]:
    """Each reader as a function returning ``(x, y, z) array, voxel-to-LPS affine, ...``."""
    from monai.data import ITKReader

    from ..data.medical_io import MedicalImageReader

    def monai_reader(reader: object) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        def read() -> tuple[np.ndarray, np.ndarray]:
            array, meta = reader.get_data(reader.read(str(path)))
            # RAS -> LPS
            return np.ascontiguousarray(array), np.diag([-1.0, -1.0, 1.0, 1.0]) @ meta["affine"]

        return read

    def simpleitk() -> tuple:
        array, affine, image = read_with_simpleitk(path)
        return np.ascontiguousarray(array), affine, image

    return {
        "simpleitk": simpleitk,
        "medical_image_reader": monai_reader(MedicalImageReader()),
        "monai_itk_reader": monai_reader(ITKReader()),
    }


def _compare(path: Path, readers: dict[str, Callable]) -> None:
    reference, reference_affine, *keep_alive = readers["simpleitk"]()
    for name, read in readers.items():
        array, affine, *_ = read()
        if array.shape != reference.shape or not np.array_equal(array, reference):
            raise AssertionError(f"{name} read {path} to other values than SimpleITK ({array.shape})")
        if not np.allclose(affine, reference_affine, atol=1e-4):
            raise AssertionError(f"{name} places {path} elsewhere than SimpleITK: {affine} vs {reference_affine}")


def _time_rounds(readers: dict[str, Callable], rounds: int) -> dict[str, dict[str, float]]:
    names = list(readers)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        # rotating the order spreads cache and frequency effects evenly over the readers
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            readers[name]()
            seconds[name].append(time.perf_counter() - start)
    base = np.asarray(seconds["simpleitk"])
    return {
        name: {
            "median_s": round(float(np.median(values)), 4),
            "ratio_to_simpleitk": round(float(np.median(np.asarray(values) / base)), 3),
        }
        for name, values in seconds.items()
    }


def benchmark_readers(
    slices: int = 300, size: int = 512, rounds: int = 7, workdir: str | Path | None = None, quick: bool = False
) -> dict:
    """Read a synthetic DICOM series and NIfTI volume with each reader and compare the times.

    Args:
        slices: slices of the series (and depth of the NIfTI volume).
        size: rows and columns of each slice.
        rounds: timed rounds after one untimed warm-up; medians of the per-round ratios are reported.
        workdir: where the inputs are written (made if needed; a temporary folder, removed afterwards, by default).
        quick: a correctness run on a small volume (12 slices of 32 x 32, one round); its times mean nothing.

    Returns:
        ``{"dicom_series": {...}, "nifti": {...}, "shape": [...]}`` with, per reader, the median seconds and the
        median ratio to SimpleITK.

    Example::

        >>> benchmark_readers(quick=True)["dicom_series"]["medical_image_reader"]  # doctest: +SKIP
        {'median_s': 0.01, 'ratio_to_simpleitk': 1.02}
    """
    if quick:
        slices, size, rounds = 12, 32, 1
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        series, nifti = _write_inputs(Path(tmp), size, slices)
        result: dict = {"shape": [size, size, slices], "rounds": rounds}
        for key, path in (("dicom_series", series), ("nifti", nifti)):
            readers = _readers(path)
            _compare(path, readers)  # also the warm-up round
            result[key] = _time_rounds(readers, rounds)
    return result


def readers_section(options: BenchmarkOptions) -> BenchmarkSection:
    """The benchmark suite's ``readers`` section: a 300-slice 512 x 512 series and NIfTI volume, one row per reader."""
    from .benchmark import BenchmarkSection

    result = benchmark_readers(rounds=max(3, options.repeats // 2), quick=options.quick)
    shape = "x".join(map(str, result["shape"]))
    rows = [
        {"input": f"{kind.replace('_', ' ')} {shape}", "reader": reader, **figures}
        for kind in ("dicom_series", "nifti")
        for reader, figures in result[kind].items()
    ]
    return BenchmarkSection(
        "Reading a CT: DICOM series and NIfTI",
        rows,
        [
            "medical_image_reader: the bundles' MedicalImageReader; monai_itk_reader: MONAI's ITKReader; simpleitk: "
            "SimpleITK's ImageSeriesReader / ReadImage. Each checked against SimpleITK's values and geometry "
            f"first; ratios are medians of per-round ratios over {result['rounds']} rounds in rotating order. "
            "Each reading ends with the array in C order, as MONAI's LoadImage hands it on.",
        ],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--slices", type=at_least(int, 2), default=300, help="slices of the series (default: %(default)s)"
    )
    parser.add_argument(
        "--size", type=at_least(int, 1), default=512, help="rows and columns per slice (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=at_least(int, 1), default=7, help="timed rounds (default: %(default)s)")
    parser.add_argument(
        "--workdir", type=path_option, default=None, help="folder for the generated inputs (default: a temp folder)"
    )
    parser.add_argument("--quick", action="store_true", help="small correctness run; times mean nothing")


def run(args: argparse.Namespace) -> int:
    print(json.dumps(benchmark_readers(args.slices, args.size, args.rounds, args.workdir, args.quick)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool as ``python -m monai_unets.scripts.benchmark_readers``; returns the exit status."""
    return run_tool(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
