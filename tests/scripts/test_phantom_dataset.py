"""The MSD task writer shared by the phantom tools."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from monai_unets.scripts.cli import main
from monai_unets.scripts.phantom_dataset import write_phantom_dataset


def _maker(shape, spacing, seed):
    image = np.full(shape, float(seed), dtype=np.float32)
    return image, (image > 0).astype(np.uint8)


def test_writes_an_msd_task_with_its_header_and_test_hook(tmp_path):
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = [1.0, -2.0, 3.0]
    seen = []
    path = write_phantom_dataset(
        tmp_path,
        _maker,
        "case",
        {"name": "T", "labels": {"0": "background", "1": "x"}},
        affine,
        num_cases=3,
        num_test=2,
        shape=(4, 5, 6),
        spacing=(0.5, 0.5, 2.0),
        seed=1,
        on_test_case=lambda stem, image: seen.append((stem, float(image.flat[0]))),
    )
    dataset = json.loads(path.read_text())
    assert list(dataset)[:2] == ["name", "labels"]
    assert (dataset["numTraining"], dataset["numTest"]) == (3, 2)
    assert dataset["training"][2] == {"image": "./imagesTr/case_002.nii.gz", "label": "./labelsTr/case_002.nii.gz"}
    assert dataset["test"] == ["./imagesTs/case_003.nii.gz", "./imagesTs/case_004.nii.gz"]
    # case i is made with seed * 1000 + i, and each test case reaches the hook once
    assert seen == [("case_003", 1003.0), ("case_004", 1004.0)]
    written = nib.load(tmp_path / "labelsTr" / "case_001.nii.gz")
    np.testing.assert_array_equal(written.affine, affine)
    assert written.shape == (4, 5, 6)


@pytest.mark.parametrize("tool", ["demo-ct", "demo-mr"])
@pytest.mark.parametrize(
    "arguments, message",
    [
        # a nibabel HeaderDataError traceback
        (["--spacing", "0", "1", "1"], "argument --spacing: must be a number > 0, got '0'"),
        (["--spacing", "nan", "1", "1"], "argument --spacing: must be a number > 0, got 'nan'"),
        # accepted: volumes of 0 x 0 x 0 voxels, an empty training list, "-1 test" phantoms
        (["--shape", "0", "0", "0"], "argument --shape: must be an integer >= 1, got '0'"),
        (["--num-cases", "0"], "argument --num-cases: must be an integer >= 1, got '0'"),
        (["--num-cases", "1", "--num-test", "-1"], "argument --num-test: must be an integer >= 0, got '-1'"),
    ],
)
def test_counts_sizes_and_spacings_out_of_range_are_usage_errors(tool, arguments, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([tool, "--output-dir", str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"monai-unets {tool}: error: {message}"
    assert not (tmp_path / "out").exists()
