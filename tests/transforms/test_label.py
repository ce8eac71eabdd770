from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai_unets.transforms import ArgmaxLabel, ArgmaxLabeld, BinarizeLabel, BinarizeLabeld
from monai_unets.transforms import label as label_transforms
from scipy import ndimage


@pytest.mark.parametrize(
    "mask, expected",
    [
        (np.array([[0, 255, 250, 3]], dtype=np.uint8), [[0, 1, 1, 0]]),  # 0/255 with JPEG-like drift
        (np.array([[0, 1, 1, 0]], dtype=np.uint8), [[0, 1, 1, 0]]),  # 0/1
        (np.zeros((1, 4), dtype=np.uint8), [[0, 0, 0, 0]]),  # empty mask stays empty
        (np.full((1, 4), 255, dtype=np.uint8), [[1, 1, 1, 1]]),  # all lesion
    ],
)
def test_auto_threshold(mask, expected):
    out = BinarizeLabel()(mask)
    assert out.dtype == torch.float32
    np.testing.assert_array_equal(out.numpy(), np.array(expected, dtype=np.float32))


def test_an_empty_jpeg_mask_stays_empty_and_a_low_scale_one_is_refused(tmp_path):
    from monai.transforms import LoadImage
    from monai_unets.transforms import Image2DReader
    from PIL import Image

    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(tmp_path / "empty.jpg", quality=70)
    assert float(load(tmp_path / "empty.jpg").max()) == 1  # JPEG's offset: every pixel decodes to 1
    assert BinarizeLabel()(load(tmp_path / "empty.jpg")).sum() == 0
    # a 0/1 mask as JPEG (values 0..2) and an empty mask's noise (values 0..3) cannot be told apart: half the
    # maximum had made the noise a lesion of 41% of the image, a floor of 16 had erased the 0/1 mask's lesion
    lesion = np.zeros((64, 64), dtype=np.uint8)
    lesion[20:40, 20:30] = 1
    noisy = np.clip(np.random.default_rng(0).normal(0, 2, (64, 64)), 0, 255).astype(np.uint8)
    for name, mask in (("lesion01.jpg", lesion), ("noisy.jpg", noisy)):
        Image.fromarray(mask).save(tmp_path / name, quality=90)
        with pytest.raises(ValueError, match=rf"{name}: JPEG mask values reach only \d+: a 0/1 mask saved as JPEG"):
            BinarizeLabel()(load(tmp_path / name))
    # a lossless mask keeps half its maximum: 0/1 PNG masks are not noise
    Image.fromarray(lesion).save(tmp_path / "lesion01.png")
    assert float(BinarizeLabel()(load(tmp_path / "lesion01.png")).sum()) == 200


