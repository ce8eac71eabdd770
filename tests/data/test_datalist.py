from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
from monai_unets.data import list_cases
from monai_unets.data.checks import DataCheckError


def test_folder_lists_images_sorted_and_names_what_it_skips(tmp_path):
    for name in ["b.jpg", "a.PNG", "d.webp", "c.nii.gz", "notes.txt", ".hidden.png", "._b.jpg", ".DS_Store"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.png").mkdir()
    with pytest.warns(UserWarning, match="skipping 3 entries") as caught:
        cases = list_cases("unused", input_dir=tmp_path)
    assert [c["image"] for c in cases] == [str(tmp_path / n) for n in ["a.PNG", "b.jpg", "d.webp"]]
    message = str(caught[0].message)
    assert all(name in message for name in ("c.nii.gz", "notes.txt", "folder.png")) and ".hidden" not in message
    # a hidden image is named apart (it had been left out without a word); macOS's own hidden files are not
    said = " ".join(str(w.message) for w in caught)
    assert (
        "skipping 1 entry (hidden files, whose names begin with a dot: rename them to have them read): .hidden.png"
        in said
    )
    assert "._b.jpg" not in said and ".DS_Store" not in said


def test_a_linked_image_keeps_its_own_name(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "scan_0042.png").write_bytes(b"x")
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "case01.png").symlink_to(tmp_path / "store" / "scan_0042.png")
    (tmp_path / "inbox" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # dangling: loading it names the link
    cases = list_cases("unused", input_dir=tmp_path / "inbox")
    assert [c["image"] for c in cases] == [str(tmp_path / "inbox" / n) for n in ["case01.png", "gone.png"]]


@pytest.mark.parametrize("volumes, name", [(False, "incoming.png"), (True, "incoming.nii.gz")])
def test_a_pipe_named_like_an_image_is_skipped_not_read(tmp_path, volumes, name):
    import os

    # reading a pipe nobody writes to waits forever: the whole batch would hang
    os.mkfifo(tmp_path / name)
    (tmp_path / ("a.png" if not volumes else "a.nii.gz")).write_bytes(b"x")
    with pytest.warns(UserWarning, match=f"not regular files: a pipe, socket or device is never read\\): {name}"):
        cases = list_cases("unused", input_dir=tmp_path, volumes=volumes)
    assert [os.path.basename(c["image"]) for c in cases] == ["a.nii.gz" if volumes else "a.png"]


def test_a_pipe_in_a_dicom_series_folder_is_skipped(tmp_path):
    import os

    import numpy as np
    from monai_unets.data.medical_io import split_dicom_series
    from monai_unets.scripts.demo_ct import write_dicom_series

    write_dicom_series(np.zeros((8, 8, 3), np.int16), tmp_path / "series", (0.8, 0.8, 2.5), (0.0, 0.0, 0.0))
    os.mkfifo(tmp_path / "series" / "slice_x.dcm")
    with pytest.warns(UserWarning, match="slice_x.dcm: not regular files"):
        series = split_dicom_series(tmp_path / "series")
    assert len(series) == 1 and len(series[0].files) == 3


def test_outputs_never_become_inputs(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="is the input folder"):
        list_cases("unused", input_dir=tmp_path, output_dir=tmp_path / "." / "")
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "a_seg.png").write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the output folder is expected there: no warning about skipping it
        cases = list_cases("unused", input_dir=tmp_path, output_dir=tmp_path / "masks")
    assert cases == [{"image": str(tmp_path / "a.png")}]


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

    import monai_unets.data.medical_io as medical_io

    study = tmp_path / "study"
    study.mkdir()
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "study"}, {"image": "ct.nii.gz"}]}))
    series = [SimpleNamespace(reference=f"{study}::1.2.{i}") for i in (3, 4)]
    monkeypatch.setattr(medical_io, "split_dicom_series", lambda folder: series)
    cases = list_cases(tmp_path, volumes=True)
    assert [c["image"] for c in cases] == [f"{study}::1.2.3", f"{study}::1.2.4", str(tmp_path / "ct.nii.gz")]


