"""The README's main command, end to end: demo data, training, inference, evaluation."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from PIL import Image


@pytest.mark.slow
def test_quickstart_runs_the_three_bundle_workflows(tmp_path):
    out = tmp_path / "demo_run"
    # fewer epochs than the validation interval: the quick start must still validate and save weights
    command = [sys.executable, "-m", "monai_unets.scripts.quickstart", "--output-dir", str(out), "--epochs", "2"]
    command += ["--num-images", "12"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # it shows the commands a user runs, the metrics and where the outputs are
    assert result.stdout.count("-m monai.bundle run") == 3
    assert "val_mean_dice" in result.stdout and "test masks:" in result.stdout
    assert (out / "egeunet_skin_lesion" / "models" / "model.pt").is_file()
    with open(out / "evaluation" / "metrics_per_case.csv", newline="") as f:
        cases = [row["case"] for row in csv.DictReader(f)]
    assert cases
    for case in cases:
        stem = case.rsplit("/", 1)[-1].split(".")[0]
        with Image.open(case) as image, Image.open(out / "predictions" / f"{stem}_seg.png") as mask:
            assert mask.size == image.size


def test_a_failing_step_is_named(tmp_path, monkeypatch, capsys):
    from monai_unets.scripts import quickstart

    # the training step's command fails; no later step may run
    monkeypatch.setattr(quickstart.sys, "executable", "false")
    assert quickstart.main(["--output-dir", str(tmp_path), "--num-images", "10"]) == 1
    captured = capsys.readouterr()
    assert "the training step failed with exit status 1" in captured.out + captured.err
    assert "== inference" not in captured.out
