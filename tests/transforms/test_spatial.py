from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CropForegroundd,
    EnsureChannelFirstd,
    Invertd,
    LoadImaged,
    Orientationd,
    Rotate90d,
    Spacingd,
    SpatialResample,
)
from monai_unets.transforms import ArgmaxLabel, InvertArgmaxd, ResampleSpacingd, SeparableResample, spatial

_separable = spatial.separable_resample


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(20, 16, 8).astype(np.float32), np.diag([0.8, 0.8, 2.5, 1.0])), path)
    # the way MONAI Label hands a study to a bundle's pre-transforms
    return {"image": str(path), "image_path": str(path)}


def _pipeline(spacing_transform):
    return Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            spacing_transform("image", pixdim=(1.6, 1.6, 2.5)),
        ]
    )


def test_monai_spacingd_fails_on_a_string_entry(study):
    # the upstream failure this transform exists for; if MONAI fixes it, this test says so
    with pytest.raises(RuntimeError):
        _pipeline(Spacingd)(dict(study))


def test_resamples_and_keeps_the_string_entry(study):
    out = _pipeline(ResampleSpacingd)(dict(study))
    assert out["image_path"] == study["image_path"]
    # what MONAI's Spacingd gives when no such entry is in the way, to float32 rounding
    reference = _pipeline(Spacingd)({"image": study["image"]})["image"]
    assert out["image"].shape == reference.shape
    np.testing.assert_allclose(out["image"].numpy(), reference.numpy(), atol=1e-6)
    np.testing.assert_allclose(out["image"].pixdim[:3], [1.6, 1.6, 2.5])


def test_a_key_named_after_another_key_is_resampled_with_it():
    # entries named "<key>_..." are set aside for MONAI Label's image_path; an "image_t2" among the keys had been
    # set aside too, and with allow_missing_keys left silently on its own grid
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    keys = ("image", "image_t2")
    for allow_missing_keys in (False, True):
        case = {key: MetaTensor(torch.rand(1, 8, 8, 8), affine=affine) for key in keys}
        out = ResampleSpacingd(keys, pixdim=(1.0, 1.0, 1.0), allow_missing_keys=allow_missing_keys)(case)
        reference = Spacingd(keys, pixdim=(1.0, 1.0, 1.0))(dict(case))
        for key in keys:
            assert out[key].shape == reference[key].shape == (1, 15, 15, 15)
            torch.testing.assert_close(out[key].affine, reference[key].affine)


def test_a_spacing_that_would_blow_the_image_up_is_refused_naming_the_file(tmp_path):
    # 50 mm voxels (a header in another unit) made a 48 x 40 x 24 study 1.3e9 voxels at 1.5 mm, which held a whole
    # batch for minutes before anything said which study it was
    path = tmp_path / "cm.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((48, 40, 24), np.float32), np.diag([50.0, 50.0, 50.0, 1.0])), path)
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])
    image = load({"image": str(path)})
    with pytest.raises(
        ValueError,
        match=rf"{path}: resampled from its spacing \[50.0, 50.0, 50.0\] mm to "
        r"\[1.5, 1.5, 1.5\] mm it would be 1600 x 1333 x 800 voxels, 37028 times its 46080",
    ):
        ResampleSpacingd("image", pixdim=(1.5, 1.5, 1.5))(image)
    # a thick-slice study brought to fine slices is resampled as before
    assert ResampleSpacingd("image", pixdim=(50.0, 50.0, 10.0))(image)["image"].shape == (1, 48, 40, 116)


def test_is_invertible(study):
    pipeline = _pipeline(ResampleSpacingd)
    out = pipeline(dict(study))
    out["pred"] = out["image"].clone()
    restored = Invertd("pred", transform=pipeline, orig_keys="image")(out)
    assert tuple(restored["pred"].shape) == (1, 20, 16, 8)