def test_a_datalist_folder_that_is_no_dicom_series_stays_one_case_of_the_batch(tmp_path, caplog):
    # it fails alone when it is read, as a folder of input_dir does, instead of stopping every case before any runs
    study = tmp_path / "study"
    study.mkdir()
    (study / "notes.txt").write_text("not a DICOM slice")
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "study"}, {"image": "ct.nii.gz"}]}))
    cases = list_cases(tmp_path, volumes=True)
    assert [c["image"] for c in cases] == [str(study), str(tmp_path / "ct.nii.gz")]
    assert f"listing {study} as one case: {study} is no DICOM series folder" in caplog.text


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


def test_a_relative_dataset_folder_gives_absolute_paths(tmp_path, monkeypatch):
    from monai_unets.data import load_datalist

    # ITK changes the working folder while it loads its modules: a relative path read by another thread then
    # points elsewhere, so every case path is absolute from the start
    (tmp_path / "data" / "images").mkdir(parents=True)
    entry = {"image": "images/a.png", "label": "images/a_mask.png"}
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"training": [entry], "test": [entry]}))
    monkeypatch.chdir(tmp_path)
    for cases in (
        list_cases("data", "data/dataset.json", key="test"),
        load_datalist("data/dataset.json", "training", "data"),
        load_datalist("data/dataset.json", "training"),
    ):
        assert cases[0]["image"] == str(tmp_path / "data" / "images" / "a.png")
        assert cases[0]["label"] == str(tmp_path / "data" / "images" / "a_mask.png")


@pytest.mark.parametrize("split", [{"seed": s} for s in range(6)] + [{"fold": f, "num_folds": 3} for f in range(3)])
def test_copies_of_a_case_listed_twice_stay_on_one_side(split):
    from monai_unets.data import split_cases

    cases = [{"image": str(i)} for i in range(8)] + [{"image": "0"}, {"image": "5"}]
    with pytest.warns(UserWarning, match="2 images are listed more than once"):
        train, val = split_cases(cases, **split)
    assert not {c["image"] for c in train} & {c["image"] for c in val}
    assert len(train) + len(val) == 10


@pytest.mark.parametrize(
    "split, validation",
    [({"seed": 0}, ["2", "4"]), ({"seed": 1}, ["0", "5"]), ({"fold": 0, "num_folds": 3}, ["6", "7", "5"])],
)
def test_a_split_without_copies_is_the_one_earlier_versions_made(split, validation):
    from monai_unets.data import split_cases

    # a resumed or repeated training validates on the same cases as before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, val = split_cases([{"image": str(i)} for i in range(8)], **split)
    assert [c["image"] for c in val] == validation


def test_an_empty_or_missing_section_is_named_with_the_datalist(tmp_path):
    # a dataset prepared with every case for training has "test": [], which MONAI's loader met with an IndexError
    datalist = {"training": [{"image": "a.png", "label": "b.png"}], "test": []}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(DataCheckError, match=r"datalist\.json: the 'test' list is empty"):
        list_cases(tmp_path, key="test")
    with pytest.raises(DataCheckError, match=r"datalist has no 'validation' list \(its lists: training"):
        list_cases(tmp_path, key="validation")


def test_a_decathlon_test_list_of_plain_paths_is_read(tmp_path):
    dataset = {"training": [], "test": ["./imagesTs/pancreas_002.nii.gz", "./imagesTs/pancreas_005.nii.gz"]}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    cases = list_cases(tmp_path, tmp_path / "dataset.json", key="test")
    assert cases == [{"image": str(tmp_path / "imagesTs" / f"pancreas_00{i}.nii.gz")} for i in (2, 5)]


