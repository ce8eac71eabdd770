"""Spatial transforms: resampling that stays exact and fast on whole CT volumes, and usable inside MONAI Label."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import USE_COMPILED, KeysCollection
from monai.data import MetaTensor, get_track_meta
from monai.transforms import Invertd, InvertibleTransform, MapTransform, Orientation, Spacing, Spacingd, SpatialResample
from monai.utils import (
    TraceKeys,
    convert_to_dst_type,
    convert_to_tensor,
    ensure_tuple_rep,
    get_equivalent_dtype,
    get_torch_dtype_from_string,
)

from .label import ArgmaxLabel

__all__ = [
    "ResampleSpacingd",
    "ResampleSpacingD",
    "ResampleSpacingDict",
    "SeparableResample",
    "separable_resample",
    "InvertArgmaxd",
    "InvertArgmaxD",
    "InvertArgmaxDict",
]

# MONAI's tolerance for "this affine is the identity"; also used here for "this resampling is axis-aligned"
_AFFINE_TOL = 1e-4
# source indices closer than this to a whole voxel are taken as that voxel
_INDEX_TOL = 1e-6


def _axis_taps(
    n_out: int, scale: float, shift: float, n_in: int, mode: str, padding_mode: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (``lo``, ``hi``) and the weight of ``hi`` for each output index along one axis.

    With ``"zeros"`` padding the indices address the axis padded by one zero slice at each end.
    """
    source = torch.arange(n_out, dtype=torch.float64) * scale + shift
    # an index that the affines' rounding puts a hair off a voxel is that voxel: a weight of 1e-15 on a neighbour
    # would leak its class scores into the all-zero margin that Invertd pads around a crop
    nearest_voxel = torch.round(source)
    source = torch.where((source - nearest_voxel).abs() < _INDEX_TOL, nearest_voxel, source)
    if padding_mode == "border":
        source = source.clamp(0, n_in - 1)
        last, offset = n_in - 1, 0
    else:
        last, offset = n_in + 1, 1
    if mode == "nearest":
        # an exact tie (every other voxel of a 2x upsampling) goes up, so each input voxel covers the same number
        # of output voxels; grid_sample's float32 grid breaks such ties either way, by rounding noise
        nearest = torch.floor(source + 0.5) + offset
        nearest = torch.where((nearest < offset) | (nearest > n_in - 1 + offset), 0, nearest)
        return nearest.long(), nearest.long(), torch.zeros(n_out, dtype=torch.float64)
    lo = torch.floor(source)
    weight = source - lo
    lo = lo + offset
    return lo.clamp(0, last).long(), (lo + 1).clamp(0, last).long(), weight


def _source_axes(linear: torch.Tensor) -> list[int] | None:
    """For a voxel-to-voxel map whose every output axis runs along one input axis, the input axis of each.

    ``None`` when the map mixes axes (a rotation, a shear) or collapses one.
    """
    rank = linear.shape[0]
    axes = linear.abs().argmax(dim=0).tolist()
    off_axis = linear.clone()
    off_axis[axes, list(range(rank))] = 0.0
    if sorted(axes) != list(range(rank)) or bool(off_axis.abs().max() > _AFFINE_TOL):
        return None
    if any(abs(float(linear[a, o])) <= _AFFINE_TOL for o, a in enumerate(axes)):
        return None
    return axes