@pytest.mark.parametrize("quality", [50, 75, 95, 100])
@pytest.mark.parametrize("radius", [3, 6, 20])
def test_a_0_255_jpeg_mask_keeps_its_lesion_small_and_soft_edged_ones_too(quality, radius, tmp_path):
    from monai.transforms import LoadImage
    from monai_unets.transforms import Image2DReader
    from PIL import Image, ImageFilter

    # an asymmetric lesion (a disc and a bar to its right) with a blurred edge, as resized masks have
    rows, cols = np.mgrid[:96, :128]
    truth = ((rows - 40) ** 2 + (cols - 50) ** 2 <= radius**2) | ((abs(rows - 40) <= 1) & (cols > 50) & (cols < 90))
    picture = Image.fromarray((truth * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    picture.save(tmp_path / "mask.jpg", quality=quality)
    mask = LoadImage(reader=Image2DReader(channels=1), image_only=True)(tmp_path / "mask.jpg")
    found = BinarizeLabel()(mask).numpy().T.astype(bool)  # width first, as PILReader lays it out
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.8, dice


def test_a_mask_of_several_class_indices_is_refused_and_smooth_edges_are_not():
    # 0/1/2: lesion 1 and another class an annotation tool added; half the maximum had dropped the lesion
    mask = MetaTensor(torch.tensor([[0, 1, 1, 2]]), meta={"filename_or_obj": "/labels/ISIC_1.png"})
    with pytest.raises(ValueError, match=r"ISIC_1.png: mask values 0, 1, 2 are several classes"):
        BinarizeLabel()(mask)
    # a 0/255 mask with smoothed edges is read at half its maximum, as before
    smooth = torch.tensor([[0, 40, 128, 200, 255]])
    np.testing.assert_array_equal(BinarizeLabel()(smooth).numpy(), [[0, 0, 1, 1, 1]])


def test_fixed_threshold():
    np.testing.assert_array_equal(BinarizeLabel(threshold=0)(np.array([0, 1, 2])).numpy(), [0, 1, 1])


def test_dict_version_keeps_meta_and_other_keys():
    label = MetaTensor(torch.tensor([[0, 255]]), meta={"filename_or_obj": "mask.png"})
    out = BinarizeLabeld(keys="label")({"label": label, "image": "untouched"})
    assert out["image"] == "untouched"
    assert out["label"].meta["filename_or_obj"] == "mask.png"
    np.testing.assert_array_equal(out["label"].numpy(), [[0, 1]])


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
@pytest.mark.parametrize("block", [None, 11])
def test_argmax_label_equals_torch_argmax_with_ties_and_nans(channels, block, monkeypatch):
    if block:
        # many blocks, of which only some hold a NaN, the last one shorter
        monkeypatch.setattr(label_transforms, "_ARGMAX_BLOCK", block)
    torch.manual_seed(0)
    scores = torch.randint(0, 3, (channels, 7, 6, 5)).float()  # many ties: the first channel must win
    scores[:, 0, 0, 0] = float("nan")
    if channels > 2:
        scores[1:, 1, 1, 1] = float("nan")  # the first NaN wins
        scores[0, 2, 2, 2] = float("nan")
    expected = torch.argmax(scores, dim=0, keepdim=True)
    label = ArgmaxLabel()(scores)
    assert label.dtype == torch.uint8
    assert torch.equal(label.long(), expected)
    # integer scores and numpy arrays too
    ints = torch.randint(0, 4, (channels, 9, 4))
    assert torch.equal(torch.as_tensor(ArgmaxLabel()(ints.numpy())).long(), torch.argmax(ints, 0, keepdim=True))
    # and a view whose channels are not contiguous
    strided = scores.permute(0, 3, 2, 1)
    assert torch.equal(ArgmaxLabel()(strided).long(), torch.argmax(strided, dim=0, keepdim=True))


def test_argmax_labeld_keeps_the_geometry():
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64))
    scores = MetaTensor(torch.randn(3, 4, 5, 6), affine=affine)
    label = ArgmaxLabeld(keys="pred")({"pred": scores})["pred"]
    assert isinstance(label, MetaTensor) and label.shape == (1, 4, 5, 6)
    assert torch.equal(label.affine, affine)
    with pytest.raises(ValueError, match="channel-first"):
        ArgmaxLabel()(torch.tensor(1.0))


def test_keep_largest_component_removes_smaller_islands_of_chosen_classes_only():
    from monai_unets.transforms import KeepLargestComponentd

    pred = torch.zeros(1, 8, 8, 4, dtype=torch.int64)
    pred[0, :3, :3] = 1  # the organ
    pred[0, 6:, 6:, 0] = 1  # a spurious island
    pred[0, 4, 0] = 2  # two islands of a class not chosen
    pred[0, 0, 6] = 2
    out = KeepLargestComponentd("pred", applied_labels=[1])({"pred": pred})["pred"]
    expected = pred.clone()
    expected[0, 6:, 6:, 0] = 0
    assert torch.equal(out, expected)
    assert torch.equal(KeepLargestComponentd("pred", applied_labels=[])({"pred": pred})["pred"], pred)


def _largest_over_the_whole_volume(mask: np.ndarray) -> np.ndarray:
    """The definition: label every component of the full array and keep the largest."""
    components, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim))
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == sizes.argmax()


@pytest.mark.parametrize("shape", [(40,), (30, 25), (24, 20, 16)])
def test_keep_largest_component_equals_labelling_the_whole_volume(shape):
    from monai_unets.transforms import keep_largest_component

    rng = np.random.default_rng(len(shape))
    for density in (0.0, 0.002, 0.05, 0.3):
        mask = rng.random(shape) < density
        assert np.array_equal(keep_largest_component(mask), _largest_over_the_whole_volume(mask))
    # islands touching the array's faces and corners, joined only diagonally across the box
    mask = np.zeros(shape, dtype=bool)
    mask[(0,) * len(shape)] = mask[(1,) * len(shape)] = True
    mask[tuple(n - 1 for n in shape)] = True
    kept = keep_largest_component(mask)
    assert kept[(0,) * len(shape)] and kept[(1,) * len(shape)] and not kept[tuple(n - 1 for n in shape)]


def test_keep_largest_componentd_matches_the_definition_and_keeps_the_input():
    from monai_unets.transforms import KeepLargestComponentd

    rng = np.random.default_rng(0)
    values = rng.choice(4, size=(1, 30, 26, 18), p=[0.9, 0.05, 0.04, 0.01]).astype(np.uint8)
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64))
    pred = MetaTensor(torch.from_numpy(values.copy()), affine=affine)
    out = KeepLargestComponentd("pred", applied_labels=[1, 3])({"pred": pred})["pred"]
    expected = values.copy()
    for value in (1, 3):
        mask = values == value
        expected[mask & ~_largest_over_the_whole_volume(mask)] = 0
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine)
    assert np.array_equal(out.numpy(), expected) and not np.array_equal(expected, values)
    assert np.array_equal(pred.numpy(), values)  # the input map is not changed in place
    # a chosen class that is absent or in one piece leaves the map as it was
    single = torch.zeros(1, 6, 6, 6, dtype=torch.uint8)
    single[0, 1:3, 1:3, 1:3] = 1
    assert torch.equal(KeepLargestComponentd("pred", applied_labels=[1, 2])({"pred": single})["pred"], single)
    # a numpy map stays numpy, changed or not
    for values in (values, single.numpy()):
        out = KeepLargestComponentd("pred", applied_labels=[1, 3])({"pred": values})["pred"]
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8