def test_isic_superpixel_maps_beside_the_images_are_not_segmented(tmp_path):
    # the ISIC 2017 downloads: ISIC_<id>.jpg with ISIC_<id>_superpixels.png in one folder
    for case in ("ISIC_0012086", "ISIC_0012092"):
        (tmp_path / f"{case}.jpg").write_bytes(b"")
        (tmp_path / f"{case}_superpixels.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipping 2 entries \(ISIC superpixel maps, not images to segment\)"):
        cases = list_cases(tmp_path, input_dir=tmp_path)
    assert [c["image"] for c in cases] == [str(tmp_path / "ISIC_0012086.jpg"), str(tmp_path / "ISIC_0012092.jpg")]


def test_a_datalist_validation_list_validates_as_given(tmp_path):
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir
    from monai_unets.data import split_cases

    training = [{"image": f"t{i}.nii.gz", "label": f"t{i}_l.nii.gz"} for i in range(4)]
    validation = [{"image": f"v{i}.nii.gz", "label": f"v{i}_l.nii.gz"} for i in range(2)]
    (tmp_path / "dataset.json").write_text(json.dumps({"training": training, "validation": validation}))
    for name in ("egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"):
        parser = ConfigParser()
        parser.read_config(str(bundle_dir(name) / "configs" / "train.yaml"))
        parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
        # the 3D bundles had split the training list and never used the listed validation cases
        train, val = parser.get_parsed_content("case_split")
        assert [Path(c["image"]).name for c in val] == ["v0.nii.gz", "v1.nii.gz"]
        assert len(train) == 4 and all(Path(c["image"]).name.startswith("t") for c in train)
    # with folds, the listed cases join the cases the folds are cut from
    folds = [split_cases(training, fold=f, num_folds=3, validation=validation) for f in range(3)]
    assert sorted(c["image"] for _, val in folds for c in val) == sorted(c["image"] for c in training + validation)


def test_the_3d_bundles_split_an_nnunet_raw_dataset(tmp_path):
    # nnU-Net's raw layout has no validation list: the bundles' optional list is empty, the training list split
    from monai.bundle import ConfigParser
    from monai_unets.bundles import bundle_dir

    dataset = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}, "file_ending": ".nii.gz"}
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / folder).mkdir()
    for i in range(5):
        (tmp_path / "imagesTr" / f"case{i}_0000.nii.gz").touch()
        (tmp_path / "labelsTr" / f"case{i}.nii.gz").touch()
    for name in ("egeunet3d_pancreas_ct", "attention_unet_pancreas_ct"):
        parser = ConfigParser()
        parser.read_config(str(bundle_dir(name) / "configs" / "train.yaml"))
        parser["bundle_root"] = parser["dataset_dir"] = str(tmp_path)
        train, val = parser.get_parsed_content("case_split")
        assert len(train) == 4 and len(val) == 1
        assert sorted(Path(c["label"]).name for c in train + val) == [f"case{i}.nii.gz" for i in range(5)]


def test_a_missing_validation_list_is_optional_where_asked(tmp_path):
    from monai_unets.data import load_datalist

    (tmp_path / "dataset.json").write_text(json.dumps({"training": [{"image": "a.nii.gz"}], "validation": []}))
    assert load_datalist(tmp_path / "dataset.json", "validation", required=False) == []
    assert load_datalist(tmp_path / "dataset.json", "test", required=False) == []
    with pytest.raises(DataCheckError, match="the 'validation' list is empty"):
        load_datalist(tmp_path / "dataset.json", "validation")


def test_a_validation_list_repeating_training_cases_is_warned_about():
    from monai_unets.data import split_cases

    training = [{"image": f"t{i}.nii.gz"} for i in range(3)]
    with pytest.warns(UserWarning, match="1 of the 1 images of the validation list are in the training list too"):
        train, val = split_cases(training, validation=[training[0]])
    assert len(train) == 3 and val == [training[0]]


def test_cases_of_a_list_that_the_training_list_repeats_are_warned_about():
    from monai_unets.data import warn_trained_on

    training = [{"image": f"t{i}.png"} for i in range(3)]
    test = [{"image": "t1.png"}, {"image": "new.png"}]
    overlap = r"1 of the 2 images of the test list are in the training list too \(e\.g\. t1\.png\)"
    with pytest.warns(UserWarning, match=overlap):
        assert warn_trained_on(test, training, "test") == test
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_trained_on(test[1:], training, "test") == test[1:]


