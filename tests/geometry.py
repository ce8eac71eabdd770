"""Shared geometry for the tests: random image grids, and checks that an image sits where it should in the world.

An image "sits where it should" when every one of its voxels, taken to world coordinates (mm) through its affine,
lands on a voxel of the reference grid holding the same value. That fails on a flip, a permutation or a shift of
any axis by one voxel, whatever the array order a reader chose. Blob centroids in millimetres are compared as well,
which is what a user would notice.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """A voxel grid in LPS: ``point(i, j, k) = origin + direction @ (spacing * (i, j, k))``."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    direction: np.ndarray  # columns: the x, y, z axis directions (LPS), orthonormal
    origin: tuple[float, float, float]

    def lps_affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = self.direction @ np.diag(self.spacing)
        affine[:3, 3] = self.origin
        return affine

    def ras_affine(self) -> np.ndarray:
        return LPS_TO_RAS @ self.lps_affine()

    def blob(self, centre_fraction: tuple[float, float, float] = (0.3, 0.6, 0.7)) -> np.ndarray:
        """A boolean ellipsoid off the grid's centre (so that any flip moves it), about a quarter of each axis."""
        index = np.meshgrid(*[np.arange(n) for n in self.shape], indexing="ij")
        centre = [f * (n - 1) for f, n in zip(centre_fraction, self.shape)]
        radius = [max(n / 4, 1.0) for n in self.shape]
        return sum(((i - c) / r) ** 2 for i, c, r in zip(index, centre, radius)) <= 1.0


def rotation(a: float, b: float, c: float) -> np.ndarray:
    """The rotation by ``a``, ``b``, ``c`` radians about z, y and x."""
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


@st.composite
def directions(draw, oblique: bool | None = None) -> np.ndarray:
    """An orthonormal direction matrix: any of the 48 axis-aligned orientations (both handednesses), or an
    oblique rotation, possibly mirrored. Entries are rounded to 6 decimals as DICOM headers store them."""
    if oblique is None:
        oblique = draw(st.booleans())
    if oblique:
        angle = st.floats(-np.pi, np.pi, allow_nan=False)
        matrix = rotation(draw(angle), draw(angle), draw(angle))
    else:
        matrix = np.eye(3)[:, draw(st.permutations([0, 1, 2]))]
    signs = np.array([draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)])
    return as_stored(matrix * signs)


def as_stored(direction: np.ndarray) -> np.ndarray:
    """``direction`` rounded to the 6 decimals DICOM headers hold, then made orthonormal again."""
    u, _, vt = np.linalg.svd(np.round(direction, 6))
    return u @ vt


@st.composite
def grids(draw, min_size: int = 2, max_size: int = 9, oblique: bool | None = None) -> Grid:
    """Small grids with anisotropic spacing (0.3 to 4 mm, 0.01 mm steps) and an off-centre origin."""
    size = st.integers(min_size, max_size)
    spacing = st.integers(30, 400).map(lambda v: v / 100)
    origin = st.integers(-20000, 20000).map(lambda v: v / 100)
    return Grid(
        shape=(draw(size), draw(size), draw(size)),
        spacing=(draw(spacing), draw(spacing), draw(spacing)),
        direction=draw(directions(oblique)),
        origin=(draw(origin), draw(origin), draw(origin)),
    )


def world_centroid(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Centre of mass of ``mask`` in world millimetres (in the space of ``affine``)."""
    index = np.argwhere(mask).mean(axis=0)
    return (affine @ [*index, 1.0])[:3]


def assert_same_world(
    array: np.ndarray, affine: np.ndarray, reference: np.ndarray, reference_affine: np.ndarray, what: str = ""
) -> None:
    """Every voxel of ``array`` (at ``affine``) lies on the voxel of ``reference`` with the same value.

    Both affines map voxel indices to the same world space (both RAS or both LPS); the arrays may be in any axis
    order and direction. Fails on any flip, permutation or one-voxel shift.
    """
    array, reference = np.asarray(array), np.asarray(reference)
    assert sorted(array.shape) == sorted(reference.shape), f"{what}: shape {array.shape} vs {reference.shape}"
    index = np.stack(np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij"), -1).reshape(-1, 3)
    world = np.c_[index, np.ones(len(index))] @ np.asarray(affine, float).T
    target = (world @ np.linalg.inv(np.asarray(reference_affine, float)).T)[:, :3]
    rounded = np.round(target)
    error = float(np.abs(target - rounded).max())
    assert error < 1e-3, f"{what}: voxels fall {error:.3f} voxel off the reference grid"
    inside = np.all((rounded >= 0) & (rounded < reference.shape), axis=1)
    assert inside.all(), f"{what}: {int((~inside).sum())} voxels fall outside the reference grid"
    expected = reference[tuple(rounded.astype(int).T)]
    np.testing.assert_array_equal(array.reshape(-1), expected, err_msg=what)


def write_enhanced_ct(series: Path, path: Path) -> Path:
    """Converts the single-frame CT series in the folder ``series`` to one enhanced multi-frame file at ``path``.

    highdicom's legacy conversion records each frame's plane in the per-frame functional groups, as enhanced CT and
    MR files from scanners do.
    """
    import highdicom as hd
    import pydicom

    slices = [pydicom.dcmread(file) for file in sorted(Path(series).iterdir())]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom: attributes a legacy series cannot fill
        enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
            slices, series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(), instance_number=1
        )
    enhanced.save_as(path)
    return Path(path)