def _named(values: np.ndarray, name: str = "/masks/case.png") -> MetaTensor:
    return MetaTensor(torch.as_tensor(values), meta={"filename_or_obj": name})


def _square_lesion(value: int = 255) -> np.ndarray:
    mask = np.zeros((40, 48), dtype=np.uint8)
    mask[10:30, 12:36] = value
    return mask


def test_a_third_value_that_half_the_maximum_drops_is_refused_with_its_pixel_counts():
    lesion = _square_lesion(1)
    outline = ndimage.binary_dilation(lesion, iterations=2) & ~ndimage.binary_erosion(lesion, iterations=2)
    voc = lesion.copy()
    voc[outline] = 255  # VOC style: lesion 1, its outline 255 ("void"); had become the outline only
    with pytest.raises(ValueError, match=r"voc.png: mask values 0 \(1260 pixels\), 1 \(320 pixels\), 255 \(340 pix"):
        BinarizeLabel()(_named(voc, "/masks/voc.png"))
    classes = lesion.copy()
    classes[:5, :5] = 20  # another class of an annotation tool; half of 20 had dropped the lesion
    with pytest.raises(ValueError, match=r"cls.png: .*: 1 \(95% of the non-zero pixels\) would be read as background"):
        BinarizeLabel()(_named(classes, "/masks/cls.png"))
    # a value above half the maximum is lesion: 0/128/255 masks keep their 128s as before
    uncertain = np.where(outline, 128, _square_lesion()).astype(np.uint8)
    assert float(BinarizeLabel()(_named(uncertain)).sum()) == (uncertain > 0).sum()


def test_a_darker_region_apart_from_the_lesion_is_refused_whatever_its_share():
    # a 120-pixel patch of 60 beside a lesion of 2,400 pixels of 255 (under 10% of the foreground) had been erased
    mask = np.zeros((80, 100), dtype=np.uint8)
    mask[10:50, 10:70] = 255
    mask[60:70, 80:92] = 60
    with pytest.raises(ValueError, match=r"two.png: a region of 120 pixels of mask values 60 lies apart from the"):
        BinarizeLabel()(_named(mask, "/masks/two.png"))
    # touching the lesion, such a value cannot be told from an edge; a few pixels apart are noise, and kept so
    mask[60:70, 80:92] = 0
    mask[50:52, 10:70] = 60
    mask[70:73, 90:93] = 60
    assert float(BinarizeLabel()(_named(mask)).sum()) == 2400


def test_a_small_spot_blurred_below_half_the_maximum_is_read_as_background_not_refused():
    from PIL import Image, ImageFilter

    # a 7 x 7 spot of 255 beside the lesion, the whole mask blurred: the spot's halo peaks at 93 over 605 pixels of
    # many values, and had been refused as a second lesion drawn darker
    mask = np.zeros((128, 160), dtype=np.uint8)
    mask[30:90, 20:90] = 255
    mask[20:27, 130:137] = 255
    blurred = np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(4)))
    assert 0 < blurred[20:27, 130:137].max() <= 127
    found = BinarizeLabel()(_named(blurred)).numpy().astype(bool)
    np.testing.assert_array_equal(found, blurred > 127.5)
    # the same spot drawn in a darker value and blurred keeps a plateau of that value: refused
    mask[10:30, 120:150] = 90
    with pytest.raises(ValueError, match=r"a region of \d+ pixels of mask values .* lies apart from the"):
        BinarizeLabel()(_named(np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(1)))))


@pytest.mark.parametrize("radius", [2, 3, 5, 10, 25])
@pytest.mark.parametrize("resample", ["BILINEAR", "BICUBIC", "LANCZOS", "BOX"])
def test_a_resized_0_255_mask_with_many_edge_values_is_not_taken_for_classes(radius, resample):
    from PIL import Image

    rows, cols = np.mgrid[:256, :256]
    disc = ((rows - 111) ** 2 + (cols - 135) ** 2 <= (radius * 4) ** 2).astype(np.uint8) * 255
    small = np.array(Image.fromarray(disc).resize((64, 64), getattr(Image.Resampling, resample)))
    assert len(np.unique(small)) > 3
    found = BinarizeLabel()(_named(small)).numpy().astype(bool)
    np.testing.assert_array_equal(found, small > 127.5)