def test_images_of_a_moved_dataset_that_the_training_used_are_warned_about():
    # evaluated on a copy of the dataset in another place, the images a model trained on had passed unnoticed
    from monai_unets.data import warn_trained_on

    training = [{"image": f"/data/Task07/imagesTr/p{i}.nii.gz"} for i in range(3)]
    moved = [{"image": f"/workspace/Task07/imagesTr/p{i}.nii.gz"} for i in (1, 2)]
    with pytest.warns(
        UserWarning, match=r"2 of the 2 images of the test list have the folder and file names of training"
    ):
        warn_trained_on(moved, training, "test")
    # other folders (the test images) share no folder and file name with the training's
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_trained_on([{"image": "/workspace/Task07/imagesTs/p1.nii.gz"}], training, "test")


def test_a_list_that_repeats_an_image_is_warned_about():
    # the 2D bundles, whose datalists name their validation cases, had trained on a repeated image without a word
    from monai_unets.data import warn_repeated

    cases = [{"image": "a.png", "label": "a_mask.png"}, {"image": "b.png"}, {"image": "a.png", "label": "a_mask.png"}]
    with pytest.warns(UserWarning, match=r"1 images are listed more than once \(e\.g\. a\.png\); they weigh more"):
        assert warn_repeated(cases) == cases


def test_a_folder_of_the_data_files_that_headers_name_is_no_case(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    # data/ct.raw of ct.nhdr had become a failed case ("is no DICOM series folder"), and the run's exit status 1
    (tmp_path / "data").mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(tmp_path / "ct.nhdr"))
    header = (tmp_path / "ct.nhdr").read_text().replace("data file: ct.raw", "data file: data/ct.raw")
    (tmp_path / "ct.nhdr").write_text(header)
    (tmp_path / "ct.raw").rename(tmp_path / "data" / "ct.raw")
    # a folder of other files is still a case, which fails alone when read: a series the reader cannot take
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "slice1").write_bytes(b"x")
    with pytest.warns(UserWarning, match="folders of the data files that headers beside them name\\): data"):
        cases = list_cases("unused", input_dir=tmp_path, volumes=True)
    assert [c["image"] for c in cases] == [str(tmp_path / "ct.nhdr"), str(tmp_path / "series")]


def test_the_folds_a_datalist_declares_are_the_folds_it_is_split_by(caplog):
    # MONAI's and Auto3DSeg's datalists give each case a "fold"; the folds had been cut at random instead, so
    # fold 0 validated other cases than the datalist's fold 0, without a word
    from monai_unets.data import split_cases

    cases = [{"image": str(i), "fold": i // 2} for i in range(6)]
    for fold in range(3):
        train, val = split_cases(cases, fold=fold, num_folds=3, seed=1)
        assert [c["image"] for c in val] == [str(2 * fold), str(2 * fold + 1)]
        assert len(train) == 4 and not {c["image"] for c in train} & {c["image"] for c in val}
    with pytest.raises(ValueError, match=r"carry fold keys \[0, 1, 2\], which are not folds 0\.\.4 of num_folds 5"):
        split_cases(cases, fold=0, num_folds=5)
    with caplog.at_level(logging.WARNING):
        train, val = split_cases(cases, val_fraction=0.5)
    assert len(val) == 3 and "carry fold keys (folds 0, 1, 2), which a run of num_folds 1 does not use" in caplog.text
    with pytest.raises(ValueError, match=r"5 of the 6 cases to split carry a fold key and the others not \(e\.g\. 5\)"):
        split_cases([*cases[:5], {"image": "5"}], fold=0, num_folds=3)
    with pytest.raises(ValueError, match="3 has fold 'b': a fold is a whole number from 0"):
        split_cases([*cases[:3], {"image": "3", "fold": "b"}, *cases[4:]], fold=0, num_folds=3)