def _axis_aligned_affine(rng, rank=3):
    affine = np.eye(rank + 1)
    # mixed signs: LPS- and RAS-like axes, anisotropic spacing
    affine[:rank, :rank] = np.diag(rng.uniform(0.4, 3.0, rank) * rng.choice([-1.0, 1.0], rank))
    affine[:rank, rank] = rng.uniform(-80, 80, rank)
    return affine


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_separable_resample_matches_spatial_resample(seed, padding_mode, dtype):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(9, 31, 3))
    image = MetaTensor(torch.rand(2, *shape), affine=torch.as_tensor(_axis_aligned_affine(rng)))
    labels = MetaTensor(torch.randint(0, 4, (1, *shape)).float(), affine=image.affine.clone())
    # a finer or coarser grid on the same axes, reaching past the input on some sides
    dst = image.affine.clone()
    dst[:3, :3] *= torch.as_tensor(rng.uniform(0.5, 1.8, 3))
    dst[:3, 3] += torch.as_tensor(rng.uniform(-6, 6, 3))
    size = tuple(int(s) for s in rng.integers(9, 41, 3))
    for data, mode in ((image, "bilinear"), (labels, "nearest")):
        kwargs = dict(mode=mode, padding_mode=padding_mode, dtype=dtype)
        reference = SpatialResample(**kwargs)(data.clone(), dst_affine=dst, spatial_size=size)
        fast_resample = SeparableResample(**kwargs)
        fast = fast_resample(data.clone(), dst_affine=dst, spatial_size=size)
        assert fast.shape == reference.shape and fast.dtype == reference.dtype == torch.float32
        torch.testing.assert_close(fast.affine, reference.affine)
        torch.testing.assert_close(fast.as_tensor(), reference.as_tensor(), atol=1e-5, rtol=1e-5)
        assert [op["class"] for op in fast.applied_operations] == ["SeparableResample"]
        # and back onto the input's grid, as Invertd does
        restored = fast_resample.inverse(fast)
        assert restored.shape == data.shape and not restored.applied_operations
        torch.testing.assert_close(restored.affine, data.affine)


@pytest.mark.parametrize("stored", [torch.uint8, torch.int16, torch.uint16, torch.int32])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_separable_resample_of_stored_integers_equals_that_of_their_float_copy(stored, padding_mode):
    """A study read as stored (LoadImaged(dtype=None)) is converted slab by slab: the same values, float32 out."""
    rng = np.random.default_rng(3)
    values = torch.from_numpy(rng.integers(0, 250, (1, 23, 17, 11)).astype(np.int64)).to(stored)
    affine = torch.as_tensor(_axis_aligned_affine(rng))
    dst = affine.clone()
    dst[:3, :3] *= torch.as_tensor([0.6, 1.7, 1.3], dtype=torch.float64)
    dst[:3, 3] += torch.as_tensor([1.5, -2.0, 0.7], dtype=torch.float64)
    resample = SeparableResample(mode="bilinear", padding_mode=padding_mode, dtype=torch.float32)
    out = resample(MetaTensor(values, affine=affine), dst_affine=dst, spatial_size=(31, 12, 14))
    reference = resample(MetaTensor(values.float(), affine=affine), dst_affine=dst, spatial_size=(31, 12, 14))
    assert out.dtype == torch.float32
    assert torch.equal(out.as_tensor(), reference.as_tensor())
    torch.testing.assert_close(out.affine, reference.affine)
    # the function itself: integers in, `dtype` out, whichever axis its first pass takes
    args = ([0.6, 1.4, 0.9], [0.2, -0.3, 0.4], [30, 11, 13])
    direct = spatial.separable_resample(values, *args, padding_mode=padding_mode, dtype=torch.float32)
    assert direct.dtype == torch.float32
    assert torch.equal(direct, spatial.separable_resample(values.float(), *args, padding_mode=padding_mode))