def test_a_float_mask_with_rounding_noise_is_read_at_half_its_maximum():
    lesion = _square_lesion(1).astype(bool)
    noisy = np.where(lesion, 1.0001, 0.0).astype(np.float32)
    noisy[lesion & (np.arange(48) % 2 == 0)] = 0.9999  # had been refused as "several classes"
    np.testing.assert_array_equal(BinarizeLabel()(_named(noisy)).numpy(), lesion)
    # integer class indices stay refused, also as floats
    with pytest.raises(ValueError, match="mask values 0, 1, 2 are several classes"):
        BinarizeLabel()(_named(np.array([[0.0, 1.0, 2.0]], dtype=np.float32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_float_mask_with_nan_or_infinite_values_is_refused(bad):
    # a NaN compares false with any threshold: the lesion's NaN pixels had been read as background
    mask = np.where(_square_lesion(1).astype(bool), 1.0, 0.0).astype(np.float32)
    mask[2, 2] = bad
    with pytest.raises(ValueError, match="mask.*holds NaN or infinite values"):
        BinarizeLabel()(_named(mask))


def test_keep_largest_componentd_refuses_a_batch_or_class_channels():
    from monai_unets.transforms import KeepLargestComponentd

    # two items of a batch: the second item's only lesion, smaller than the first's, had been removed
    batch = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    batch[0, 0, :4, :4] = 1
    batch[1, 0, 6:, 6:] = 1
    keep = KeepLargestComponentd("pred", applied_labels=[1])
    with pytest.raises(ValueError, match=r"^'pred': .*one label map of class indices \(1, \.\.\.\), got shape \(2, 1"):
        keep({"pred": batch})
    with pytest.raises(ValueError, match=r"got shape \(2, 8, 8\)"):
        keep({"pred": batch[:, 0]})  # two class channels
    assert int(keep({"pred": batch[1]})["pred"].sum()) == 4


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_photograph_given_as_its_own_mask_is_refused(suffix, tmp_path):
    # a datalist whose label named the image (images/x.jpg for masks/x.jpg) passed every check, and training
    # learnt the photograph cut at half its brightness
    from monai.transforms import LoadImage
    from monai_unets.transforms import Image2DReader
    from PIL import Image, ImageFilter

    rows, cols = np.mgrid[:128, :160]
    shading = 40 + 150 * np.exp(-((rows - 60) ** 2 + (cols - 90) ** 2) / 4000)
    texture = np.random.default_rng(1).normal(0, 12, (128, 160, 3))
    photo = np.clip(shading[..., None] * [1.0, 0.7, 0.6] + texture, 0, 255).astype(np.uint8)
    Image.fromarray(photo).filter(ImageFilter.GaussianBlur(1)).save(tmp_path / f"x{suffix}")
    load = LoadImage(reader=Image2DReader(channels=1), image_only=True)
    with pytest.raises(
        ValueError, match=rf"x{suffix}: \d+% of the mask's pixels are grey levels .* as in a photograph"
    ):
        BinarizeLabel()(load(tmp_path / f"x{suffix}"))
    # a mask whose lesion fills the image, its edge blurred by 5 pixels, is still a mask
    lesion = (((rows - 64) ** 2 + (cols - 80) ** 2) <= 60**2).astype(np.uint8) * 255
    Image.fromarray(lesion).filter(ImageFilter.GaussianBlur(5)).save(tmp_path / f"mask{suffix}")
    found = BinarizeLabel()(load(tmp_path / f"mask{suffix}")).numpy()[..., :].T.astype(bool)
    assert 2 * (found & (lesion > 0)).sum() / (found.sum() + (lesion > 0).sum()) > 0.95
    # a fixed threshold is for soft labels, whose grey levels are meant
    assert BinarizeLabel(threshold=127)(load(tmp_path / f"x{suffix}")).sum() > 0


def test_keep_largest_component_of_an_array_keeps_its_type_and_metadata():
    from monai_unets.transforms import KeepLargestComponent

    affine = torch.diag(torch.tensor([2.0, 3, 1, 1]))
    labels = MetaTensor(torch.tensor([[[1, 1, 0, 0, 1], [0, 0, 0, 1, 1]]]), affine=affine)
    kept = KeepLargestComponent([1])(labels)
    assert isinstance(kept, MetaTensor) and torch.equal(kept.affine, labels.affine)
    # the two components of class 1 touch nowhere, not even at a corner: the larger (3 voxels) stays
    assert kept.as_tensor().tolist() == [[[0, 0, 0, 0, 1], [0, 0, 0, 1, 1]]]
    assert KeepLargestComponent([1])(np.array([[1, 0, 1, 1]])).tolist() == [[0, 0, 1, 1]]
