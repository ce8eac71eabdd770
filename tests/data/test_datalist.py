from __future__ import annotations

import json

import pytest
from monai_unets.data import list_cases


def test_folder_lists_images_sorted_and_skips_others(tmp_path):
    for name in ["b.jpg", "a.PNG", "c.nii.gz", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    cases = list_cases("unused", input_dir=tmp_path)
    assert [c["image"] for c in cases] == [str((tmp_path / n).resolve()) for n in ["a.PNG", "b.jpg", "c.nii.gz"]]


def test_datalist_section_resolves_relative_paths(tmp_path):
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "images/x.jpg", "label": "masks/x.png"}]}))
    cases = list_cases(tmp_path)
    assert cases == [{"image": str(tmp_path / "images/x.jpg"), "label": str(tmp_path / "masks/x.png")}]


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_cases(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_cases(tmp_path, input_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no image file"):
        list_cases(tmp_path, input_dir=tmp_path)


def test_volumes_split_a_multi_series_datalist_image(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import monai_unets.data.datalist as datalist

    study = tmp_path / "study"
    study.mkdir()
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "study"}, {"image": "ct.nii.gz"}]}))
    series = [SimpleNamespace(reference=f"{study}::1.2.{i}") for i in (3, 4)]
    monkeypatch.setattr(datalist, "split_dicom_series", lambda folder: series)
    cases = list_cases(tmp_path, volumes=True)
    assert [c["image"] for c in cases] == [f"{study}::1.2.3", f"{study}::1.2.4", str(tmp_path / "ct.nii.gz")]


def test_cross_validation_folds_validate_every_case_once():
    from monai_unets.data import split_cases

    cases = [{"image": str(i)} for i in range(7)]
    seen = []
    for fold in range(3):
        train, val = split_cases(cases, fold=fold, num_folds=3, seed=1)
        assert sorted(c["image"] for c in train + val) == sorted(c["image"] for c in cases)
        assert not {c["image"] for c in train} & {c["image"] for c in val}
        seen += [c["image"] for c in val]
    assert sorted(seen) == sorted(c["image"] for c in cases)


@pytest.mark.parametrize("kwargs", [{"fold": 3, "num_folds": 3}, {"num_folds": 9}, {"val_fraction": 1.0}])
def test_bad_split_is_refused(kwargs):
    from monai_unets.data import split_cases

    with pytest.raises(ValueError):
        split_cases([{"image": str(i)} for i in range(7)], **kwargs)


def test_validation_holds_out_at_most_max_val_cases():
    from monai_unets.data import split_cases

    cases = [{"image": str(i)} for i in range(40)]
    train, val = split_cases(cases, val_fraction=0.2, max_val_cases=4)
    assert len(val) == 4 and len(train) == 36
    assert sorted(c["image"] for c in train + val) == sorted(c["image"] for c in cases)
    # the held-out cases are the first of the same seeded order: a cap never moves a case from training to
    # validation
    _, uncapped = split_cases(cases, val_fraction=0.2)
    assert len(uncapped) == 8 and all(c in uncapped for c in val)