def test_separable_resample_takes_the_fast_path_only_where_it_is_exact(monkeypatch):
    calls = []
    monkeypatch.setattr(spatial, "separable_resample", lambda *a, **k: calls.append(1) or _separable(*a, **k))
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.rand(1, 12, 10, 8), affine=affine)
    resample = SeparableResample(mode="bilinear")

    def both(dst, size):
        out = resample(image.clone(), dst_affine=dst, spatial_size=size)
        reference = SpatialResample(mode="bilinear")(image.clone(), dst_affine=dst, spatial_size=size)
        torch.testing.assert_close(out.affine, reference.affine)
        torch.testing.assert_close(out.as_tensor(), reference.as_tensor(), atol=1e-5, rtol=1e-5)

    both(torch.eye(4, dtype=torch.float64), (23, 19, 15))
    # an axis swap and a flip (a reorientation) still map each output axis onto one input axis
    swapped_flipped = torch.eye(4, dtype=torch.float64)[[1, 0, 2, 3]]
    swapped_flipped[2, 2], swapped_flipped[2, 3] = -1.0, 15.0
    both(swapped_flipped, (19, 23, 15))
    assert len(calls) == 2
    # a rotation mixes axes: MONAI's own resampling
    rotated = torch.eye(4, dtype=torch.float64)
    rotated[:2, :2] = torch.tensor([[0.8, -0.6], [0.6, 0.8]], dtype=torch.float64)
    both(rotated, (20, 20, 16))
    assert len(calls) == 2


def test_separable_resample_catches_a_one_voxel_shift():
    # a single bright voxel lands exactly where the affines say: index 4 of the input is index 8 of a grid
    # twice as fine starting at the same corner voxel centre minus half a coarse voxel
    image = torch.zeros(1, 10)
    image[0, 4] = 1.0
    out = spatial.separable_resample(image, scale=[0.5], shift=[0.0], spatial_size=[20])
    assert int(out[0].argmax()) == 8
    assert out[0, 7] == out[0, 9] == 0.5


def test_separable_resample_nearest_ties_split_evenly():
    # 2x upsampling puts every other output voxel exactly halfway between two input voxels
    out = spatial.separable_resample(torch.arange(10.0)[None], [0.5], [0.0], [19], mode="nearest")
    assert out[0].tolist() == [0.0] + [float(v) for v in range(1, 10) for _ in range(2)]


def test_invertd_through_the_axis_by_axis_path_matches_monai(study):
    def pipeline(spacing_transform):
        return Compose(
            [
                LoadImaged("image", image_only=True),
                EnsureChannelFirstd("image"),
                Orientationd("image", axcodes="LPI"),
                spacing_transform("image", pixdim=(1.3, 1.1, 1.7), mode="bilinear", dtype=torch.float32),
                CropForegroundd("image", "image", select_fn=lambda x: x > 0.3, allow_smaller=True),
            ]
        )

    results = []
    for transform in (ResampleSpacingd, Spacingd):
        forward = pipeline(transform)
        out = forward({"image": study["image"]})
        out["pred"] = out["image"].clone().repeat(3, 1, 1, 1)
        results.append(Invertd("pred", transform=forward, orig_keys="image", nearest_interp=False)(out)["pred"])
    fast, reference = results
    assert tuple(fast.shape) == (3, 20, 16, 8)
    torch.testing.assert_close(fast.affine, reference.affine)
    torch.testing.assert_close(fast.as_tensor(), reference.as_tensor(), atol=1e-5, rtol=1e-5)


