"""The 3D pipeline benchmark runs a CT bundle end to end and reports its figures (never asserted as timings)."""

from __future__ import annotations

import json

import pytest
from monai_unets.scripts.benchmark_pipeline import (
    SIDE_BY_SIDE,
    _foreground_fraction,
    _install_weights,
    main,
    pipeline_rows,
)


# a bundle process and a training epoch: a few minutes on a busy 2-core machine
@pytest.mark.slow
def test_quick_rows_cover_inference_and_training(tmp_path):
    rows = pipeline_rows(quick=True, cases=2)
    inference, training = rows
    assert inference["section"] == "3D inference" and training["section"] == "training epoch"
    # the bundle wrote both outputs for each DICOM series it read
    for case in ("ct_000", "ct_001"):
        assert {f"{case}_seg.nii.gz", f"{case}_seg.dcm"} <= set(inference["outputs"])
    assert {"InvertArgmaxd", "SaveImaged", "SaveDicomSegd"} <= set(inference["steps_s"])
    # the writers run side by side: together at least as long as the longer one, and about as long as it
    steps = inference["steps_s"]
    longer, both = max(steps["SaveImaged"], steps["SaveDicomSegd"]), steps["SaveImaged"] + steps["SaveDicomSegd"]
    assert longer - 0.02 <= steps[SIDE_BY_SIDE] <= both + 0.05
    assert 0 < inference["network_s"] < inference["wall_s"]
    assert inference["peak_rss_mib"] > 0
    cpu = inference["cpu_s"]
    assert set(cpu) == {"network", "rest_of_main", "workers"} and cpu["network"] > 0 and cpu["workers"] >= 0
    assert inference["cores"] >= 1
    # the ratio is taken before rounding, the fields after: each field is off by up to 0.005, which a network time
    # of a fraction of a second (quick mode) makes a few hundredths of the ratio
    cpu_total, cores, network = sum(cpu.values()), inference["cores"], inference["network_s"]
    low = (cpu_total - 0.015) / (cores * (network + 0.005)) - 0.005
    high = (cpu_total + 0.015) / (cores * (network - 0.005)) + 0.005
    assert low <= inference["cpu_floor_ratio"] <= high
    # the second case's own figures: its network time is part of the time it took
    assert inference["cases"] == 2 and 0 < inference["per_case_network_s"] < inference["per_case_s"]
    assert inference["first_case_s"] + inference["per_case_s"] <= inference["wall_s"]
    assert inference["weights"] == "random" and 0.0 <= inference["foreground_fraction"] <= 1.0
    # the bundle's default on a CPU: each case written before the next one's network
    assert inference["background_postprocessing"] is False
    assert training["iterations"] >= 1 and training["batch_shape"][2:] == [32, 32, 32]
    assert training["epoch_s"] > 0 and training["compute_s"] > 0


def test_a_2d_bundle_times_its_training_epoch():
    from monai_unets.scripts.benchmark_pipeline import benchmark_training

    row = benchmark_training("egeunet_skin_lesion", quick=True)
    # the steps replayed are the epoch's own: as many, at the size the trainer fed the network
    assert row["bundle"] == "egeunet_skin_lesion" and row["iterations"] >= 1
    assert row["batch_shape"][1:] == [3, 64, 64]
    # a CPU trainer crops and flips its cached images in the training process
    assert row["num_workers"] == 0
    assert row["epoch_s"] > 0 and row["compute_s"] > 0 and row["ratio"] > 0
    # the waits for batches are a part of the epoch
    assert 0 <= row["data_s"] < row["epoch_s"]


def test_2d_bundles_have_no_inference_row(monkeypatch):
    import monai_unets.scripts.benchmark_pipeline as module

    monkeypatch.setattr(module, "benchmark_training", lambda bundle, **_: {"bundle": bundle})
    monkeypatch.setattr(module, "benchmark_inference", lambda bundle, **_: {"bundle": bundle})
    rows = pipeline_rows(["egeunet_skin_lesion", "attention_unet_pancreas_ct"], quick=True)
    assert [(row["section"], row["bundle"]) for row in rows] == [
        ("training epoch", "egeunet_skin_lesion"),
        ("3D inference", "attention_unet_pancreas_ct"),
        ("training epoch", "attention_unet_pancreas_ct"),
    ]
    with pytest.raises(SystemExit, match="give a CT --bundle"):
        main(["--bundle", "unetv2_polyp", "--inference-only"])