def _pass_order(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[int, ...]:
    """The order of axes that moves the fewest values; gathers along the innermost axis cost about 3 times more."""

    def cost(order: tuple[int, ...]) -> float:
        shape, total = list(in_shape), 0.0
        for a in order:
            shape[a] = out_shape[a]
            total += math.prod(shape) * (3.0 if a == len(shape) - 1 else 1.0)
        return total

    return min(itertools.permutations(range(len(in_shape))), key=cost)


def separable_resample(
    image: torch.Tensor,
    scale: Sequence[float],
    shift: Sequence[float],
    spatial_size: Sequence[int],
    mode: str = "bilinear",
    padding_mode: str = "border",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Resample a channel-first image whose voxel grid maps axis by axis onto the input's, one axis at a time.

    Output voxel ``i`` along axis ``a`` samples the input at the continuous index ``scale[a] * i + shift[a]``,
    with ``torch.nn.functional.grid_sample``'s interpolation (``"bilinear"``, i.e. linear in each axis, or
    ``"nearest"``, an exact tie going to the higher index) and padding (``"border"`` or ``"zeros"``) with
    ``align_corners=False``. The result equals ``grid_sample``'s up to rounding, but needs no sampling grid: on a
    512 x 512 x 300 CT the grid alone is 3 floats per voxel, and building it takes longer than the interpolation.

    Args:
        image: ``(C, *spatial)`` tensor, 1 to 3 spatial axes; integer or floating point.
        scale: input voxels per output voxel, per axis; negative where the output runs against the input (a
            flip).
        shift: input index of output voxel 0, per axis.
        spatial_size: output spatial shape.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"border"`` or ``"zeros"``.
        dtype: floating-point type that ``"bilinear"`` interpolates in and returns; ``None`` for the image's own
            (which must then be floating point). An integer image (a CT as stored) is converted slab by slab
            as the first pass reads it: no floating-point copy of the whole input is made (on a 512 x 512 x 300
            CT that copy is 300 MiB, and in a fresh DataLoader worker, whose pages are all new, it took 1-2 s).
            ``"nearest"`` keeps the image's type.

    Example::

        >>> image = torch.arange(4.0).reshape(1, 4)
        >>> separable_resample(image, scale=[0.5], shift=[-0.25], spatial_size=[8])
        tensor([[0.0000, 0.2500, 0.7500, 1.2500, 1.7500, 2.2500, 2.7500, 3.0000]])
    """
    out = image
    last = image.ndim - 1
    dtype = dtype or image.dtype
    for a in _pass_order(image.shape[1:], spatial_size):
        dim = a + 1
        lo, hi, weight = _axis_taps(spatial_size[a], scale[a], shift[a], out.shape[dim], mode, padding_mode)
        if padding_mode == "zeros":
            pad = [0, 0] * (last - dim) + [1, 1]
            out = torch.nn.functional.pad(out, pad)
        if mode == "nearest":
            out = out[..., lo.to(out.device)] if dim == last else out.index_select(dim, lo.to(out.device))
        elif dim == last:
            # gathering along the innermost axis is slow in any form; the pass order puts it where the volume is small
            device = out.device
            out = torch.lerp(
                out[..., lo.to(device)].to(dtype), out[..., hi.to(device)].to(dtype), weight.to(device, dtype)
            )
        else:
            # slab by slab into the output: the two source slabs are views (converted on their own where the
            # input is not yet `dtype`), nothing but the result is written
            source = out
            shape = list(source.shape)
            shape[dim] = spatial_size[a]
            out = source.new_empty(shape, dtype=dtype)
            for i, (j, k, w) in enumerate(zip(lo.tolist(), hi.tolist(), weight.tolist())):
                torch.lerp(source.select(dim, j).to(dtype), source.select(dim, k).to(dtype), w, out=out.select(dim, i))
    return out


def _recorded_settings(transform: Mapping) -> dict:
    """The interpolation settings a recorded (or planned) resampling ran with, as keyword arguments for it."""
    info = transform[TraceKeys.EXTRA_INFO]
    align_corners = info["align_corners"]
    return {
        "mode": info["mode"],
        "padding_mode": info["padding_mode"],
        "align_corners": False if align_corners == TraceKeys.NONE else align_corners,
        "dtype": get_torch_dtype_from_string(info["dtype"]),
    }


class SeparableResample(SpatialResample):
    """MONAI's :class:`~monai.transforms.SpatialResample`, axis by axis where the resampling is axis-aligned.

    Resampling to a new spacing or orientation, and back from it, maps each output axis onto one input axis (in
    the same or the opposite direction). MONAI resamples such a case like any affine, through a dense sampling
    grid; this transform computes it with :func:`separable_resample`, several times faster on a whole CT and
    without the grid's memory. Outputs (up to float rounding, and to the side an exact ``"nearest"`` tie takes:
    the higher input index), affine and the recorded transform (so the inverse too) are ``SpatialResample``'s;
    rotations, spline orders, reflection padding, ``align_corners=True`` and lazy resampling go to
    ``SpatialResample`` unchanged. Arguments are ``SpatialResample``'s.

    Args:
        mode: ``"bilinear"`` (the default) or ``"nearest"``, which take the axis-by-axis path; a spline order 0-5
            (an integer) goes to ``SpatialResample``.
        padding_mode: the values outside the input: ``"border"`` (the default, the nearest edge value) or
            ``"zeros"`` take the axis-by-axis path, ``"reflection"`` goes to ``SpatialResample``.
        align_corners: ``False`` (the default) takes the axis-by-axis path; ``True`` goes to ``SpatialResample``.
        dtype: the precision of the interpolation (``float64`` by default, ``None`` the input's); the output is
            float32 either way.
        lazy: record the resampling for MONAI's lazy execution instead of running it, as ``SpatialResample`` does.

    Example::

        >>> resample = SeparableResample(mode="bilinear", dtype=torch.float32)
        >>> image = MetaTensor(torch.rand(1, 10, 10, 10), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
        >>> resample(image, dst_affine=torch.eye(4, dtype=torch.float64), spatial_size=(19, 19, 19)).shape
        torch.Size([1, 19, 19, 19])
    """

    def __call__(  # type: ignore[override]
        self,
        img: torch.Tensor,
        dst_affine: torch.Tensor | None = None,
        spatial_size: Sequence[int] | torch.Tensor | int | None = None,
        mode: str | int | None = None,
        padding_mode: str | None = None,
        align_corners: bool | None = None,
        dtype: torch.dtype | np.dtype | str | None = None,
        lazy: bool | None = None,
    ) -> torch.Tensor:
        args = (img, dst_affine, spatial_size, mode, padding_mode, align_corners, dtype, lazy)
        mode = self.mode if mode is None else mode
        padding_mode = self.padding_mode if padding_mode is None else padding_mode
        align_corners = self.align_corners if align_corners is None else align_corners
        dtype_pt = get_equivalent_dtype(dtype or self.dtype or img.dtype, torch.Tensor)
        mode, padding_mode = (str(getattr(m, "value", m)) for m in (mode, padding_mode))
        if (
            (self.lazy if lazy is None else lazy)
            or USE_COMPILED
            or not isinstance(img, MetaTensor)
            or img.pending_operations
            or dst_affine is None
            or spatial_size is None
            or isinstance(spatial_size, int)
            or mode not in ("bilinear", "nearest")
            or padding_mode not in ("border", "zeros")
            or align_corners
        ):
            return super().__call__(*args)
        rank = img.ndim - 1
        spatial_size = [int(s) for s in spatial_size]
        src_affine = img.affine.to(torch.float64)
        if len(spatial_size) != rank or rank > 3 or src_affine.shape[0] != rank + 1:
            return super().__call__(*args)
        dst = torch.as_tensor(dst_affine, dtype=torch.float64).cpu()
        xform = torch.linalg.solve(src_affine, dst)
        source_axes = _source_axes(xform[:rank, :rank])
        identity = bool(torch.allclose(xform, torch.eye(rank + 1, dtype=torch.float64), atol=_AFFINE_TOL))
        if identity or source_axes is None:
            # nothing to resample, or not axis-aligned: SpatialResample's own path
            return super().__call__(*args)
        extra_info = {
            "dtype": str(dtype_pt)[6:],
            "mode": mode,
            "padding_mode": padding_mode,
            "align_corners": align_corners if align_corners is not None else TraceKeys.NONE,
            "src_affine": src_affine,
        }
        # the same affine update and trace record as SpatialResample's, so that Invertd finds what it expects
        meta = self.track_transform_meta(
            img,
            sp_size=torch.tensor(spatial_size),
            affine=xform,
            extra_info=extra_info,
            orig_size=img.shape[1:],
            transform_info=self.get_transform_info(),
            lazy=False,
        )
        # the input's axes in the order of the output axes they map onto (a view): a flip is a negative scale
        data = img.as_tensor().permute(0, *(a + 1 for a in source_axes))
        scale = [float(xform[a, o]) for o, a in enumerate(source_axes)]
        shift = [float(xform[a, rank]) for a in source_axes]
        # bilinear: an integer image becomes `dtype_pt` as the first pass reads it, without a whole converted copy
        interpolated = dtype_pt if mode == "bilinear" else None
        data = separable_resample(data, scale, shift, spatial_size, mode, padding_mode, interpolated).to(torch.float32)
        out = convert_to_tensor(data, track_meta=get_track_meta())
        return out.copy_meta_from(meta) if isinstance(out, MetaTensor) else out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        # SpatialResample.inverse calls SpatialResample.__call__ by name, which would skip the axis-by-axis path
        transform = self.pop_transform(data)
        with self.trace_transform(False):
            return self(
                data,
                dst_affine=transform[TraceKeys.EXTRA_INFO]["src_affine"],
                spatial_size=transform[TraceKeys.ORIG_SIZE],
                **_recorded_settings(transform),
            )


class _ReorientedSpacing:
    """``Orientation(axcodes)`` followed by ``Spacing``, computed as one resampling of the input.

    The output grid and every setting are the ones the two MONAI transforms choose in turn (found by running
    them lazily, metadata only); the data then moves once, through ``spacing.sp_resample``, which records a
    single invertible operation. Where that is not exact (``"nearest"``, whose ties would fall on the other
    side of a flipped axis; lazy resampling; ``recompute_affine``), the two transforms run as they are.
    """

    def __init__(self, spacing: Spacing, axcodes: str, labels: Sequence[tuple[str, str]] | None) -> None:
        self.spacing = spacing
        self.orientation = Orientation(axcodes=axcodes, labels=labels, lazy=spacing.lazy)

    @property
    def lazy(self) -> bool:
        return self.spacing.lazy

    @lazy.setter
    def lazy(self, val: bool) -> None:
        self.spacing.lazy = self.orientation.lazy = val

    def __call__(self, data_array: torch.Tensor, lazy: bool | None = None, **kwargs) -> torch.Tensor:
        lazy_ = self.spacing.lazy if lazy is None else lazy
        mode = str(getattr(kwargs.get("mode"), "value", kwargs.get("mode")))
        if (
            lazy_
            or mode == "nearest"
            or self.spacing.recompute_affine
            or not isinstance(data_array, MetaTensor)
            or data_array.pending_operations
        ):
            return self.spacing(self.orientation(data_array, lazy=lazy_), lazy=lazy_, **kwargs)
        # the same tensor under a separate header: the lazy transforms only queue their operations on it
        probe = MetaTensor(data_array.as_tensor(), meta=dict(data_array.meta))
        probe = self.spacing(self.orientation(probe, lazy=True), lazy=True, **kwargs)
        return self.spacing.sp_resample(
            data_array,
            dst_affine=probe.peek_pending_affine(),
            spatial_size=probe.peek_pending_shape(),
            lazy=False,
            **_recorded_settings(probe.pending_operations[-1]),
        )

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        data = self.spacing.inverse(data)
        # the two transforms ran one after the other: the orientation has its own record
        if isinstance(data, MetaTensor) and data.applied_operations:
            if data.applied_operations[-1].get(TraceKeys.ID) == id(self.orientation):
                data = self.orientation.inverse(data)
        return data


class ResampleSpacingd(Spacingd):
    """MONAI's :class:`~monai.transforms.Spacingd`, resampling axis by axis, and safe inside MONAI Label.

    - Resampling and its inverse go through :class:`SeparableResample`: same outputs and metadata as
      ``Spacingd``'s, several times faster (on a 512 x 512 x 300 CT, ``Invertd`` of three class probabilities
      took longer than the network's sliding window through MONAI's sampling grid).
    - For NIfTI inputs, MONAI 1.6's ``Spacingd`` calls ``update`` on every entry whose name starts with
      ``<key>_``, assuming a meta dictionary. MONAI Label passes the study's path as ``image_path`` (a string),
      so ``Spacingd`` fails inside MONAI Label. This transform sets such entries aside while resampling and puts
      them back unchanged; those among its ``keys`` (``"image_t2"`` beside ``"image"``) are resampled.

    - With ``axcodes``, it first reorients as ``Orientationd(axcodes=axcodes, labels=labels)`` would, in the
      same resampling: the same output, but the data moves once and ``Invertd`` undoes both in one step (on a
      512 x 512 x 300 CT, flipping three class probabilities back cost as much as resampling them).

    Args:
        args: ``Spacingd``'s arguments.
        axcodes: the orientation to reorient to first (e.g. ``"RAS"``); ``None`` keeps the input's.
        labels: ``Orientation``'s names of the negative and positive end of each world axis; ``None``, as in
            ``Orientationd``: those of RAS, or of LPS for an image whose ``meta["space"]`` is LPS.
        kwargs: ``Spacingd``'s keyword arguments.

    Example::

        >>> resample = ResampleSpacingd(keys="image", pixdim=(1.5, 1.5, 2.0), axcodes="RAS")
        >>> data = {"image": image, "image_path": "/data/ct.nii.gz"}  # doctest: +SKIP
        >>> resample(data)["image_path"]  # doctest: +SKIP
        '/data/ct.nii.gz'
    """

    def __init__(
        self,
        *args,
        axcodes: str | None = None,
        labels: Sequence[tuple[str, str]] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        spacing = self.spacing_transform
        plain = spacing.sp_resample
        spacing.sp_resample = SeparableResample(
            mode=plain.mode,
            padding_mode=plain.padding_mode,
            align_corners=plain.align_corners,
            dtype=plain.dtype,
            lazy=plain.lazy,
        )
        self._pixdim = np.asarray(spacing.pixdim, dtype=float)
        if axcodes is not None:
            self.spacing_transform = _ReorientedSpacing(spacing, axcodes, labels)

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            _check_resampled_size(d[key], self._pixdim)
        prefixes = tuple(f"{key}_" for key in self.keys if isinstance(key, str))
        # a key of this transform is resampled, whatever its name (an "image_t2" beside "image")
        aside = {
            k: d.pop(k)
            for k in list(d)
            if isinstance(k, str) and k.startswith(prefixes) and k not in self.keys and not isinstance(d[k], dict)
        }
        out = super().__call__(d, lazy=lazy)
        out.update(aside)
        return out


ResampleSpacingD = ResampleSpacingDict = ResampleSpacingd

# a resampled volume above this many voxels and this many times its input's is refused: a header in the wrong unit
# (50 mm voxels) made a 48 x 40 x 24 study 1.3e9 voxels, which held a whole batch for over nine minutes
_MAX_RESAMPLED_VOXELS = 1 << 28
_MAX_RESAMPLED_GROWTH = 64


def _check_resampled_size(image: torch.Tensor, pixdim: np.ndarray) -> None:
    """Refuses to resample ``image`` to ``pixdim`` (mm) where that would blow it up (see ``_MAX_RESAMPLED_VOXELS``),
    naming its file, its spacing and the size it would take."""
    affine = getattr(image, "affine", None)
    rank = image.ndim - 1
    if affine is None or rank != len(pixdim):
        return
    spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:rank, :rank], axis=0)
    target = np.where(pixdim > 0, pixdim, spacing)  # MONAI keeps an axis's spacing where pixdim is not positive
    size = [max(int(round(n * s / p)), 1) for n, s, p in zip(image.shape[1:], spacing, target)]
    voxels, source = math.prod(size), math.prod(image.shape[1:])
    if voxels > _MAX_RESAMPLED_VOXELS and voxels > _MAX_RESAMPLED_GROWTH * source:
        name = image.meta.get("filename_or_obj", "an image") if isinstance(image, MetaTensor) else "an image"
        raise ValueError(
            f"{name}: resampled from its spacing {np.round(spacing, 4).tolist()} mm to {target.tolist()} mm it would "
            f"be {' x '.join(map(str, size))} voxels, {voxels / source:.0f} times its {source}: its header's spacing "
            "may be in another unit (m, cm) or wrong; check it."
        )


# recorded operations whose inverse moves voxels by crops, pads, flips, axis permutations or one affine resampling
# (linear between the two nearest voxels of each axis, zeros in the padding): InvertArgmaxd's shortcut is exact
# for these only
_GRID_OPERATIONS = frozenset(
    {
        "SeparableResample",
        "SpatialResample",
        "Spacing",
        "Orientation",
        "Flip",
        "CropForeground",
        "SpatialCrop",
        "CenterSpatialCrop",
        "BorderPad",
        "SpatialPad",
        "DivisiblePad",
    }
)
# added to the class of the voxels at class boundaries in the label map that InvertArgmaxd inverts (at most 128
# classes)
_MIXED = 128
# output voxels interpolated per block of the shortcut: a few MiB of gathered scores
_GATHER_BLOCK = 1 << 18


def _neighbourhood(label: torch.Tensor, op) -> torch.Tensor:
    """``op`` (``torch.maximum`` or ``torch.minimum``) over each voxel's 3 x 3 (x 3) neighbourhood in the grid."""
    for axis in range(1, label.ndim):
        n = label.shape[axis]
        if n == 1:
            continue
        spread = label.clone()
        lower, upper = spread.narrow(axis, 0, n - 1), spread.narrow(axis, 1, n - 1)
        lower.copy_(op(lower, label.narrow(axis, 1, n - 1)))
        upper.copy_(op(upper, label.narrow(axis, 0, n - 1)))
        label = spread
    return label


def _grid_operation(op: Mapping) -> bool:
    """Whether a recorded operation is one of ``_GRID_OPERATIONS``, resampled (if at all) with voxel centres on the
    affines' grid: ``align_corners=True`` samples elsewhere."""
    info = op.get(TraceKeys.EXTRA_INFO)
    corners = info.get("align_corners") if isinstance(info, Mapping) else None
    return op.get(TraceKeys.CLASS_NAME) in _GRID_OPERATIONS and corners is not True


def _near_faces(label: torch.Tensor, width: int = 2) -> bool:
    """Whether any voxel within ``width`` voxels of a face of the grid has a label other than 0."""
    return any(
        bool(label.narrow(axis, start, min(width, label.shape[axis])).any())
        for axis in range(1, label.ndim)
        for start in (0, max(label.shape[axis] - width, 0))
    )


def _source_label(scores: torch.Tensor, orig: object) -> torch.Tensor | None:
    """The label map of ``scores`` on the grid of ``orig``, or ``None`` where InvertArgmaxd's shortcut would not
    be exact."""
    if not isinstance(orig, MetaTensor) or orig.pending_operations or not isinstance(scores, torch.Tensor):
        return None
    if not 2 <= scores.ndim <= 4 or scores.shape[1:] != orig.shape[1:] or not scores.is_floating_point():
        return None
    if scores.shape[0] > _MIXED:
        return None
    if not all(_grid_operation(op) for op in orig.applied_operations):
        return None
    rank = scores.ndim - 1
    if tuple(orig.affine.shape) != (rank + 1, rank + 1):
        return None
    values = convert_to_tensor(scores, track_meta=False)
    if bool(values.isnan().any()):
        return None
    label = ArgmaxLabel()(values)
    return None if _near_faces(label) else label


def _interpolated_labels(
    scores: torch.Tensor,
    xform: torch.Tensor,
    source_axes: Sequence[int],
    out_shape: Sequence[int],
    voxels: torch.Tensor,
) -> torch.Tensor:
    """The highest class of ``scores`` (C, *spatial), linearly interpolated at ``voxels`` (N, rank) of an output
    grid whose voxel ``i`` lies at the scores' voxel coordinates ``xform @ i``, output axis ``o`` running along the
    scores' axis ``source_axes[o]`` (``_source_axes``)."""
    rank = scores.ndim - 1
    # the scores' axes in the order of the output axes they map onto (a view)
    view = scores.permute(0, *(a + 1 for a in source_axes))
    taps = [
        _axis_taps(
            int(out_shape[o]), float(xform[a, o]), float(xform[a, rank]), view.shape[o + 1], "bilinear", "border"
        )
        for o, a in enumerate(source_axes)
    ]
    order = _pass_order(view.shape[1:], out_shape)
    labels = []
    for block in voxels.cpu().split(_GATHER_BLOCK):
        lo, hi, weight = [], [], []
        for o, (lo_o, hi_o, w_o) in enumerate(taps):
            lo.append(lo_o[block[:, o]].to(view.device))
            hi.append(hi_o[block[:, o]].to(view.device))
            weight.append(w_o[block[:, o]].to(device=view.device, dtype=view.dtype))
        # the 2^rank corners, then one axis at a time in separable_resample's order, for the same rounding
        corners = []
        for corner in itertools.product((0, 1), repeat=rank):
            side = dict(zip(order, corner))
            corners.append(view[(slice(None), *(hi[o] if side[o] else lo[o] for o in range(rank)))])
        for o in order:
            half = len(corners) // 2
            corners = [torch.lerp(corners[i], corners[i + half], weight[o]) for i in range(half)]
        labels.append(ArgmaxLabel()(corners[0])[0])
    return torch.cat(labels)


class InvertArgmaxd(MapTransform):
    """``Invertd`` of class scores followed by :class:`~monai_unets.transforms.ArgmaxLabeld`, interpolating the
    scores only where two classes meet. A dictionary transform only, as ``Invertd``: the inversion reads the
    transforms recorded on another key of the case (its image).

    Inverting a whole CT's class probabilities writes C float volumes of the study's size, most of whose voxels
    lie where all neighbours agree on the class; linear interpolation between scores that share their highest
    class keeps that class. So this transform:

    1. takes the label map on the network's grid and marks the voxels whose 3 x 3 x 3 neighbourhood holds two
       classes;
    2. takes both back to the study's grid with ``Invertd`` and nearest-neighbour interpolation (one small-integer
       volume): where the nearest source voxel is unmarked, every voxel the linear interpolation reads has its
       class, which is then the label;
    3. interpolates the scores linearly, as ``Invertd`` does, at the other voxels only, and takes their highest
       class.

    The label map (and its metadata) is that of ``Invertd(nearest_interp=False)`` then ``ArgmaxLabeld``, up to
    float rounding of near ties. The whole volume is inverted as before where the shortcut would not be exact
    or not faster: scores with NaN, a class other than 0 within two voxels of the grid's faces (beside the zeros
    of an inverted crop), recorded operations other than crops, pads, flips, reorientation and resampling (or a
    resampling with ``align_corners=True``), more than 128 classes, or more than ``max_boundary_share`` of the
    voxels at class boundaries (e.g. an untrained network).

    Args:
        keys: keys of the class scores (C, *spatial), e.g. probabilities after ``Activationsd(softmax=True)``.
        transform: the preprocessing to invert, as for ``Invertd``.
        orig_keys: the keys whose recorded operations are inverted, as for ``Invertd``; default: ``keys``.
        device: where the label map is put, as for ``Invertd``.
        max_boundary_share: the share of the scores' voxels at class boundaries beyond which the whole volume is
            interpolated: per voxel, the shortcut costs about 10 times a whole-volume pass.
        allow_missing_keys: don't raise if a key is missing.

    Example::

        >>> post = InvertArgmaxd(keys="pred", transform=preprocessing, orig_keys="image")  # doctest: +SKIP
        >>> post({"image": image, "pred": probabilities})["pred"].dtype  # doctest: +SKIP
        torch.uint8
    """

    def __init__(
        self,
        keys: KeysCollection,
        transform: InvertibleTransform,
        orig_keys: KeysCollection | None = None,
        device: str | torch.device | None = None,
        max_boundary_share: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.max_boundary_share = max_boundary_share
        orig = ensure_tuple_rep(orig_keys, len(self.keys)) if orig_keys is not None else self.keys
        self.orig_keys = dict(zip(self.keys, orig))

        def invert(key: Hashable, nearest: bool) -> Invertd:
            return Invertd(key, transform, self.orig_keys[key], nearest_interp=nearest, to_tensor=True, device=device)

        self.invert_scores = {key: invert(key, False) for key in self.keys}
        self.invert_codes = {key: invert(key, True) for key in self.keys}
        self.argmax = ArgmaxLabel()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._labels(d, key)
        return d

    def _labels(self, d: dict, key: Hashable) -> torch.Tensor:
        scores, orig = d[key], d.get(self.orig_keys[key])
        label = _source_label(scores, orig)
        if label is None:
            return self._whole_volume(d, key)
        boundary = _neighbourhood(label, torch.maximum) != _neighbourhood(label, torch.minimum)
        if bool(boundary.float().mean() > self.max_boundary_share):
            return self._whole_volume(d, key)
        # the class, plus 128 where the neighbourhood is mixed: one small-integer volume
        codes = MetaTensor(label + _MIXED * boundary.to(torch.uint8))
        inverted = self.invert_codes[key]({**d, key: codes})[key]
        out = convert_to_tensor(inverted, track_meta=False).to(torch.uint8)
        mixed = out >= _MIXED
        out.bitwise_and_(_MIXED - 1)
        # Invertd takes the scores to lie on the grid of `orig` (the preprocessed image): so does this
        xform = torch.linalg.solve(
            torch.as_tensor(orig.affine, dtype=torch.float64).cpu(),
            torch.as_tensor(inverted.affine, dtype=torch.float64).cpu(),
        )
        source_axes = _source_axes(xform[:-1, :-1])
        if source_axes is None:
            return self._whole_volume(d, key)
        voxels = mixed[0].nonzero()
        if len(voxels):
            values = convert_to_tensor(scores, track_meta=False)
            exact = _interpolated_labels(values, xform, source_axes, out.shape[1:], voxels)
            out[0][tuple(voxels.T)] = exact.to(out.device)
        return convert_to_dst_type(out, inverted, dtype=torch.uint8)[0]

    def _whole_volume(self, d: dict, key: Hashable) -> torch.Tensor:
        # Invertd of every class score at every voxel of the study, then the argmax
        return self.argmax(self.invert_scores[key](d)[key])


InvertArgmaxD = InvertArgmaxDict = InvertArgmaxd
