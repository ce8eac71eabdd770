from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from monai_unets.scripts.demo_mr import generate_demo_mr, make_mr_phantom


def test_several_sequences_image_one_anatomy_with_each_sequence_s_contrast():
    t1, label = make_mr_phantom((32, 32, 28), seed=2)
    both, same_label = make_mr_phantom((32, 32, 28), seed=2, sequences=("T1", "T2"))
    # the first sequence is the study a single sequence gives: datasets made before keep their images
    assert both.shape == (32, 32, 28, 2) and np.array_equal(both[..., 0], t1) and np.array_equal(label, same_label)
    means = [[float(both[..., c][label == tissue].mean()) for tissue in (1, 2, 3)] for c in range(2)]
    assert means[0][0] < means[0][1] < means[0][2]  # T1: CSF dark, white matter bright
    assert means[1][0] > means[1][1] > means[1][2]  # T2: CSF bright, white matter dark
    with pytest.raises(ValueError, match="sequences must be some of T1, T2, FLAIR; got \\['DWI'\\]"):
        make_mr_phantom((32, 32, 28), sequences=("DWI",))


def test_a_multi_modal_dataset_names_its_sequences_as_the_decathlon_does(tmp_path):
    path = generate_demo_mr(tmp_path, num_cases=1, num_test=1, shape=(24, 24, 20), sequences=("FLAIR", "T1"))
    dataset = json.loads(path.read_text())
    assert dataset["modality"] == {"0": "FLAIR", "1": "T1"}
    for image in (dataset["training"][0]["image"], dataset["test"][0]):
        assert nib.load(tmp_path / image).shape == (24, 24, 20, 2)
    assert nib.load(tmp_path / dataset["training"][0]["label"]).shape == (24, 24, 20)
