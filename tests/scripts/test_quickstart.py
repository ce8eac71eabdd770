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


def test_a_step_runs_as_the_other_commands_run_a_bundle(tmp_path, monkeypatch, capsys):
    import os
    import stat

    from monai_unets.scripts import quickstart

    # the training step's process is killed (as by the out-of-memory killer); it ran through subprocess.run, not
    # the commands' run_bundle_process, and was reported as "failed with exit status -9"
    killed = tmp_path / "killed"
    killed.write_text("#!/bin/sh\nkill -9 $$\n")
    killed.chmod(killed.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(quickstart.sys, "executable", os.fspath(killed))
    assert quickstart.main(["--output-dir", str(tmp_path / "out"), "--num-images", "3"]) == 1
    error = capsys.readouterr().err
    assert "the bundle process was stopped by SIGKILL (as the system's out-of-memory killer does)" in error
    assert "the training step failed with exit status 137" in error


@pytest.mark.parametrize(
    "arguments, message",
    [
        # each had made the demo data and copied the bundle before the training step failed, with exit status 1
        (["--epochs", "0"], "argument --epochs: must be an integer >= 1, got '0'"),
        (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got '0'"),
        (["--val-interval", "-1"], "argument --val-interval: must be an integer >= 1, got '-1'"),
        (["--num-images", "2"], "argument --num-images: must be an integer >= 3, got '2'"),
        (["--device", "gpu0"], "argument --device: 'gpu0' is not a device; give e.g. cpu, cuda or cuda:1"),
        (["--output-dir", ""], "argument --output-dir: needs a path"),
    ],
)
def test_options_out_of_range_are_usage_errors_before_anything_is_written(arguments, message, tmp_path, capsys):
    from monai_unets.scripts.cli import main

    output = ["--output-dir", str(tmp_path / "out")] if "--output-dir" not in arguments else []
    with pytest.raises(SystemExit) as stop:
        main(["quickstart", *output, *arguments])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"monai-unets quickstart: error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_that_is_a_file_is_refused(tmp_path, capsys):
    from monai_unets.scripts.cli import main

    (tmp_path / "out").write_text("")
    # it had written "== demo data" and ended on "[Errno 20] Not a directory: '.../out/data/images'"
    assert main(["quickstart", "--output-dir", str(tmp_path / "out")]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"monai-unets: error: --output-dir {tmp_path / 'out'}: an existing file; give a folder."
    )
