from __future__ import annotations

import numpy as np
import pytest
from monai_unets.handlers import label_map, label_volumes, render_overlay
from monai_unets.handlers.overlays import PANEL_SIZE, PREDICTION_COLORS, TRUTH_COLORS


def _pixels(picture, color) -> np.ndarray:
    return np.argwhere(np.all(np.asarray(picture) == color, axis=-1))


def test_label_map_from_a_mask_and_from_one_hot():
    assert label_map(np.array([[[0.2, 0.7]]])).tolist() == [[0, 1]]
    one_hot = np.zeros((3, 1, 3))
    one_hot[0, 0, 0] = one_hot[1, 0, 1] = one_hot[2, 0, 2] = 1
    assert label_map(one_hot).tolist() == [[0, 1, 2]]
    many = np.zeros((300, 1, 2))
    many[299, 0, 1] = 1
    assert label_map(many).tolist() == [[0, 299]]  # beyond 256 classes the labels do not wrap round


def test_label_volumes_in_millilitres_from_the_affine():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:4] = 1  # 400 voxels
    labels[9, 9, 9] = 2
    affine = np.diag([0.5, 0.5, 2.0, 1.0])  # 0.5 mm^3 per voxel
    assert label_volumes(labels, affine, 2) == pytest.approx([0.2, 0.0005])
    # a rotated grid has the same voxel volume
    rotation = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], float)
    oblique = affine.copy()
    oblique[:3, :3] = rotation @ affine[:3, :3]
    assert label_volumes(labels, oblique, 2) == pytest.approx([0.2, 0.0005])


def test_label_sizes_of_2d_images_are_pixels():
    labels = np.zeros((6, 8), np.uint8)
    labels[1:3, 1:4] = 1
    assert label_volumes(labels, None, 1) == [6.0]