def _oriented_study(rng, kind, shape=None, spacing=None):
    """An image whose array axes run along the world axes in another order or direction than RAS."""
    shape = tuple(int(s) for s in rng.integers(11, 25, 3)) if shape is None else shape
    spacing = rng.uniform(0.6, 2.6, 3) if spacing is None else np.asarray(spacing)
    axes = {"lps": [0, 1, 2], "lps_space": [0, 1, 2], "sagittal": [1, 2, 0], "coronal_flipped": [0, 2, 1]}[kind]
    signs = {"lps": [-1, -1, 1], "lps_space": [-1, -1, 1], "sagittal": [1, -1, -1], "coronal_flipped": [1, -1, -1]}[
        kind
    ]
    affine = np.zeros((4, 4))
    for array_axis, (world_axis, sign) in enumerate(zip(axes, signs)):
        affine[world_axis, array_axis] = sign * spacing[array_axis]
    affine[:3, 3] = rng.uniform(-60, 60, 3)
    affine[3, 3] = 1.0
    if kind == "coronal_flipped":
        # slightly oblique: a small in-plane rotation stays with the grid, as Spacingd keeps it
        c, s = np.cos(0.1), np.sin(0.1)
        affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    # an image that says its affine is in LPS: Orientationd then reads "RAS" in LPS terms
    meta = {"space": "LPS"} if kind == "lps_space" else {}
    image = MetaTensor(torch.rand(1, *shape), affine=torch.as_tensor(affine), meta=dict(meta))
    label = MetaTensor(torch.randint(0, 3, (1, *shape)).float(), affine=image.affine.clone(), meta=dict(meta))
    return {"image": image, "label": label}


@pytest.mark.parametrize("kind", ["lps", "lps_space", "sagittal", "coronal_flipped"])
def test_reorienting_resample_equals_orientationd_then_spacing(kind):
    rng = np.random.default_rng(7)
    data = _oriented_study(rng, kind)
    kwargs = dict(keys=["image", "label"], pixdim=(1.1, 0.9, 1.7), mode=["bilinear", "nearest"], dtype=torch.float32)
    fused = ResampleSpacingd(axcodes="RAS", **kwargs)
    two_steps = Compose([Orientationd(["image", "label"], axcodes="RAS"), Spacingd(**kwargs)])
    out = fused({k: v.clone() for k, v in data.items()})
    reference = two_steps({k: v.clone() for k, v in data.items()})
    for key in ("image", "label"):
        assert out[key].shape == reference[key].shape
        torch.testing.assert_close(out[key].affine, reference[key].affine)
        torch.testing.assert_close(out[key].as_tensor(), reference[key].as_tensor(), atol=1e-5, rtol=1e-5)
    # the image moved once; the label (nearest) through the two transforms
    assert [op["class"] for op in out["image"].applied_operations] == ["SeparableResample"]
    assert [op["class"] for op in out["label"].applied_operations] == ["Orientation", "SeparableResample"]

    # and back onto the input's grid: class scores and a label map, as Invertd undoes a pipeline
    for inverted_key, nearest in (("image", False), ("label", True)):
        results = []
        for transform, forward in ((fused, out), (two_steps, reference)):
            scores = forward[inverted_key].clone().repeat(2, 1, 1, 1)
            pred = {**forward, "pred": scores}
            invert = Invertd("pred", transform=transform, orig_keys=inverted_key, nearest_interp=nearest)
            results.append(invert(pred)["pred"])
        restored, expected = results
        assert restored.shape[1:] == data[inverted_key].shape[1:]
        torch.testing.assert_close(restored.affine, data[inverted_key].affine.to(restored.affine.dtype))
        torch.testing.assert_close(restored.as_tensor(), expected.as_tensor(), atol=1e-5, rtol=1e-5)


def test_reorienting_resample_catches_a_flip():
    # one bright voxel at array index (1, 2, 3) of an LPS volume: after RAS reorientation (x and y flipped) at
    # the same spacing it sits at (n_x - 2, n_y - 3, 3), and back at (1, 2, 3)
    image = torch.zeros(1, 6, 7, 5)
    image[0, 1, 2, 3] = 1.0
    affine = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
    transform = ResampleSpacingd("image", pixdim=(1.0, 1.0, 1.0), axcodes="RAS", dtype=torch.float32)
    out = transform({"image": MetaTensor(image, affine=affine)})
    assert tuple(torch.nonzero(out["image"][0] > 0.5)[0].tolist()) == (4, 4, 3)
    restored = transform.inverse(out)["image"]
    assert tuple(torch.nonzero(restored[0] > 0.5)[0].tolist()) == (1, 2, 3)
    torch.testing.assert_close(restored.affine, affine)