def test_command_line_writes_json(tmp_path, monkeypatch):
    import monai_unets.scripts.benchmark_pipeline as module

    monkeypatch.setattr(module, "pipeline_rows", lambda bundles, quick, **_: [{"section": "x", "bundle": bundles[0]}])
    assert main(["--quick", "--bundle", "attention_unet_pancreas_ct", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == [{"section": "x", "bundle": "attention_unet_pancreas_ct"}]


def test_trained_weights_and_plan_are_copied(tmp_path):
    models = tmp_path / "trained"
    models.mkdir()
    (models / "model.pt").write_bytes(b"weights")
    (models / "plan.json").write_text("{}")
    _install_weights("egeunet3d_pancreas_ct", tmp_path / "bundle", {}, models)
    assert (tmp_path / "bundle" / "models" / "model.pt").read_bytes() == b"weights"
    assert (tmp_path / "bundle" / "models" / "plan.json").read_text() == "{}"
    (models / "model.pt").unlink()
    with pytest.raises(FileNotFoundError, match="no model.pt"):
        _install_weights("egeunet3d_pancreas_ct", tmp_path / "other", {}, models)


def test_random_weights_load_into_the_bundle_network(tmp_path):
    import torch
    from monai_unets.networks import EGEUNet

    _install_weights("egeunet3d_pancreas_ct", tmp_path, {}, None)
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    # the bundle's network: 3 classes, bridges without side outputs, full-resolution head
    EGEUNet(3, 1, 3, deep_supervision=False, full_resolution=True).load_state_dict(state)


def test_foreground_fraction_counts_every_label_map(tmp_path):
    import nibabel as nib
    import numpy as np

    first, second = np.zeros((4, 4, 2), np.uint8), np.zeros((2, 2, 2), np.uint8)
    first[0, 0, 0], first[1, 1, 1], second[0, 0, 0] = 1, 2, 1
    for name, values in (("a_seg.nii.gz", first), ("b_seg.nii.gz", second)):
        nib.save(nib.Nifti1Image(values, np.eye(4)), tmp_path / name)
    assert _foreground_fraction([tmp_path / "a_seg.nii.gz", tmp_path / "b_seg.nii.gz"]) == pytest.approx(3 / 40)
    assert _foreground_fraction([]) == 0.0


def test_models_take_one_bundle(tmp_path):
    with pytest.raises(SystemExit, match="one --bundle"):
        main(["--bundle", "egeunet3d_pancreas_ct", "--bundle", "attention_unet_pancreas_ct", "--models", str(tmp_path)])


def test_nifti_studies_with_overridden_settings(tmp_path):
    from monai_unets.scripts.benchmark_pipeline import benchmark_inference

    settings = {"sw_batch_size": 3, "background_postprocessing": True}
    result = benchmark_inference(quick=True, input_format="nifti", cases=2, settings=settings)
    assert result["input"] == "NIfTI (.nii.gz)" and result["settings"] == settings
    assert result["background_postprocessing"] is True
    # a NIfTI study gets its label map and no DICOM SEG; the last one is written before the run ends
    assert result["outputs"] == ["ct_000_seg.nii.gz", "ct_001_seg.nii.gz", "failures.csv"]
    assert result["device"] == "cpu" and result["first_case_s"] > 0


def test_a_stand_in_network_times_the_rest_of_the_pipeline():
    from monai_unets.scripts.benchmark_pipeline import benchmark_inference

    # as on a GPU: the network's time passes without the CPU; the label map is compact, not random weights' noise
    result = benchmark_inference(quick=True, cases=2, stand_in_network_s=0.3)
    assert result["network"] == "stand-in, 0.3 s without CPU" and result["weights"] == "random"
    assert 0.3 <= result["per_case_network_s"] < 0.4 and 0.3 <= result["per_case_s"]
    assert result["cpu_s"]["network"] < 0.1
    assert 0.001 < result["foreground_fraction"] < 0.05
    assert {"ct_000_seg.nii.gz", "ct_000_seg.dcm", "ct_001_seg.nii.gz", "ct_001_seg.dcm"} <= set(result["outputs"])


def test_a_failed_case_fails_the_benchmark():
    from monai_unets.scripts.benchmark_pipeline import benchmark_inference

    # the label map's inversion looks for a key the data does not have: the case fails, the bundle's run exits 1
    with pytest.raises(RuntimeError, match="0 ok, 1 failed"):
        benchmark_inference(quick=True, input_format="nifti", settings={"postprocessing#transforms#2#keys": "nope"})


def test_command_line_passes_input_settings_and_parts(tmp_path, monkeypatch, capsys):
    import monai_unets.scripts.benchmark_pipeline as module

    seen = {}
    monkeypatch.setattr(module, "pipeline_rows", lambda bundles, quick, **kwargs: seen.update(kwargs) or [])
    argv = ["--quick", "--input", "nifti", "--set", "sw_batch_size=4", "--set", "overlap=0.25", "--inference-only"]
    assert main(argv) == 0
    assert seen["input_format"] == "nifti" and seen["training"] is False
    assert seen["settings"] == {"sw_batch_size": 4, "overlap": 0.25}
    with pytest.raises(SystemExit) as stopped:
        main(["--quick", "--set", "sw_batch_size"])
    assert stopped.value.code == 2  # argparse's usage error
    assert "argument --set: expected KEY=VALUE, got 'sw_batch_size'" in capsys.readouterr().err


def test_settings_are_keys_of_the_bundle(monkeypatch):
    # a misspelt key had been reported as applied
    import monai_unets.scripts.benchmark_pipeline as module

    monkeypatch.setattr(module, "pipeline_rows", lambda *_, **__: pytest.fail("the benchmark ran"))
    with pytest.raises(SystemExit, match="--set: unknown key 'sw_batchsize' .*did you mean 'sw_batch_size'"):
        main(["--quick", "--inference-only", "--set", "sw_batchsize=4"])


def test_a_failed_bundle_run_is_one_line_with_the_bundles_error(monkeypatch):
    import subprocess

    failed = subprocess.CompletedProcess(
        [], 1, stdout="INFO - starting\n", stderr="ERROR: sw_batch_size must be >= 1\n"
    )
    monkeypatch.setattr(subprocess, "run", lambda *_, **__: failed)
    with pytest.raises(SystemExit) as raised:
        main(["--quick", "--inference-only"])
    assert str(raised.value) == (
        "egeunet3d_pancreas_ct's inference failed (exit status 1): ERROR: sw_batch_size must be >= 1"
    )
