"""SIGKILL during training, then the same command again: training goes on after the last saved epoch."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from monai_unets.bundles import bundle_dir
from monai_unets.scripts.demo_data import generate_demo_dataset

BUNDLE = "egeunet_skin_lesion"
# a small network on small images, so that an epoch takes seconds on a CPU
TINY = ["--image_size", "[32, 32]", "--network_def#channels", "[4, 8, 12, 16, 20, 24]", "--batch_size", "2"]


def _command(bundle: Path, data: Path) -> list[str]:
    configs = bundle / "configs"
    return [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "train.yaml"),
        "--logging_file", str(configs / "logging.conf"), "--bundle_root", str(bundle), "--dataset_dir", str(data),
        "--max_epochs", "4", "--val_interval", "1", "--num_workers", "0", *TINY,
    ]  # fmt: skip


def _saved_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["trainer"]["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_then_the_same_command_resumes_from_the_last_epoch(tmp_path):
    # epochs of about a second: with 10 images (0.2 s an epoch) a poll delayed by a busy machine once saw the run
    # finish all four epochs before the kill
    data = generate_demo_dataset(tmp_path / "data", num_images=40, seed=1, min_size=32, max_size=48).parent
    bundle = Path(shutil.copytree(bundle_dir(BUNDLE), tmp_path / BUNDLE))
    checkpoint = bundle / "models" / "checkpoint.pt"
    command = _command(bundle, data)

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while _saved_epoch(checkpoint) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _saved_epoch(checkpoint)
    assert 1 <= killed_at < 4, f"the kill came too late or never: epoch {killed_at}"
    for weights in (bundle / "models").glob("*.pt"):
        torch.load(weights, weights_only=True)  # whole files only, under every final name
    best_before = torch.load(checkpoint, weights_only=True)["best_model"]["best_metric"]

    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f"after epoch {killed_at} of 4" in log
    assert f"Epoch: {killed_at}/4" not in log and "Epoch: 4/4" in log
    state = torch.load(checkpoint, weights_only=True)
    assert state["trainer"]["epoch"] == 4
    assert state["best_model"]["best_metric"] >= best_before
    torch.load(bundle / "models" / "model.pt", weights_only=True)
