"""monai-unets check-data: one line per bad case, a summary, an exit status; --set takes the bundle's settings."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
from monai_unets.bundles import bundle_dir
from monai_unets.scripts import check_data
from monai_unets.scripts.demo_ct import generate_demo_ct


def test_check_data_lists_a_bad_case_and_takes_a_setting_that_accepts_it(tmp_path, capsys):
    generate_demo_ct(tmp_path, num_cases=3, num_test=0, shape=(24, 24, 8))
    image_path = tmp_path / "imagesTr" / "demo_001.nii.gz"
    image = nib.load(image_path)
    values = np.asarray(image.dataobj, dtype=np.float32)
    values[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(values, image.affine), image_path)
    args = ["--bundle", "egeunet3d_pancreas_ct", "--dataset-dir", str(tmp_path)]
    assert check_data.main(args) == 1
    out = capsys.readouterr().out
    assert f"BAD  {image_path}: has 1 NaN and 0 infinite voxels" in out
    assert "1 of 3 cases are bad" in out
    # the setting training takes for such data (--nan_policy replace) makes the case fine here too
    assert check_data.main([*args, "--set", "nan_policy=replace"]) == 0
    assert "all 3 cases are fine for egeunet3d_pancreas_ct" in capsys.readouterr().out
    assert check_data.main([*args, "--set", "nan_polcy=replace"]) == 1
    assert "train.yaml has no setting 'nan_polcy'" in capsys.readouterr().err


def _check_masks(folder, capsys, masks, training, validation):
    """check-data of the skin-lesion bundle over shaded grey images with the given masks (name -> array), listed by
    name; its exit status and output."""
    import json

    from PIL import Image

    for name, mask in masks.items():
        shade = np.arange(mask.shape[1], dtype=np.uint8)[None, :, None]
        Image.fromarray(np.broadcast_to(shade, (*mask.shape[:2], 3)).copy()).save(folder / f"{name}.png")
        Image.fromarray(mask).save(folder / f"{name}_mask.png")
    lists = {
        key: [{"image": f"{n}.png", "label": f"{n}_mask.png"} for n in names]
        for key, names in (("training", training), ("validation", validation))
    }
    (folder / "datalist.json").write_text(json.dumps(lists))
    args = [
        "--bundle",
        "egeunet_skin_lesion",
        "--dataset-dir",
        str(folder),
        "--datalist",
        str(folder / "datalist.json"),
    ]
    return check_data.main(args), capsys.readouterr().out


def _lesion() -> np.ndarray:
    lesion = np.zeros((24, 32), np.uint8)
    lesion[5:15, 5:15] = 255
    return lesion


def test_check_data_counts_empty_masks_and_refuses_a_training_list_of_only_empty_ones(tmp_path, capsys):
    masks = {"empty": np.zeros_like(_lesion()), "lesion": _lesion()}
    status, out = _check_masks(tmp_path, capsys, masks, ["empty", "lesion"], ["lesion"])
    assert (
        status == 0
        and f"WARNING  1 of 2 training labels have no foreground (e.g. {tmp_path / 'empty_mask.png'})" in out
    )
    status, out = _check_masks(tmp_path, capsys, masks, ["empty", "empty"], ["lesion"])
    assert status == 1 and "BAD  every one of the 2 readable training labels has no foreground" in out


def test_check_data_counts_masks_drawn_dark_on_light(tmp_path, capsys):
    lesion = _lesion()
    reaching = np.zeros_like(lesion)
    reaching[8:20, 20:] = 255  # a lesion that reaches the right side of the image
    # a white RGB mask with a red lesion: the bundle reads its brighter value, the white background, as lesion
    red = np.stack([np.full_like(lesion, 255), 255 - lesion, 255 - lesion], axis=-1)
    masks = {"lesion": lesion, "reaching": reaching, "red": red}
    status, out = _check_masks(tmp_path, capsys, masks, ["lesion", "red", "reaching"], ["lesion"])
    assert status == 0
    assert (
        f"WARNING  1 of 3 training masks have foreground on at least 90% of their border (e.g. "
        f"{tmp_path / 'red_mask.png'}): the bundles read the brighter value of a mask as lesion, so a mask drawn "
        "dark on a light background is read inverted, its background taken for the lesion; invert such masks first"
        in out
    )
    status, out = _check_masks(tmp_path, capsys, masks, ["lesion", "reaching"], ["lesion"])
    assert status == 0 and "WARNING" not in out


def test_check_data_prints_control_characters_of_names_escaped(tmp_path, capsys):
    # a mask named with a terminal's escape sequence and a line break had cleared the screen and begun a line
    bad = _lesion()
    bad[16:24, 20:28] = 60  # a second region drawn darker, apart from the lesion: refused
    name = "x\x1b[2J\nok"
    status, out = _check_masks(tmp_path, capsys, {name: bad, "lesion": _lesion()}, [name], ["lesion"])
    assert status == 1
    assert "\x1b" not in out
    bad_lines = [line for line in out.splitlines() if line.startswith("BAD")]
    assert len(bad_lines) == 1 and bad_lines[0].startswith(f"BAD  {tmp_path}/x\\x1b[2J\\nok.png: ")


def test_check_data_reads_folders_as_typed(tmp_path, capsys, monkeypatch):
    # '#', '@', '$' and '%' had been read by MONAI's config parser: skin#2 became skin::2, @x a reference
    monkeypatch.setenv("HOME", str(tmp_path))
    dataset = tmp_path / "skin#2" / "@x $y %z"
    dataset.mkdir(parents=True)
    _check_masks(dataset, capsys, {"lesion": _lesion()}, ["lesion"], ["lesion"])
    bundle = tmp_path / "b#1"
    shutil.copytree(bundle_dir("egeunet_skin_lesion") / "configs", bundle / "configs")
    args = ["--bundle", "~/b#1", "--dataset-dir", "~/skin#2/@x $y %z"]
    assert check_data.main(args) == 0
    assert "all 2 cases are fine for b#1." in capsys.readouterr().out


def test_check_data_refuses_an_empty_path(capsys):
    # `--dataset-dir "$DATA"` with DATA unset: the current folder had been read as the dataset
    with pytest.raises(SystemExit) as stop:
        check_data.main(["--bundle", "egeunet_skin_lesion", "--dataset-dir", ""])
    assert stop.value.code == 2
    assert "argument --dataset-dir/--dataset_dir: needs a path" in capsys.readouterr().err


def test_a_setting_of_the_wrong_type_is_named_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    # --set num_classes=abc had been reported against every image ("BAD <image>: TypeError: '>' not supported
    # between instances of 'str' and 'int'")
    generate_demo_ct(tmp_path, num_cases=2, num_test=0, shape=(16, 16, 8))

    def read(*_, **__):
        raise AssertionError("the data was read")

    monkeypatch.setattr(check_data, "scan_cases", read)
    args = ["--bundle", "egeunet3d_pancreas_ct", "--dataset-dir", str(tmp_path), "--set", "num_classes=abc"]
    assert check_data.main(args) == 1
    out, err = capsys.readouterr()
    assert "BAD" not in out
    assert (
        err.strip()
        == "python -m monai_unets.scripts.check_data: error: num_classes must be an integer >= 1, got 'abc'."
    )


def test_check_data_names_a_class_no_training_label_holds_and_a_blank_image(tmp_path, capsys):
    # both had passed as "all cases are fine": a class merged into another, a black series of a failed export
    generate_demo_ct(tmp_path, num_cases=3, num_test=0, shape=(24, 24, 8))
    for label_path in sorted((tmp_path / "labelsTr").glob("*.nii.gz")):
        label = nib.load(label_path)
        merged = np.minimum(np.asarray(label.dataobj), 1).astype(np.uint8)
        nib.save(nib.Nifti1Image(merged, label.affine), label_path)
    args = ["--bundle", "egeunet3d_pancreas_ct", "--dataset-dir", str(tmp_path)]
    assert check_data.main(args) == 0
    out = capsys.readouterr().out
    assert (
        "WARNING  class 2 (cancer) is in none of the 2 readable training labels" in out
        and "all 3 cases are fine" in out
    )
    image_path = tmp_path / "imagesTr" / "demo_002.nii.gz"
    image = nib.load(image_path)
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.int16), image.affine), image_path)
    assert check_data.main(args) == 1
    assert f"BAD  {image_path}: image holds one value everywhere (0) while its label marks foreground" in (
        capsys.readouterr().out
    )
