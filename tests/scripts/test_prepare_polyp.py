"""Tests of the polyp datalist tool on fake Kvasir-SEG and CVC-ClinicDB folders in their download layouts."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai_unets.scripts import cli
from monai_unets.scripts.datalist import LabelledImage, split_by_count
from monai_unets.scripts.prepare_polyp import find_clinicdb_pairs, find_kvasir_pairs, prepare_polyp
from PIL import Image

KEYS = ("training", "validation", "test")


def _write(path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (6, 8, 3) if mode == "RGB" else (6, 8)
    Image.fromarray(np.full(shape, 200, dtype=np.uint8)).save(path)


def _kvasir_id(number: int) -> str:
    # Kvasir-SEG ids are opaque 25-character strings; the number keeps them distinct and sortable.
    return f"cju{number:04d}qkwl35piu0993l0"


def make_kvasir(root: Path, image_ids: Iterable[int], mask_ids: Iterable[int] | None = None) -> Path:
    """Kvasir-SEG layout: images/<id>.jpg, masks/<id>.jpg and the bounding-box JSON beside them."""
    folder = root / "Kvasir-SEG"
    image_ids = list(image_ids)
    for number in image_ids:
        _write(folder / "images" / f"{_kvasir_id(number)}.jpg")
    for number in image_ids if mask_ids is None else mask_ids:
        _write(folder / "masks" / f"{_kvasir_id(number)}.jpg", mode="L")
    (folder / "kavsir_bboxes.json").write_text("{}\n")
    return folder


def make_clinicdb(root: Path, numbers: Iterable[int], variant: str = "tif") -> Path:
    """CVC-ClinicDB layout: Original/<n>.tif + Ground Truth/<n>.tif, or the PNG/ variant."""
    folder = root / "CVC-ClinicDB"
    base = folder / "PNG" if variant == "png" else folder
    for number in numbers:
        _write(base / "Original" / f"{number}.{variant}")
        _write(base / "Ground Truth" / f"{number}.{variant}", mode="L")
    return folder


def _by_dataset(content: dict, key: str, dataset: str) -> list[str]:
    return [Path(case["image"]).stem for case in content[key] if case["dataset"] == dataset]


@pytest.mark.parametrize("variant", ["tif", "png"])
def test_pranet_style_split_per_dataset(tmp_path: Path, variant: str) -> None:
    kvasir = make_kvasir(tmp_path, range(20))
    clinicdb = make_clinicdb(tmp_path, range(1, 13), variant)
    result = prepare_polyp(
        tmp_path / "datalist.json", kvasir=kvasir, clinicdb=clinicdb, kvasir_train=15, clinicdb_train=8
    )
    content = json.loads(result.path.read_text())
    # Kvasir: 15 for training, of which round(1.5) = 2 validate; ClinicDB: 8, of which round(0.8) = 1.
    expected = {"kvasir": (13, 2, 5), "clinicdb": (7, 1, 4)}
    for dataset, counts in expected.items():
        assert tuple(len(_by_dataset(content, key, dataset)) for key in KEYS) == counts
        assert content["datasets"][dataset]["counts"] == dict(zip(KEYS, counts))
        parts = [set(_by_dataset(content, key, dataset)) for key in KEYS]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert content["counts"] == {"training": 20, "validation": 3, "test": 9}
    assert set().union(*(_by_dataset(content, key, "clinicdb") for key in KEYS)) == {str(n) for n in range(1, 13)}
    for case in content["training"]:
        assert Path(case["label"]).name == Path(case["image"]).name
        assert ("Ground Truth" in case["label"]) == (case["dataset"] == "clinicdb")
    for key in KEYS:
        items = load_decathlon_datalist(result.path, data_list_key=key)
        assert all(Path(item["image"]).is_file() and Path(item["label"]).is_file() for item in items)
    assert result.summary().endswith("training 20, validation 3, test 9; 0 unpaired files")


def test_folder_may_be_the_parent_or_the_variant_folder(tmp_path: Path) -> None:
    make_kvasir(tmp_path, range(4))
    clinicdb = make_clinicdb(tmp_path, range(1, 5), "png")
    assert len(find_kvasir_pairs(tmp_path).pairs) == 4
    assert len(find_clinicdb_pairs(tmp_path).pairs) == 4
    found = find_clinicdb_pairs(clinicdb / "PNG")
    assert found.image_dir == clinicdb / "PNG" / "Original" and found.mask_dir == clinicdb / "PNG" / "Ground Truth"
    assert all(pair.dataset == "clinicdb" for pair in found.pairs)


def test_one_dataset_alone(tmp_path: Path) -> None:
    clinicdb = make_clinicdb(tmp_path, range(1, 13))
    content = json.loads(prepare_polyp(tmp_path / "c.json", clinicdb=clinicdb, clinicdb_train=8).path.read_text())
    assert content["counts"] == {"training": 7, "validation": 1, "test": 4}
    assert set(content["datasets"]) == {"clinicdb"}
    kvasir = make_kvasir(tmp_path, range(20))
    alone = json.loads(prepare_polyp(tmp_path / "k.json", kvasir=kvasir, kvasir_train=15).path.read_text())
    both = json.loads(
        prepare_polyp(
            tmp_path / "b.json", kvasir=kvasir, clinicdb=clinicdb, kvasir_train=15, clinicdb_train=8
        ).path.read_text()
    )
    # Each dataset is split on its own, so adding ClinicDB leaves the Kvasir split unchanged.
    for key in KEYS:
        assert _by_dataset(alone, key, "kvasir") == _by_dataset(both, key, "kvasir")


def test_val_fraction_zero_validates_on_the_test_split(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kvasir = make_kvasir(tmp_path, range(20))
    clinicdb = make_clinicdb(tmp_path, range(1, 13))
    with caplog.at_level(logging.WARNING):
        result = prepare_polyp(
            tmp_path / "d.json", kvasir=kvasir, clinicdb=clinicdb, kvasir_train=15, clinicdb_train=8, val_fraction=0
        )
    content = json.loads(result.path.read_text())
    assert content["counts"] == {"training": 23, "validation": 9, "test": 9}
    assert content["validation"] == content["test"]
    assert caplog.text.count("validation list is the test list") == 1


def test_split_is_reproducible_and_depends_on_the_seed(tmp_path: Path) -> None:
    kvasir = make_kvasir(tmp_path, range(20))

    def split(name: str, seed: int) -> list:
        content = json.loads(prepare_polyp(tmp_path / name, kvasir=kvasir, kvasir_train=15, seed=seed).path.read_text())
        return [content[key] for key in KEYS]

    assert split("a.json", 7) == split("b.json", 7) != split("c.json", 8)


def test_unpaired_and_other_files_are_reported_or_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kvasir = make_kvasir(tmp_path, range(6), mask_ids=[1, 2, 3, 4, 5, 9])
    (kvasir / "images" / "._hidden.jpg").write_bytes(b"not an image")
    (kvasir / "images" / "Thumbs.db").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        found = find_kvasir_pairs(kvasir)
    assert [pair.id for pair in found.pairs] == [_kvasir_id(n) for n in range(1, 6)]
    assert found.images_without_mask == [kvasir / "images" / f"{_kvasir_id(0)}.jpg"]
    assert found.masks_without_image == [kvasir / "masks" / f"{_kvasir_id(9)}.jpg"]
    assert "1 Kvasir-SEG images without mask" in caplog.text and _kvasir_id(0) in caplog.text
    assert "1 Kvasir-SEG masks without image" in caplog.text and _kvasir_id(9) in caplog.text
    result = prepare_polyp(tmp_path / "u.json", kvasir=kvasir, kvasir_train=3)
    assert result.summary().endswith("2 unpaired files")


def test_clear_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one dataset"):
        prepare_polyp(tmp_path / "x.json")
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"Kvasir-SEG folder {missing} does not exist")):
        find_kvasir_pairs(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(f"CVC-ClinicDB folder {tmp_path} has neither layout")):
        find_clinicdb_pairs(tmp_path)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "masks").mkdir()
    with pytest.raises(ValueError, match="No Kvasir-SEG image .* found in folder .*images"):
        find_kvasir_pairs(tmp_path / "empty")
    unmatched = make_kvasir(tmp_path / "unmatched", range(3), mask_ids=range(5, 8))
    with pytest.raises(ValueError, match=re.escape(f"folder {unmatched}")):
        find_kvasir_pairs(unmatched)
    clinicdb = make_clinicdb(tmp_path / "small", range(1, 6))
    too_few = re.escape(f"CVC-ClinicDB folder {clinicdb} has 5") + ".*fewer than the 550 requested"
    with pytest.raises(ValueError, match=too_few):
        prepare_polyp(tmp_path / "x.json", clinicdb=clinicdb)
    _write(clinicdb / "Original" / "1.png")
    with pytest.raises(ValueError, match="two files"):
        find_clinicdb_pairs(clinicdb)


def test_split_by_count_rejects_bad_counts() -> None:
    samples = [LabelledImage(f"s{i}", Path(f"s{i}.jpg"), Path(f"s{i}.png"), "a") for i in range(5)]
    with pytest.raises(ValueError, match="between 2 and its 5"):
        split_by_count({"a": samples}, {"a": 6})
    with pytest.raises(ValueError, match="No training count"):
        split_by_count({"a": samples}, {})
    with pytest.raises(ValueError, match="Nothing left to validate"):
        split_by_count({"a": samples}, {"a": 5}, val_fraction=0)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kvasir = make_kvasir(tmp_path, range(20))
    clinicdb = make_clinicdb(tmp_path, range(1, 13), "png")
    output = tmp_path / "lists" / "polyp.json"
    argv = ["prepare-polyp", "--kvasir", str(kvasir), "--clinicdb", str(clinicdb), "--output", str(output)]
    assert cli.main(argv + ["--kvasir-train", "15", "--clinicdb-train", "8", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip().endswith("training 20, validation 3, test 9; 0 unpaired files")
    assert json.loads(output.read_text())["seed"] == 3
    assert cli.main(argv) == 1
    assert "fewer than the 900 requested" in capsys.readouterr().err
