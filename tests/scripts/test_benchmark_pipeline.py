"""The 3D pipeline benchmark runs a CT bundle end to end and reports its figures (never asserted as timings)."""

from __future__ import annotations

import json

import pytest
from monai_unets.scripts.benchmark_pipeline import main, pipeline_rows


# a bundle process and a training epoch: a few minutes on a busy 2-core machine
@pytest.mark.slow
def test_quick_rows_cover_inference_and_training(tmp_path):
    rows = pipeline_rows(quick=True, cases=2)
    inference, training = rows
    assert inference["section"] == "3D inference" and training["section"] == "training epoch"
    # the bundle wrote both outputs for each DICOM series it read
    for case in ("ct_000", "ct_001"):
        assert {f"{case}_seg.nii.gz", f"{case}_seg.dcm"} <= set(inference["outputs"])
    assert {"Invertd", "ArgmaxLabeld", "SaveImaged", "SaveDicomSegd"} <= set(inference["steps_s"])
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
    assert training["iterations"] >= 1 and training["batch_shape"][2:] == [32, 32, 32]
    assert training["epoch_s"] > 0 and training["compute_s"] > 0


def test_command_line_writes_json(tmp_path, monkeypatch):
    import monai_unets.scripts.benchmark_pipeline as module

    monkeypatch.setattr(module, "pipeline_rows", lambda bundles, quick, **_: [{"section": "x", "bundle": bundles[0]}])
    assert main(["--quick", "--bundle", "attention_unet_pancreas_ct", "--json", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text()) == [{"section": "x", "bundle": "attention_unet_pancreas_ct"}]