def _scored_study(kind, seed=0):
    """An oriented study preprocessed as the CT bundles do (reorient, resample, crop to the body), and smooth class
    scores on the preprocessed grid: a round class 1 with a class 2 core, away from the faces of the crop."""
    rng = np.random.default_rng(seed)
    image = _oriented_study(rng, kind, shape=(80, 72, 56), spacing=rng.uniform(0.9, 1.2, 3))["image"]
    shape = image.shape[1:]
    body = torch.zeros(1, *shape)
    body[:, 1:-1, 2:-1, 1:-2] = 1.0
    image = MetaTensor(image.as_tensor() * 0.1 + body * 100.0, meta=dict(image.meta))
    preprocessing = Compose(
        [
            ResampleSpacingd("image", pixdim=(1.0, 1.1, 1.2), axcodes="RAS", dtype=torch.float32),
            CropForegroundd("image", source_key="image", select_fn=lambda x: x > 50.0, allow_smaller=True),
        ]
    )
    out = preprocessing({"image": image})
    out["pred"] = _smooth_scores(out["image"], seed)
    return image, preprocessing, out


def _smooth_scores(image, seed):
    """Class probabilities on the grid of ``image``: a round class 1 with a class 2 core, in its middle."""
    grid = image.shape[1:]
    axes = torch.meshgrid(*[torch.linspace(-1.0, 1.0, n) for n in grid], indexing="ij")
    radius = sum(a**2 for a in axes).sqrt()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.nn.functional.avg_pool3d(torch.randn(1, 3, *grid, generator=generator), 3, 1, 1)[0]
    logits = torch.stack([6 * (radius - 0.55), 6 * (0.6 - radius), 14 * (0.35 - radius)]) + noise
    return MetaTensor(torch.softmax(logits, 0), meta=dict(image.meta))


def _invert_then_argmax(preprocessing, data):
    probabilities = Invertd("pred", preprocessing, "image", nearest_interp=False)(dict(data))["pred"]
    return probabilities, ArgmaxLabel()(probabilities)


def _spy_on_whole_volume_inversion(monkeypatch, transform):
    calls = []
    for key, invert in transform.invert_scores.items():
        monkeypatch.setitem(transform.invert_scores, key, lambda d, invert=invert: calls.append(1) or invert(d))
    return calls


@pytest.mark.parametrize("kind", ["lps", "sagittal", "coronal_flipped"])
def test_invert_argmax_equals_invertd_then_argmax(kind, monkeypatch):
    image, preprocessing, data = _scored_study(kind)
    probabilities, expected = _invert_then_argmax(preprocessing, data)
    # a boundary share of 7% in so small a grid (in a whole CT, about 1%)
    transform = InvertArgmaxd("pred", preprocessing, orig_keys="image", max_boundary_share=0.1)
    whole_volume = _spy_on_whole_volume_inversion(monkeypatch, transform)
    label = transform(dict(data))["pred"]
    assert not whole_volume, "the shortcut should have been taken"
    assert label.dtype == torch.uint8 and label.shape == (1, *image.shape[1:])
    torch.testing.assert_close(label.affine, image.affine.to(label.affine.dtype))
    assert set(torch.unique(label).tolist()) == {0, 1, 2}
    # the same label map; a voxel may differ only where two classes tie to float rounding
    differ = (label != expected)[0]
    top2 = probabilities.as_tensor().topk(2, dim=0).values
    assert bool(((top2[0] - top2[1])[differ] < 1e-6).all())
    assert int(differ.sum()) <= 2


