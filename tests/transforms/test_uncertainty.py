from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai_unets.data import CASE_NAME_KEY
from monai_unets.transforms import SaveProbabilityMapsd, entropy_map


def _probabilities(shape, source: str, case_name: str | None = None) -> MetaTensor:
    scores = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    meta = {"filename_or_obj": source, **({CASE_NAME_KEY: case_name} if case_name else {})}
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64))
    return MetaTensor(torch.softmax(scores, 0), affine=affine, meta=meta)


def test_entropy_is_zero_when_certain_and_one_when_uniform():
    torch.testing.assert_close(entropy_map(torch.tensor([[1.0, 0.5], [0.0, 0.5]])), torch.tensor([0.0, 1.0]))


def test_studies_of_the_same_file_name_get_their_own_maps(tmp_path):
    # p1/image.nii.gz and p2/image.nii.gz: the job names them p1_image and p2_image, and so must their maps
    save = SaveProbabilityMapsd("pred", tmp_path)
    first = _probabilities((6, 5, 4), "/in/p1/image.nii.gz", "p1_image")
    second = _probabilities((7, 5, 4), "/in/p2/image.nii.gz", "p2_image")
    save({"pred": first})
    save({"pred": second})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "p1_image_prob.nii.gz",
        "p1_image_uncertainty.nii.gz",
        "p2_image_prob.nii.gz",
        "p2_image_uncertainty.nii.gz",
    ]
    written = np.asanyarray(nib.load(tmp_path / "p1_image_prob.nii.gz").dataobj)
    np.testing.assert_allclose(written, np.moveaxis(first.numpy(), 0, -1), atol=1e-6)
    assert nib.load(tmp_path / "p2_image_uncertainty.nii.gz").shape == (7, 5, 4)


def test_a_one_slice_study_keeps_its_slice_axis(tmp_path):
    SaveProbabilityMapsd("pred", tmp_path)({"pred": _probabilities((6, 5, 1), "/in/slab.nii.gz")})
    assert nib.load(tmp_path / "slab_prob.nii.gz").shape == (6, 5, 1, 3)
    assert nib.load(tmp_path / "slab_uncertainty.nii.gz").shape == (6, 5, 1)


def test_a_write_that_fails_midway_leaves_no_map(tmp_path, monkeypatch):
    from monai_unets.data import atomic

    def fail_midway(self, stream, **kwargs):
        stream.write(b"\0" * 1000)
        raise OSError("disk full")

    monkeypatch.setattr(atomic._ChunkedNifti1Image, "to_stream", fail_midway)
    with pytest.raises(RuntimeError, match="disk full"):
        SaveProbabilityMapsd("pred", tmp_path)({"pred": _probabilities((6, 5, 4), "/in/case.nii.gz")})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "settings, written",
    [
        ({"enabled": False}, []),
        ({"uncertainty": False}, ["c1_prob.nii.gz"]),
        ({}, ["c1_prob.nii.gz", "c1_uncertainty.nii.gz"]),
    ],
)
def test_the_maps_of_a_case_are_its_outputs_also_where_this_run_writes_none(tmp_path, settings, written):
    # a rerun without maps into a folder of an earlier run with them: a failed case's earlier maps must be removed,
    # and a good case's counted as files this run did not write (CaseIsolationHandler reads the paths from here)
    save = SaveProbabilityMapsd("pred", tmp_path, **settings)
    assert save.output_paths("c1") == [tmp_path / "c1_prob.nii.gz", tmp_path / "c1_uncertainty.nii.gz"]
    save({"pred": _probabilities((6, 5, 4), "/in/c1.nii.gz", "c1")})
    assert sorted(p.name for p in tmp_path.iterdir()) == written
