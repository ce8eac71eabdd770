from __future__ import annotations

import numpy as np
import pytest
import torch
from monai_unets.transforms import AboveThreshold, PlannedNormalize, PlannedNormalized, normalised_background


def test_ct_clips_then_zscores_with_the_plan_statistics():
    norm = PlannedNormalized("image", {"scheme": "ct", "clip": [-100.0, 200.0], "mean": 50.0, "std": 25.0})
    out = norm({"image": torch.tensor([[-1000.0, 0.0, 50.0, 1000.0]])})["image"]
    torch.testing.assert_close(out, torch.tensor([[-6.0, -2.0, 0.0, 6.0]]))


def test_mr_zscores_each_image_on_its_nonzero_voxels():
    norm = PlannedNormalized("image", {"scheme": "zscore_nonzero"})
    for scale in (1.0, 300.0):
        out = norm({"image": torch.tensor([[0.0, 1.0, 3.0, 0.0]]) * scale})["image"]
        torch.testing.assert_close(out, torch.tensor([[0.0, -1.0, 1.0, 0.0]]))


def test_mr_zscores_each_channel_of_a_multi_modal_image_on_its_own():
    # two modalities of unrelated scales: pooled statistics had made the smaller one nearly constant
    norm = PlannedNormalized("image", {"scheme": "zscore_nonzero"})
    out = norm({"image": torch.tensor([[0.0, 1.0, 3.0], [0.0, 1000.0, 3000.0]])})["image"]
    torch.testing.assert_close(out, torch.tensor([[0.0, -1.0, 1.0], [0.0, -1.0, 1.0]]))


def test_normalising_leaves_the_caller_s_image_as_it_was():
    # MONAI's channel-wise normalisation had written the normalised values into the caller's array or tensor
    for image in (np.array([[0.0, 100.0, 200.0, 255.0]], np.float32), torch.tensor([[0.0, 100.0, 200.0, 255.0]])):
        kept = image.copy() if isinstance(image, np.ndarray) else image.clone()
        PlannedNormalize({"scheme": "zscore_nonzero"})(image)
        PlannedNormalized("image", {"scheme": "zscore_nonzero"})({"image": image})
        assert (image == kept).all()


def test_a_ct_normalization_without_its_statistics_names_what_is_missing():
    with pytest.raises(ValueError, match="normalization of scheme 'ct' needs clip; got"):
        PlannedNormalize({"scheme": "ct", "mean": 0.0, "std": 1.0})


def test_the_normalised_background_is_what_the_outside_of_the_body_becomes():
    ct = {"scheme": "ct", "clip": [-100.0, 200.0], "mean": 50.0, "std": 25.0}
    air = PlannedNormalized("image", ct)({"image": torch.tensor([[-1000.0]])})["image"]
    assert normalised_background(ct) == float(air) == -6.0
    assert normalised_background({"scheme": "zscore_nonzero"}) == 0.0


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="scheme"):
        PlannedNormalized("image", {"scheme": "minmax"})


def test_above_threshold():
    assert AboveThreshold(-500)(torch.tensor([-1000.0, -400.0])).tolist() == [False, True]
    # nothing above: everything, so that a foreground crop keeps the image instead of emptying it
    assert AboveThreshold(-500)(torch.tensor([-1000.0, -900.0])).tolist() == [True, True]


def test_without_a_threshold_the_non_zero_region_is_foreground():
    # a z-scored MR: background 0, tissue of both signs
    assert AboveThreshold(None)(torch.tensor([0.0, -1.5, 0.8])).tolist() == [False, True, True]
    assert AboveThreshold(None)(torch.zeros(2)).tolist() == [True, True]


def _loaded(path, array):
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    from monai_unets.transforms import Image2DReader
    from PIL import Image

    Image.fromarray(array).save(path)
    load = LoadImaged("image", reader=Image2DReader(channels=3), image_only=True)
    return Compose([load, EnsureChannelFirstd("image")])({"image": str(path)})


def test_scale_by_bit_depth_puts_every_file_type_in_the_unit_range(tmp_path):
    import numpy as np
    from monai.transforms import ScaleIntensityRanged
    from monai_unets.transforms import ScaleByBitDepthd

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 200, (12, 9, 3), dtype=np.uint8)  # an 8-bit image that does not reach 255
    data = _loaded(tmp_path / "rgb.png", rgb)
    by_255 = ScaleIntensityRanged("image", a_min=0.0, a_max=255.0, b_min=0.0, b_max=1.0)(dict(data))["image"]
    # 8-bit: exactly what trained networks saw, not stretched to the image's own range
    assert torch.equal(ScaleByBitDepthd("image")(data)["image"], by_255)
    assert float(by_255.max()) < 0.8
    for name, array in (
        ("grey16.png", np.array([[0, 1000], [4095, 12]], dtype=np.uint16)),
        ("float.tif", np.array([[-3.5, 0.0], [2.0, 15.6]], dtype=np.float32)),
        ("int32.tif", np.array([[-70000, 0], [5, 90000]], dtype=np.int32)),
    ):
        out = ScaleByBitDepthd("image")(_loaded(tmp_path / name, array))["image"]
        assert float(out.min()) == 0.0 and float(out.max()) == 1.0, name
    one_bit = _loaded(tmp_path / "mask.png", np.array([[True, False], [False, True]]))
    out = ScaleByBitDepthd("image")(one_bit)["image"]
    assert sorted(out.unique().tolist()) == [0.0, 1.0] and out.meta["mode"] == "1"


def test_scale_by_bit_depth_without_a_recorded_mode():
    from monai_unets.transforms import ScaleByBitDepth

    scale = ScaleByBitDepth()
    torch.testing.assert_close(scale(torch.tensor([[0.0, 51.0, 255.0]])), torch.tensor([[0.0, 0.2, 1.0]]))
    torch.testing.assert_close(scale(torch.tensor([[0.0, 1000.0, 4000.0]])), torch.tensor([[0.0, 0.25, 1.0]]))
    assert scale(torch.tensor([[0, 255]], dtype=torch.uint8)).dtype == torch.float32


def test_scale_by_bit_depth_scales_16_bit_and_float_rgb_by_their_own_range(tmp_path):
    import numpy as np
    import SimpleITK as sitk
    from monai.data import MetaTensor
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
    from monai_unets.transforms import Image2DReader, ScaleByBitDepth, ScaleByBitDepthd

    # PIL calls a 16-bit RGB image "RGB"; the depth of the values read decides, not the mode
    image = MetaTensor(torch.tensor([[[0.0, 1024.0, 2048.0]]]), meta={"mode": "RGB", "bits_per_sample": 16})
    torch.testing.assert_close(ScaleByBitDepth()(image).as_tensor(), torch.tensor([[[0.0, 0.5, 1.0]]]))
    load = Compose(
        [LoadImaged("image", reader=Image2DReader(channels=3), image_only=True), EnsureChannelFirstd("image")]
    )
    for name, array in (
        ("rgb12.png", (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 50 + 100).astype(np.uint16)),  # 100..3650 of 65535
        ("rgb12.tif", (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 50 + 100).astype(np.uint16)),
        ("rgbf.tif", np.linspace(-0.5, 2.0, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)),
    ):
        sitk.WriteImage(sitk.GetImageFromArray(array, isVector=True), str(tmp_path / name))
        out = ScaleByBitDepthd("image")(load({"image": str(tmp_path / name)}))["image"]
        expected = (array - array.min()) / (array.max() - array.min())
        np.testing.assert_allclose(out.numpy(), expected.transpose(2, 1, 0), atol=1e-6, err_msg=name)  # (C, W, H)