def test_invert_argmax_in_2d():
    image = MetaTensor(torch.zeros(1, 40, 30), affine=torch.diag(torch.tensor([-0.6, 0.9, 1.0], dtype=torch.float64)))
    image[:, 2:-2, 3:-2] = 100.0
    preprocessing = Compose(
        [
            ResampleSpacingd("image", pixdim=(1.0, 1.0), axcodes="RA", dtype=torch.float32),
            CropForegroundd("image", source_key="image", select_fn=lambda x: x > 50.0, allow_smaller=True),
        ]
    )
    data = preprocessing({"image": image})
    grid = data["image"].shape[1:]
    yy, xx = torch.meshgrid(*[torch.linspace(-1.0, 1.0, n) for n in grid], indexing="ij")
    radius = (yy**2 + xx**2).sqrt()
    data["pred"] = MetaTensor(torch.stack([radius - 0.5, 0.5 - radius]), meta=dict(data["image"].meta))
    expected = _invert_then_argmax(preprocessing, data)[1]
    label = InvertArgmaxd("pred", preprocessing, orig_keys="image")(dict(data))["pred"]
    assert label.shape == (1, 40, 30)
    assert torch.equal(label.as_tensor(), expected.as_tensor())


@pytest.mark.parametrize("case", ["nan", "class_at_a_face", "noisy", "unlisted_operation", "align_corners"])
def test_invert_argmax_inverts_the_whole_volume_where_the_shortcut_is_not_exact(case, monkeypatch):
    image, preprocessing, data = _scored_study("lps", seed=3)
    scores = data["pred"].as_tensor().clone()
    if case == "nan":
        scores[0, 5, 5, 5] = float("nan")
    elif case == "class_at_a_face":
        scores[1, 0, 4, 4] = 2.0
    elif case == "noisy":
        scores = torch.rand(scores.shape, generator=torch.Generator().manual_seed(0))
    data["pred"] = MetaTensor(scores, meta=dict(data["image"].meta))
    if case in ("unlisted_operation", "align_corners"):
        if case == "unlisted_operation":
            preprocessing = Compose([*preprocessing.transforms, Rotate90d("image", k=1, spatial_axes=(0, 1))])
        else:
            resample = ResampleSpacingd("image", pixdim=(1.0, 1.1, 1.2), dtype=torch.float32, align_corners=True)
            preprocessing = Compose([resample, *preprocessing.transforms[1:]])
        data = preprocessing({"image": image})
        data["pred"] = _smooth_scores(data["image"], seed=3)
    probabilities, expected = _invert_then_argmax(preprocessing, data)
    transform = InvertArgmaxd("pred", preprocessing, orig_keys="image", max_boundary_share=0.1)
    whole_volume = _spy_on_whole_volume_inversion(monkeypatch, transform)
    label = transform(dict(data))["pred"]
    assert whole_volume == [1]
    assert torch.equal(label.as_tensor(), expected.as_tensor())
    torch.testing.assert_close(label.affine, expected.affine)


def test_invert_argmax_catches_a_one_voxel_shift():
    # class 1 in one block of the preprocessed grid: at the same spacing and orientation it must come back at
    # exactly the block's voxels of the study, shifted by the crop
    image = MetaTensor(torch.zeros(1, 20, 18, 16), affine=torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0])))
    image[:, 3:17, 2:15, 4:14] = 100.0
    preprocessing = Compose(
        [
            ResampleSpacingd("image", pixdim=(1.0, 1.0, 1.0), axcodes="RAS", dtype=torch.float32),
            CropForegroundd("image", source_key="image", select_fn=lambda x: x > 50.0, allow_smaller=True),
        ]
    )
    data = preprocessing({"image": image})
    scores = torch.zeros(2, *data["image"].shape[1:])
    scores[0] = 1.0
    scores[1, 4:7, 5:9, 3:6] = 2.0
    data["pred"] = MetaTensor(scores, meta=dict(data["image"].meta))
    label = InvertArgmaxd("pred", preprocessing, orig_keys="image")(dict(data))["pred"]
    expected = torch.zeros(1, 20, 18, 16, dtype=torch.uint8)
    expected[0, 7:10, 7:11, 7:10] = 1
    assert torch.equal(label.as_tensor(), expected)
