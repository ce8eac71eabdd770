"""multi_gpu_train.yaml of every bundle, run by torchrun with two CPU processes (gloo): the same code path as
several GPUs (NCCL), which CI does not have."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai_unets.bundles import bundle_dir, list_bundles
from monai_unets.scripts.demo_data import generate_demo_dataset

from tests.bundles.conftest import BUNDLE_CASES


def _data(name: str, root: Path) -> Path:
    if name.endswith("_ct"):
        return BUNDLE_CASES[name].make_data(root)
    # each of the two processes needs at least one validation image
    generate_demo_dataset(root, num_images=30, seed=3, min_size=48, max_size=96)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", list_bundles())
def test_two_process_training(name, tmp_path):
    data = _data(name, tmp_path / "data")
    bundle = Path(shutil.copytree(bundle_dir(name), tmp_path / name))
    configs = bundle / "configs"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "monai.bundle", "run"]
    command += ["--config_file", str([str(configs / "train.yaml"), str(configs / "multi_gpu_train.yaml")])]
    command += ["--bundle_root", str(bundle), "--dataset_dir", str(data), "--max_epochs", "1", "--val_interval", "1"]
    command += ["--num_workers", "0", "--batch_size", "2", *BUNDLE_CASES[name].train_args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # the validation handlers (metric log and checkpoint saver) run on rank 0 only: one report of the best metric
    output = result.stdout + result.stderr
    assert output.count("best value:") == 1, output[-5000:]
    # the weights are saved without the DDP wrapper's prefix, so that single-process inference loads them
    weights = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert not any(key.startswith("module.") for key in weights)
