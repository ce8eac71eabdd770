"""Tests of the synthetic dermoscopy-like demo dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai_unets.scripts.demo_data import generate_demo_dataset, make_demo_sample
from PIL import Image

NUM_IMAGES = 12


@pytest.fixture(scope="module")
def demo_datalist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=NUM_IMAGES, seed=0)


def _pairs(datalist: Path) -> list[tuple[Path, Path]]:
    return [
        (datalist.parent / f"images/demo_{i:03d}.jpg", datalist.parent / f"masks/demo_{i:03d}_segmentation.png")
        for i in range(NUM_IMAGES)
    ]


def test_images_are_rgb_of_varied_non_square_sizes(demo_datalist: Path) -> None:
    sizes = []
    for image_path, _ in _pairs(demo_datalist):
        with Image.open(image_path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            sizes.append(image.size)
    assert all(96 <= side <= 320 for size in sizes for side in size)
    assert all(width != height for width, height in sizes)
    assert len(set(sizes)) > NUM_IMAGES // 2


def test_masks_are_binary_and_match_their_image(demo_datalist: Path) -> None:
    for image_path, mask_path in _pairs(demo_datalist):
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            assert mask.format == "PNG" and mask.mode == "L" and mask.size == image.size
            values = set(np.unique(np.asarray(mask)).tolist())
        assert values == {0, 255}


def test_lesion_is_darker_than_skin_but_not_trivially_separable(demo_datalist: Path) -> None:
    for image_path, mask_path in _pairs(demo_datalist):
        grey = np.asarray(Image.open(image_path).convert("L"), dtype=np.float32)
        lesion = np.asarray(Image.open(mask_path)) == 255
        assert grey[lesion].mean() < grey[~lesion].mean() - 30
        # Shading, noise and hairs make the darkest skin pixels darker than the brightest lesion pixels.
        assert grey[~lesion].min() < grey[lesion].max()


def test_same_seed_gives_the_same_data_and_another_seed_differs(tmp_path: Path, demo_datalist: Path) -> None:
    again = generate_demo_dataset(tmp_path / "again", num_images=NUM_IMAGES, seed=0)
    other = generate_demo_dataset(tmp_path / "other", num_images=NUM_IMAGES, seed=1)
    for (image, mask), (image_again, mask_again) in zip(_pairs(demo_datalist), _pairs(again)):
        assert mask.read_bytes() == mask_again.read_bytes()
        assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(image_again)))
    assert json.loads(demo_datalist.read_text()) == json.loads(again.read_text())
    assert [m.read_bytes() for _, m in _pairs(demo_datalist)] != [m.read_bytes() for _, m in _pairs(other)]


def test_datalist_loads_with_monai(demo_datalist: Path) -> None:
    content = json.loads(demo_datalist.read_text())
    assert content["counts"] == {"training": 7, "validation": 1, "test": 4}
    seen = []
    for key in ("training", "validation", "test"):
        items = load_decathlon_datalist(demo_datalist, data_list_key=key)
        assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)
        seen += [Path(item["image"]).name for item in items]
    assert sorted(seen) == [f"demo_{i:03d}.jpg" for i in range(NUM_IMAGES)]


def test_make_demo_sample_respects_the_size_range() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        image, mask = make_demo_sample(rng, min_size=32, max_size=34)
        assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[:2] == mask.shape
        assert all(32 <= side <= 34 for side in mask.shape) and mask.shape[0] != mask.shape[1]
        assert mask.any()


@pytest.mark.parametrize(("num_images", "min_size", "max_size"), [(2, 96, 320), (10, 16, 64), (10, 128, 128)])
def test_rejects_bad_arguments(tmp_path: Path, num_images: int, min_size: int, max_size: int) -> None:
    with pytest.raises(ValueError):
        generate_demo_dataset(tmp_path, num_images=num_images, min_size=min_size, max_size=max_size)


@pytest.mark.parametrize(
    "arguments, message",
    [
        # each had been "monai-unets: error: ..." with exit status 1, where demo-ct gives a usage error
        (
            ["--num-images", "2"],
            "monai-unets demo-data: error: argument --num-images: must be an integer >= 3, got '2'",
        ),
        (["--min-size", "16"], "monai-unets demo-data: error: argument --min-size: must be an integer >= 32, got '16'"),
        (
            ["--min-size", "128", "--max-size", "128"],
            "monai-unets: error: --max-size must be above --min-size (128), got 128.",
        ),
    ],
)
def test_counts_and_sizes_out_of_range_are_usage_errors(arguments, message, tmp_path, capsys):
    from monai_unets.scripts.cli import main

    try:
        status = main(["demo-data", "--output-dir", str(tmp_path / "out"), *arguments])
    except SystemExit as stop:
        status = stop.code
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert not (tmp_path / "out").exists()
