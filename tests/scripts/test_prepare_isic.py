"""Tests of the ISIC datalist tool and of the shared split helper, on fake ISIC 2017 / 2018 folders."""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai_unets.scripts.datalist import LabelledImage, split_train_val_test
from monai_unets.scripts.prepare_isic import find_isic_pairs, prepare_isic
from PIL import Image


def _isic_id(number: int) -> str:
    return f"ISIC_{number:07d}"


def _write_image(path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = (6, 8, 3) if mode == "RGB" else (6, 8)
    Image.fromarray(np.full(channels, 128, dtype=np.uint8)).save(path)


def make_isic2018(root: Path, image_ids: Iterable[int], mask_ids: Iterable[int]) -> tuple[Path, Path]:
    """ISIC 2018 Task 1 layout, with the licence files the official archives contain."""
    images = root / "ISIC2018_Task1-2_Training_Input"
    masks = root / "ISIC2018_Task1_Training_GroundTruth"
    for number in image_ids:
        _write_image(images / f"{_isic_id(number)}.jpg")
    for number in mask_ids:
        _write_image(masks / f"{_isic_id(number)}_segmentation.png", mode="L")
    (images / "ATTRIBUTION.txt").write_text("attribution\n")
    (masks / "LICENSE.txt").write_text("licence\n")
    return images, masks


def make_isic2017(root: Path, part: str, ids: Iterable[int]) -> tuple[Path, Path]:
    """ISIC 2017 layout: superpixel images and a metadata CSV share the image folder."""
    images = root / f"ISIC-2017_{part}_Data"
    masks = root / f"ISIC-2017_{part}_Part1_GroundTruth"
    ids = list(ids)
    for number in ids:
        _write_image(images / f"{_isic_id(number)}.jpg")
        _write_image(images / f"{_isic_id(number)}_superpixels.png")
        _write_image(masks / f"{_isic_id(number)}_segmentation.png", mode="L")
    (images / f"ISIC-2017_{part}_Data_metadata.csv").write_text(
        "image_id,age_approximate,sex\n" + "".join(f"{_isic_id(n)},55,female\n" for n in ids)
    )
    return images, masks


def _ids(items: list[dict[str, str]]) -> list[str]:
    return [Path(item["image"]).stem for item in items]


def test_pairs_isic2018_by_id_and_reports_unpaired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images, masks = make_isic2018(tmp_path, image_ids=range(6), mask_ids=[1, 2, 3, 4, 5, 9])
    with caplog.at_level(logging.WARNING):
        found = find_isic_pairs([images], [masks])
    assert [pair.id for pair in found.pairs] == [_isic_id(n) for n in range(1, 6)]
    for pair in found.pairs:
        assert pair.image == images / f"{pair.id}.jpg"
        assert pair.label == masks / f"{pair.id}_segmentation.png"
    assert found.images_without_mask == [images / "ISIC_0000000.jpg"]
    assert found.masks_without_image == [masks / "ISIC_0000009_segmentation.png"]
    assert "1 images without mask" in caplog.text and "ISIC_0000000.jpg" in caplog.text
    assert "1 masks without image" in caplog.text and "ISIC_0000009_segmentation.png" in caplog.text


def test_pairs_isic2017_folders_ignoring_superpixels_and_csv(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    train_images, train_masks = make_isic2017(tmp_path, "Training", range(0, 8))
    val_images, val_masks = make_isic2017(tmp_path, "Validation", range(8, 11))
    with caplog.at_level(logging.WARNING):
        found = find_isic_pairs([train_images, val_images], [train_masks, val_masks])
    assert [pair.id for pair in found.pairs] == [_isic_id(n) for n in range(11)]
    assert all(pair.image.suffix == ".jpg" for pair in found.pairs)
    assert found.images_without_mask == [] and found.masks_without_image == []
    assert "superpixels" not in caplog.text


def test_duplicate_id_across_folders_names_both_files(tmp_path: Path) -> None:
    train_images, train_masks = make_isic2017(tmp_path, "Training", range(0, 4))
    test_images, test_masks = make_isic2017(tmp_path, "Test_v2", range(3, 6))
    with pytest.raises(ValueError, match="ISIC_0000003") as error:
        find_isic_pairs([train_images, test_images], [train_masks, test_masks])
    assert str(train_images / "ISIC_0000003.jpg") in str(error.value)
    assert str(test_images / "ISIC_0000003.jpg") in str(error.value)


def test_duplicate_id_within_a_folder_is_an_error(tmp_path: Path) -> None:
    images, masks = make_isic2018(tmp_path, image_ids=range(3), mask_ids=range(3))
    _write_image(images / "ISIC_0000001.png")
    with pytest.raises(ValueError, match="two image files"):
        find_isic_pairs([images], [masks])


def test_missing_folder_is_named(tmp_path: Path) -> None:
    images, _ = make_isic2018(tmp_path, image_ids=range(3), mask_ids=range(3))
    missing = tmp_path / "ISIC2018_Task1_Validation_GroundTruth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        find_isic_pairs([images], [missing])


def test_folder_without_isic_files_is_named(tmp_path: Path) -> None:
    _, masks = make_isic2018(tmp_path, image_ids=range(3), mask_ids=range(3))
    empty = tmp_path / "downloads"
    empty.mkdir()
    (empty / "notes.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=f"No ISIC image .* in folder {re.escape(str(empty))}"):
        find_isic_pairs([empty], [masks])


def test_no_pair_is_an_error_naming_the_folders(tmp_path: Path) -> None:
    images, masks = make_isic2018(tmp_path, image_ids=range(3), mask_ids=range(3, 6))
    with pytest.raises(ValueError, match="No image in") as error:
        find_isic_pairs([images], [masks])
    assert str(images) in str(error.value) and str(masks) in str(error.value)


def test_paper_split_validates_on_test_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images, masks = make_isic2018(tmp_path, image_ids=range(20), mask_ids=range(20))
    with caplog.at_level(logging.WARNING):
        result = prepare_isic([images], [masks], tmp_path / "datalist.json", val_fraction=0)
    content = json.loads(result.path.read_text())
    assert content["counts"] == {"training": 14, "validation": 6, "test": 6}
    assert len(content["training"]) == 14 and len(content["test"]) == 6
    assert content["validation"] == content["test"]
    assert not set(_ids(content["training"])) & set(_ids(content["test"]))
    assert "validation list is the test list" in caplog.text


def test_default_split_holds_out_part_of_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images, masks = make_isic2018(tmp_path, image_ids=range(20), mask_ids=range(21))
    with caplog.at_level(logging.WARNING):
        result = prepare_isic([images], [masks], tmp_path / "datalist.json")
    content = json.loads(result.path.read_text())
    assert content["counts"] == {"training": 13, "validation": 1, "test": 6}
    assert content["seed"] == 42 and content["masks_without_image"] == 1 and content["images_without_mask"] == 0
    assert "description" in content
    parts = [set(_ids(content[key])) for key in ("training", "validation", "test")]
    assert sum(map(len, parts)) == 20 and set().union(*parts) == {_isic_id(n) for n in range(20)}
    assert "validation list is the test list" not in caplog.text
    assert result.summary().endswith("training 13, validation 1, test 6; 0 images without mask, 1 masks without image")


def test_split_is_reproducible_and_depends_on_the_seed(tmp_path: Path) -> None:
    images, masks = make_isic2018(tmp_path, image_ids=range(30), mask_ids=range(30))
    first = json.loads(prepare_isic([images], [masks], tmp_path / "a.json", seed=7).path.read_text())
    again = json.loads(prepare_isic([images], [masks], tmp_path / "b.json", seed=7).path.read_text())
    other = json.loads(prepare_isic([images], [masks], tmp_path / "c.json", seed=8).path.read_text())
    keys = ("training", "validation", "test")
    assert [first[key] for key in keys] == [again[key] for key in keys]
    assert [first[key] for key in keys] != [other[key] for key in keys]


def test_split_does_not_depend_on_input_order() -> None:
    samples = [LabelledImage(f"s{i:02d}", Path(f"s{i:02d}.jpg"), Path(f"s{i:02d}.png")) for i in range(25)]
    shuffled = samples.copy()
    random.Random(0).shuffle(shuffled)
    assert split_train_val_test(samples, seed=3) == split_train_val_test(shuffled, seed=3)


@pytest.mark.parametrize(
    ("train_fraction", "val_fraction", "count"), [(0.0, 0.1, 10), (1.0, 0.1, 10), (0.7, 1.0, 10), (0.7, 0.1, 2)]
)
def test_split_rejects_bad_fractions_and_tiny_datasets(train_fraction: float, val_fraction: float, count: int) -> None:
    samples = [LabelledImage(f"s{i}", Path(f"s{i}.jpg"), Path(f"s{i}.png")) for i in range(count)]
    with pytest.raises(ValueError):
        split_train_val_test(samples, train_fraction, val_fraction)


def test_relative_and_absolute_paths_load_with_monai(tmp_path: Path) -> None:
    images, masks = make_isic2018(tmp_path / "isic", image_ids=range(10), mask_ids=range(10))
    inside = prepare_isic([images], [masks], tmp_path / "isic" / "datalist.json").path
    outside = prepare_isic([images], [masks], tmp_path / "lists" / "datalist.json").path
    inside_content = json.loads(inside.read_text())
    assert inside_content["training"][0]["image"].startswith("ISIC2018_Task1-2_Training_Input/")
    assert Path(json.loads(outside.read_text())["training"][0]["image"]).is_absolute()
    for datalist in (inside, outside):
        for key in ("training", "validation", "test"):
            items = load_decathlon_datalist(datalist, data_list_key=key)
            assert items and all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)