def test_2d_overlays_show_the_file_as_viewers_do(tmp_path):
    from monai.transforms import LoadImage
    from monai_unets.transforms import Image2DReader
    from PIL import Image

    # a landscape image, 80 wide and 48 high, with the lesion in its top left; the truth is the lesion, the
    # prediction a box at the bottom right
    truth_pixels = np.zeros((48, 80), np.uint8)
    truth_pixels[5:15, 10:40] = 255
    predicted_pixels = np.zeros_like(truth_pixels)
    predicted_pixels[30:40, 60:75] = 255
    for name, pixels in (("image", truth_pixels), ("truth", truth_pixels), ("prediction", predicted_pixels)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    # loaded as the 2D bundles load them (width first)
    load_image, load_mask = (
        LoadImage(reader=Image2DReader(channels=c), image_only=True, ensure_channel_first=True) for c in (3, 1)
    )
    image = load_image(tmp_path / "image.png")
    truth, prediction = (label_map(load_mask(tmp_path / f"{name}.png") / 255) for name in ("truth", "prediction"))
    assert image.shape == (3, 80, 48)

    picture = render_overlay(image, truth, prediction, ["lesion"])
    scale = PANEL_SIZE / 80
    assert (picture.width, picture.height - 34) == (PANEL_SIZE, round(48 * scale))  # without the legend below
    panel = np.asarray(picture)[: round(48 * scale)]
    green, red = _pixels(panel, TRUTH_COLORS[0]), _pixels(panel, PREDICTION_COLORS[0])
    # (row, column) of the contours' corners: the lesion's rows and columns in the file
    assert green.min(axis=0) == pytest.approx([5 * scale, 10 * scale], abs=2)
    assert green.max(axis=0) == pytest.approx([15 * scale, 40 * scale], abs=3)
    assert red.min(axis=0) == pytest.approx([30 * scale, 60 * scale], abs=2)
    assert red.max(axis=0) == pytest.approx([40 * scale, 75 * scale], abs=3)


def _panels(picture, count: int) -> list[np.ndarray]:
    width = (picture.width - 4 * (count - 1)) // count
    array = np.asarray(picture)
    return [array[:width, i * (width + 4) : i * (width + 4) + width] for i in range(count)]


def test_3d_views_are_radiological_whatever_the_storage_orientation():
    shape = (20, 20, 20)
    truth = np.zeros(shape, np.uint8)
    truth[14:18, 14:18, 14:18] = 1  # patient's right, anterior, superior in a RAS grid
    image = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    ras = render_overlay(image, truth, np.zeros_like(truth), ["organ"], np.eye(4))
    for panel in _panels(ras, 3):
        rows, cols = np.nonzero(np.all(panel == TRUTH_COLORS[0], axis=-1))
        # right on the left of the picture, anterior (axial) or superior (coronal, sagittal) at the top;
        # sagittal shows anterior on the left
        assert rows.max() < panel.shape[0] / 2 and cols.max() < panel.shape[1] / 2
    # the same anatomy stored LPS (first two axes reversed) gives the same picture
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_affine[:2, 3] = 19
    flip = (slice(None, None, -1), slice(None, None, -1))
    lps = render_overlay(image[(slice(None), *flip)], truth[flip], np.zeros_like(truth), ["organ"], lps_affine)
    np.testing.assert_array_equal(np.asarray(lps), np.asarray(ras))


def test_3d_views_cut_through_the_truth_even_where_the_prediction_is_larger():
    truth = np.zeros((20, 20, 20), np.uint8)
    truth[8:11, 8:11, 15:17] = 1
    prediction = np.zeros_like(truth)
    prediction[2:18, 2:18, 2:6] = 1  # a large false positive in other slices
    picture = render_overlay(np.zeros((1, 20, 20, 20)), truth, prediction, ["organ"], np.eye(4))
    for panel in _panels(picture, 3):
        assert np.all(panel == TRUTH_COLORS[0], axis=-1).any()


def test_3d_views_show_a_small_class_that_lies_off_the_largest_slice_of_the_big_one():
    truth = np.zeros((30, 30, 20), np.uint8)
    truth[5:25, 5:25, 2:16] = 1
    truth[2:28, 5:25, 2:4] = 1  # the organ is widest at its lower end
    truth[10:13, 10:13, 12:14] = 2  # a small tumour higher up
    # predicted perfectly (its contours cover the true ones), and missed
    for prediction, color in ((truth, PREDICTION_COLORS[1]), (np.zeros_like(truth), TRUTH_COLORS[1])):
        picture = render_overlay(np.zeros((1, 30, 30, 20)), truth, prediction, ["organ", "tumour"], np.eye(4))
        # the slices with the most foreground, first of equal ones, had cut beside the tumour in every panel
        for panel in _panels(picture, 3):
            assert np.all(panel == color, axis=-1).any()


def test_3d_views_cut_a_structure_of_equal_slices_through_its_middle():
    from monai_unets.handlers.overlays import _views_3d

    organ = np.zeros((10, 10, 12), np.uint8)
    organ[2:8, 2:8, 3:8] = 1
    # each voxel's coordinates as its channels, so each view tells the slice it cuts
    coordinates = np.stack(np.meshgrid(*map(np.arange, organ.shape), indexing="ij"), axis=-1).astype(np.float32)
    views = _views_3d(coordinates, organ, organ, (1.0, 1.0, 1.0))
    # the first of equal slices was the structure's edge (2 and 3)
    assert [np.unique(view[0][..., axis]).tolist() for view, axis in zip(views, (2, 1, 0))] == [[5], [5], [5]]


def test_3d_panels_have_square_millimetres():
    truth = np.zeros((40, 40, 10), np.uint8)
    picture = render_overlay(np.zeros((1, 40, 40, 10)), truth, truth, ["organ"], np.diag([1.0, 1.0, 4.0, 1.0]))
    coronal = _panels(picture, 3)[1]
    # 40 mm wide, 40 mm high: the coronal panel is square although it has 10 slices
    assert np.asarray(picture).shape[0] - 34 == PANEL_SIZE and coronal.shape[1] == PANEL_SIZE


def test_grids_that_differ_are_an_error():
    with pytest.raises(ValueError, match="not on one grid"):
        render_overlay(np.zeros((1, 4, 4)), np.zeros((4, 5), np.uint8), np.zeros((4, 4), np.uint8), ["a"])


@pytest.mark.parametrize(
    ("size", "names"),
    [((12, 300), ["lesion"]), ((300, 280), ["liver", "spleen", "left kidney", "right kidney", "gallbladder", "aorta"])],
)
def test_the_colour_key_is_whole_for_a_thin_image_and_for_many_classes(size, names):
    # a thin image had its key cut off at the image's width, and a long list of classes ran past the picture
    truth = np.zeros(size, np.uint8)
    truth[2:10, 20:60] = 1
    picture = np.asarray(render_overlay(np.random.rand(3, *size), truth, truth, names))
    panel_height = max(size) * PANEL_SIZE // max(size)
    key = picture[panel_height:]
    # the red swatch of the last class in the prediction row, and a dark margin right of every entry
    last = PREDICTION_COLORS[(len(names) - 1) % len(PREDICTION_COLORS)]
    assert (key == last).all(axis=-1).any()
    assert key[:, -2:].max() == 0
    assert picture.shape[1] >= 240
